"""Two threat maps on the same bags: what a candidate map gains and costs, row by row.

Before a candidate threat map (``--threatmap``) replaces the one in use (``--against``), this
screens the rows of ``benchmarks.xray_domain`` twice, once with each map, with the same
gallery otherwise (``--model`` and its references) and the very same bags. Each row's change
in detection at 1% false alarms comes with its paired bootstrap interval
(``benchmarks.xray_adapt.detection_change``): with at most 100 clean bags that threshold is
the highest clean score, and one clean bag can move a whole row.

    .venv/bin/python -m benchmarks.xray_maps --guns --held-out none --only default dense \\
        --model models/xray-v1 --threatmap runs/map-dense --against models/threatmap-v6 \\
        --crop 112 --clutter-refs 64 --positives 100 --negatives 100
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from benchmarks import xray_adapt, xray_domain
from benchmarks.report import begun, command_line, publish
from benchmarks.xray_screening import gallery_text, regions_text


def run(args: argparse.Namespace) -> dict:
    """Each row screened with ``--against``, then with ``--threatmap``."""
    against = argparse.Namespace(**{**vars(args), "threatmap": args.against})
    return {"against": xray_domain.run(against), "candidate": xray_domain.run(args)}


def markdown(args: argparse.Namespace, res: dict, command: str, started: str) -> str:
    """The docs/benchmarks.md section: both maps' figures and the change, row by row."""
    held = ", ".join(r["row"] for r in res["candidate"] if r["held_out"])
    bags = {None: "bags holding a part", "hand": "whole handguns in bags"}.get(
        args.guns, "whole long guns in bags"
    )
    lines = [
        f"## X-ray threat maps compared: {args.threatmap} against {args.against}, {bags}"
        + (f", models trained without {held}" if held else ""),
        "",
        f"Command: `{command}`  ",
        f"Machine: {started}  ",
        f"Gallery {gallery_text(args, with_map=False)}, once with each map; "
        f"{regions_text(args.regions, True)}, map weight {args.map_weight}, map zooms "
        f"{' '.join(f'{z:.3g}' for z in args.map_zooms)} (views "
        f"{' '.join(map(str, args.map_views))}), crops {args.crop} px.  ",
        f"Parcels per row: {args.positives} with a threat ({xray_domain.threat_text(args)}) "
        f"and {args.negatives} clean, the {'validation' if args.split == 'val' else 'test'} "
        f"seeds of benchmarks.xray_domain, the same bags for "
        f"both maps; false-alarm thresholds are quantiles of the row's own clean parcels.",
        "",
        f"The last column is the change in detection at 1% false alarms from {args.against} "
        f"to {args.threatmap}, with its {xray_adapt.INTERVAL:.0%} paired bootstrap interval "
        f"({xray_adapt.BOOTSTRAP_DRAWS} draws of the row's bags).",
        "",
        f"| row | {Path(args.against).name}: detection at 1% / 5% FA | AUC | box hit at 1% FA "
        f"| {Path(args.threatmap).name}: detection at 1% / 5% FA | AUC | box hit at 1% FA "
        "| change at 1% FA |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        xray_adapt.change_row(*pair) for pair in zip(res["against"], res["candidate"], strict=True)
    ]
    return "\n".join(lines)


def section_name(args: argparse.Namespace) -> str:
    """A section per pair of maps and kind of positive."""
    kind = {None: "", "hand": "-guns", "long": "-long-guns"}[args.guns]
    return f"maps{kind}-{Path(args.threatmap).name}-vs-{Path(args.against).name}"


def parser() -> argparse.ArgumentParser:
    """``benchmarks.xray_domain``'s options, plus the map to compare against."""
    p = xray_domain.parser()
    p.description = __doc__.splitlines()[0]
    p.add_argument("--against", required=True, help="the threat map in use (directory)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    args = parser().parse_args(argv)
    if not args.threatmap:
        raise SystemExit("--threatmap names the candidate map")
    if args.gallery or args.dump or args.whole_image:
        raise SystemExit("--gallery, --dump and --whole-image do not apply here")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = begun()
    res = run(args)
    text = markdown(args, res, command_line("benchmarks.xray_maps", argv), started)
    publish(text, section_name(args), args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
