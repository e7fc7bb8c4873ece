"""``gunmatch adapt`` against its time budget (issue #13: 200 cleared scans in at most 15
minutes on 2 cores; a station holds thousands).

The gallery is built as ``benchmarks.xray_adapt`` builds it, and the station's cleared scans
are written the same way (its seeds, its look or scene). For each ``--cleared`` count a
fresh copy of the gallery is adapted through the public CLI on that many of the scans, and
the row says how many adapt read, trained on and held out, the epochs it ran, what its plan
expected and how long each phase took against ``--minutes``.

    .venv/bin/python -m benchmarks.xray_adapt_budget --station dual-energy-vivid \\
        --cleared 200 1000 --held-out none --model models/xray-v1 \\
        --threatmap models/threatmap-v6 --crop 112 --clutter-refs 64
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks import xray_adapt, xray_domain
from benchmarks.report import begun, command_line, publish
from benchmarks.xray_screening import build_gallery, gallery_text, scan_size
from gunmatch.allocator import hold_freed_memory

log = logging.getLogger("benchmarks.xray_adapt_budget")


def station_folder(folder: Path, written: Path, n: int) -> Path:
    """A folder holding the first ``n`` of the ``written`` scans (hard links)."""
    folder.mkdir(parents=True)
    for path in sorted(written.glob("*.png"))[:n]:
        os.link(path, folder / path.name)
    return folder


def run(args: argparse.Namespace) -> list[dict]:
    """Each count's adapt report and wall-clock seconds, on its own copy of one gallery."""
    torch.set_num_threads(args.threads)
    hold_freed_memory()  # as every gunmatch command does
    held = xray_domain.held_out_arg(args.held_out)
    station = xray_adapt.station_row(held, args.station, args.look)
    size = scan_size(args)
    tmp = Path(tempfile.mkdtemp(prefix="xray-adapt-budget-"))
    out = []
    try:
        build_gallery(tmp / "built", args).close()
        xray_adapt.write_cleared(tmp / "written", station, max(args.cleared), size)
        for n in args.cleared:
            gallery = tmp / f"gallery-{n}"
            shutil.copytree(tmp / "built", gallery)
            cleared = station_folder(tmp / f"cleared-{n}", tmp / "written", n)
            status, report, seconds = xray_adapt.adapt(gallery, cleared, args)
            log.info("%d cleared scans: exit %d in %.0f s", n, status, seconds)
            out.append({"cleared": n, "report": report, "seconds": seconds})
            shutil.rmtree(gallery, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def row_cells(row: dict, minutes: float) -> str:
    """One table row: what adapt used and how its time went."""
    rep = row["report"]
    phases = rep.get("phases_s", {})
    spent = " / ".join(f"{phases.get(p, 0.0):.0f}" for p in ("reading", "adapting", "calibrating"))
    epochs = f"{rep['epochs_trained']} of {rep['config']['epochs']}"
    ran = statistics.median(r["seconds"] for r in rep["history"])
    verdict = "accepted" if rep["gate"]["accepted"] else "refused"
    return (
        f"| {row['cleared']} | {rep['cleared_scans']} | {rep['training_scans']} | "
        f"{rep['held_out_scans']} | {epochs} | {rep['planned_cache_s']:.0f} / "
        f"{rep['cache_s']:.0f} | {rep['planned_epoch_s']:.0f} / {ran:.0f} | "
        f"{rep['planned_s']:.0f} | {spent} | "
        f"{row['seconds']:.0f} of {minutes * 60:.0f} | {verdict} |"
    )


def markdown(args: argparse.Namespace, res: list[dict], command: str, started: str) -> str:
    """The docs/benchmarks.md section."""
    costs = res[0]["report"]["costs_s"]
    lines = [
        "## X-ray station adaptation against its time budget: "
        + xray_adapt.label(args.station, args.look),
        "",
        f"Command: `{command}`  ",
        f"Machine: {started}  ",
        f"Gallery {gallery_text(args)}; crops {args.crop} px.  ",
        f"Station: clean parcels {xray_adapt.station_text(args.station, args.look)}, written "
        "as its PNG "
        f"exports (the seeds of benchmarks.xray_adapt); each row adapts a fresh copy of the "
        f"gallery with "
        f"`gunmatch adapt --gallery G CLEARED/ --minutes {args.minutes:g}` and its defaults.  ",
        "Costs adapt measured in the first row, seconds each (the fastest of a few "
        "timings): "
        + ", ".join(f"{k} {v:.3f}" for k, v in costs.items())
        + ". Planned: what the plan expected of the scans it used, reading aside; caching "
        "(the first part of adapting) and an epoch as planned and as run (the median of the "
        "epochs run).",
        "",
        "| cleared scans given | read | training | held out | epochs | caching s planned / run "
        "| epoch s planned / run | planned s | reading / adapting / calibrating s "
        "| wall s of budget | gate |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [row_cells(row, args.minutes) for row in res]
    return "\n".join(lines)


def section_name(station: str, look: str | None = None) -> str:
    """One section per station (look or scene, and a scene station's one look if given)."""
    return f"adapt-budget-{xray_adapt.stem(station, look)}"


def parser() -> argparse.ArgumentParser:
    """``benchmarks.xray_adapt``'s options, ``--cleared`` taking several counts."""
    return xray_adapt.parser(__doc__, counts=True)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    args = parser().parse_args(argv)
    xray_adapt.check_station(args)
    if min(args.cleared) < 4:
        raise SystemExit("--cleared: adapt needs at least 4 scans")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = begun()
    res = run(args)
    text = markdown(args, res, command_line("benchmarks.xray_adapt_budget", argv), started)
    publish(text, section_name(args.station, args.look), args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
