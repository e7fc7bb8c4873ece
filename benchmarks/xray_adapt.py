"""X-ray station adaptation on a scanner look or clutter family the models never saw (#13).

The maintainers' acceptance runs ``gunmatch adapt`` with a station's cleared scans before
searching its test scans. This is the project's own version of it, on a look or a clutter
family (scene) held out from training (``--held-out``, as ``benchmarks.xray_domain`` reads
it; a station of a scene draws each parcel's look from the trained ones, unless ``--look``
names the one look its scanner gives every parcel):

1. the gallery is built as ``benchmarks.xray_screening`` builds it (``--model``,
   ``--threatmap``);
2. ``--cleared`` clean parcels of the station are written as its PNG exports (seeds
   from 88,000,000, disjoint from every training, validation and benchmark range);
3. the station's row and the default row of ``benchmarks.xray_domain`` are screened;
4. ``gunmatch adapt --gallery G CLEARED/ --minutes M`` runs through the public CLI with its
   defaults otherwise (it installs the adapted map only if its gate accepts it);
5. the same rows are screened again with whatever adapt left in the gallery;
6. when adapt installed a map that keeps a share of the base map's head
   (``AdaptConfig.base_share``) and the base was ``--threatmap``, the rows are screened
   once more with the fine-tuned head alone (``--base-share 0``), recovered from the
   installed map and the one it replaced.

Each row's change in detection at 1% false alarms comes with a paired bootstrap interval
(``detection_change``): with at most 100 clean bags that threshold is the highest clean
score, and one clean bag can move a whole row.

    .venv/bin/python -m benchmarks.xray_adapt --station dual-energy-vivid --guns \\
        --held-out dual-energy-orange dual-energy-vivid dense \\
        --model runs/xray-loso --threatmap runs/threatmap-loso --crop 112 --clutter-refs 64
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import xray_domain
from benchmarks.report import begun, command_line, publish
from benchmarks.xray_screening import (
    build_gallery,
    gallery_text,
    open_as_served,
    rate_at,
    regions_text,
    scan_size,
)
from gunmatch.adapt import (
    REPORT_FILE,
    projected,
    station_auc,
    station_change,
    threshold_scans_text,
)
from gunmatch.allocator import hold_freed_memory
from gunmatch.cli import main as gunmatch_main
from gunmatch.maps import install_threatmap, previous_threatmap
from index import Gallery
from matcher.threatmap import load_threatmap
from screening.calibration import fitting_calibration
from synth.styles import ScannerStyle
from training.xray.adapt import mix_heads

log = logging.getLogger("benchmarks.xray_adapt")

CLEARED_SEED = 88_000_000  # the station's cleared scans
CLEARED_DEFAULT = 200  # how many a station has, unless --cleared says otherwise
# The change in detection at 1% false alarms is given with a paired bootstrap interval:
# this many draws of the row's bags (threat and clean bags resampled apart, the same draw
# before and after), and the interval's level.
BOOTSTRAP_DRAWS = 2000
INTERVAL = 0.9


def write_cleared(folder: Path, row: xray_domain.Row, n: int, size: tuple[int, int]) -> None:
    """``n`` clean parcels in ``row``'s style, as the station's PNG exports."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        seed = CLEARED_SEED + i
        _, data = xray_domain.scan_png(seed, size, None, row.style_of(seed))
        (folder / f"cleared-{i:04d}.png").write_bytes(data)


def screen_rows(gallery: Path, rows: list[xray_domain.Row], args: argparse.Namespace) -> list:
    """Each row's figures, screened with what the gallery holds now; each says whether the
    gallery's screening calibration fits the settings it was screened with (``thresholds``:
    its alert and review thresholds, else None)."""
    cfg = xray_domain.screening_config(args)
    engine = open_as_served(gallery, args.threads)
    try:
        cal = fitting_calibration(engine, cfg)
        thresholds = None if cal is None else (cal["alert_threshold"], cal["review_threshold"])
        return [
            {**xray_domain.screen_row(engine, row, args, cfg), "thresholds": thresholds}
            for row in rows
        ]
    finally:
        engine.close()


def at_thresholds(row: dict) -> dict | None:
    """A screened row judged as the station's service judges it, at the gallery's own alert
    and review thresholds (None where its calibration does not fit the row's settings): the
    shares of clean and threat bags that alert, and that reach review or alert."""
    if row.get("thresholds") is None:
        return None
    alert, review = row["thresholds"]
    clean, threat = (np.asarray(row["scores"][k], float) for k in ("clean", "threat"))
    return {
        "clean_alert": float(np.mean(clean >= alert)),
        "threat_alert": float(np.mean(threat >= alert)),
        "clean_review": float(np.mean(clean >= review)),
        "threat_review": float(np.mean(threat >= review)),
    }


def adapt(gallery: Path, cleared: Path, args: argparse.Namespace) -> tuple[int, dict, float]:
    """``gunmatch adapt`` as a station runs it: exit status, report, wall-clock seconds."""
    argv = ["adapt", str(cleared), "--gallery", str(gallery), "--minutes", str(args.minutes),
            "--threads", str(args.threads), "--json", "--quiet"]  # fmt: skip
    clock = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        status = gunmatch_main(argv)
    seconds = time.perf_counter() - clock
    report = gallery / REPORT_FILE
    if status not in (0, 1) or not report.is_file():  # 1: refused by the gate, with a report
        raise RuntimeError(f"gunmatch adapt failed (exit status {status}); its message is above")
    return status, json.loads(report.read_text()), seconds


def install_fine_tuned_alone(gallery: Path, base_share: float) -> None:
    """Replace the map adapt installed, ``base_share`` of the base map's head mixed into the
    fine-tuned one (``training.xray.adapt.mix_heads``), with the fine-tuned head alone."""
    g = Gallery.open(gallery)
    try:
        kept = load_threatmap(g.threatmap_dir)
        base = load_threatmap(previous_threatmap(gallery))
        install_threatmap(g, mix_heads(kept, base, -base_share / (1.0 - base_share)))
    finally:
        g.close()


def run(args: argparse.Namespace) -> dict:
    """Build, screen, adapt, screen again; the figures before and after."""
    torch.set_num_threads(args.threads)
    hold_freed_memory()  # as every gunmatch command does
    held = xray_domain.held_out_arg(args.held_out)
    station = station_row(held, args.station, args.look)
    rows = [*xray_domain.chosen_rows(held, ["default"]), station]
    size = scan_size(args)
    tmp = Path(tempfile.mkdtemp(prefix="xray-adapt-"))
    try:
        gallery = tmp / "gallery"
        build_gallery(gallery, args).close()
        write_cleared(tmp / "cleared", station, args.cleared, size)
        before = screen_rows(gallery, rows, args)
        status, report, seconds = adapt(gallery, tmp / "cleared", args)
        after = screen_rows(gallery, rows, args)
        share = report["config"].get("base_share", 0.0)
        alone = None
        if report["gate"]["accepted"] and share > 0.0 and args.threatmap:  # base: --threatmap
            install_fine_tuned_alone(gallery, share)
            alone = screen_rows(gallery, rows, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("adapt exit %d in %.0f s, accepted %s", status, seconds, report["gate"]["accepted"])
    return {"before": before, "after": after, "alone": alone, "report": report,
            "adapt_seconds": seconds, "exit": status, "held_out": held_out(held, args.station),
            "look_held_out": held_out(held, args.look)}  # fmt: skip


def detection_change(
    before: dict, after: dict, fa: float = 0.01, draws: int = BOOTSTRAP_DRAWS, seed: int = 0
) -> tuple[float, float, float]:
    """The change in detection at ``fa`` false alarms from ``before`` to ``after`` (two
    screenings of the same bags: ``screen_row``'s ``scores``) and its ``INTERVAL`` paired
    bootstrap interval: (change, low, high).

    With at most 1 / ``fa`` clean bags the threshold is the highest clean score, so one
    clean bag that looks like a threat moves the whole row; the interval says how far.
    """
    b = {k: np.asarray(before["scores"][k], float) for k in ("threat", "clean")}
    a = {k: np.asarray(after["scores"][k], float) for k in ("threat", "clean")}
    if any(len(b[k]) != len(a[k]) or not len(b[k]) for k in b):
        raise ValueError("the two screenings must score the same, non-empty sets of bags")

    def change(pos: np.ndarray, neg: np.ndarray) -> float:
        return (
            rate_at(a["threat"][pos], a["clean"][neg], fa)[0]
            - rate_at(b["threat"][pos], b["clean"][neg], fa)[0]
        )

    rng = np.random.default_rng(seed)
    n_pos, n_neg = len(b["threat"]), len(b["clean"])
    drawn = [
        change(rng.integers(0, n_pos, n_pos), rng.integers(0, n_neg, n_neg)) for _ in range(draws)
    ]
    low, high = np.quantile(drawn, [(1.0 - INTERVAL) / 2, (1.0 + INTERVAL) / 2])
    return change(np.arange(n_pos), np.arange(n_neg)), float(low), float(high)


def change_cell(before: dict, after: dict) -> str:
    """``detection_change`` as a table cell: the change and its interval."""
    change, low, high = detection_change(before, after)
    return f"{change:+.3f} ({low:+.3f} to {high:+.3f})"


def cells(r: dict) -> str:
    """A screened row's detection at 1% / 5%, AUC and box hit at 1%, as table cells."""
    return f"{r[0.01]['det']:.3f} / {r[0.05]['det']:.3f} | {r['auc']:.3f} | {r[0.01]['hit']:.3f}"


def change_row(before: dict, after: dict) -> str:
    """A table row: the row's name, both screenings' cells and the change between them."""
    return f"| {before['row']} | {cells(before)} | {cells(after)} | {change_cell(before, after)} |"


def title(
    station: str,
    guns: str | None,
    cleared: int,
    held_out: bool,
    look: str | None = None,
    look_held_out: bool = False,
) -> str:
    """The section's heading: the station, whether the models saw it (and the one look its
    parcels are scanned in, if given), the kind of positive and the station's size where it is
    not the default's."""
    kind = family(station)
    seen = f"a {kind} held out from training" if held_out else f"a trained {kind}"
    if look is not None:
        seen += ", scanned in " + (
            "a look held out from training" if look_held_out else "a trained look"
        )
    return (
        f"## X-ray station adaptation: {label(station, look)} ({seen})"
        + {None: ", bags holding a part", "hand": "", "long": ", bags holding a long gun"}[guns]
        + ("" if cleared == CLEARED_DEFAULT else f", {cleared} cleared scans")
    )


def markdown(args: argparse.Namespace, res: dict, command: str, started: str) -> str:
    """The docs/benchmarks.md section."""
    rep = res["report"]
    b, a = rep["before"], rep["after"]
    gate = rep["gate"]
    verdict = "accepted and installed" if gate["accepted"] else "refused (the map is unchanged)"
    positives = xray_domain.threat_text(args)
    lines = [
        title(
            args.station, args.guns, args.cleared, res["held_out"], args.look, res["look_held_out"]
        ),
        "",
        f"Command: `{command}`  ",
        f"Machine: {started}  ",
        f"Gallery {gallery_text(args)}; crops {args.crop} px, "
        f"{regions_text(args.regions, bool(args.threatmap))}.  ",
        f"Station: {args.cleared} cleared parcels {station_text(args.station, args.look)}, "
        f"written as its "
        f"PNG exports; then `gunmatch adapt --gallery G "
        f"CLEARED/ --minutes {args.minutes:g}` with its defaults: {verdict} after "
        f"{res['adapt_seconds']:.0f} s wall clock ({rep['training_scans']} training and "
        f"{rep['held_out_scans']} held-out scans, {projected(rep)}, {rep['references']} "
        f"references; it kept "
        f"epoch {rep['best_epoch']} of the {rep['epochs_trained']} it trained, the best on the "
        f"worse of its held-out AUCs on small parts and larger objects). Its own "
        f"measures, AUC before -> after: held-out station scans with projected references "
        f"{b['station']['auc']:.3f} -> {a['station']['auc']:.3f} (small parts "
        f"{station_change(rep, 'auc_small')}, larger objects {station_change(rep, 'auc_large')}); "
        f"generated parcels (the "
        f"gate, margin {gate['margin']}) {b['generated']['auc']:.3f} -> "
        f"{a['generated']['auc']:.3f}.  ",
        f"Test parcels per row: {args.positives} with a threat ({positives}) and "
        f"{args.negatives} clean, the seeds of benchmarks.xray_domain; false-alarm thresholds "
        f"are quantiles of the row's own clean parcels.",
        "",
        f"The last column is the change in detection at 1% false alarms with its "
        f"{INTERVAL:.0%} paired bootstrap interval ({BOOTSTRAP_DRAWS} draws of the row's "
        f"bags); with at most 100 clean bags that threshold is the highest clean score.",
        "",
        "| row | before: detection at 1% / 5% FA | AUC | box hit at 1% FA "
        "| after: detection at 1% / 5% FA | AUC | box hit at 1% FA | change at 1% FA |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [change_row(*pair) for pair in zip(res["before"], res["after"], strict=True)]
    lines += station_thresholds(rep, res["after"])
    if res.get("alone"):
        tuned = rep["tuned"]["station"]
        lines += [
            "",
            f"The installed head is {1 - rep['config']['base_share']:g} x the fine-tuned "
            f"head + {rep['config']['base_share']:g} x the base map's (`--base-share`). The "
            f"fine-tuned head alone (`--base-share 0`; recovered from the two maps, the same "
            f"training), on its held-out station scans: AUC {tuned['auc']:.3f} (small parts "
            f"{station_auc(tuned['auc_small'])}, larger objects "
            f"{station_auc(tuned['auc_large'])}); "
            f"generated parcels {rep['tuned']['generated']['auc']:.3f}. Its rows:",
            "",
            "| row | fine-tuned alone: detection at 1% / 5% FA | AUC | box hit at 1% FA "
            "| change at 1% FA from before |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['row']} | {cells(r)} | {change_cell(before, r)} |"
            for before, r in zip(res["before"], res["alone"], strict=True)
        ]
    return "\n".join(lines)


def station_thresholds(rep: dict, after: list[dict]) -> list[str]:
    """Lines on the thresholds adapt measured: the scans and the rate they expect, and what
    they do to the rows' bags after adapting (the operating point a station gets, where the
    table's columns take each row's own clean quantiles)."""
    cal = rep.get("screening_calibration")
    judged = [(r["row"], at_thresholds(r)) for r in after]
    if cal is None or not any(j for _, j in judged):
        return []
    m = cal["metrics"]
    lines = [
        "",
        f"Adapt measured the screening thresholds on {m['scans']} cleared scans training never "
        f"saw ({threshold_scans_text(cal)}): alert {cal['alert_threshold']:.3f}, expected to "
        f"stop {m['expected_false_alarm']:.2%} of new clean parcels (asked "
        f"{m['false_alarm']:.0%}); review {cal['review_threshold']:.3f} (expected "
        f"{m['expected_review_rate']:.2%} review or alert, asked {m['review_rate']:.0%}). At "
        "those thresholds, the rows' bags after adapting:",
        "",
        "| row | clean bags alerting | threat bags alerting | clean bags at review or alert "
        "| threat bags at review or alert |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {j['clean_alert']:.3f} | {j['threat_alert']:.3f} | {j['clean_review']:.3f} "
        f"| {j['threat_review']:.3f} |"
        for name, j in judged
        if j is not None
    ]
    return lines


def section_name(
    station: str,
    guns: str | None,
    cleared: int = CLEARED_DEFAULT,
    held_out: bool = False,
    look: str | None = None,
) -> str:
    """A section per station (its look or scene, and the one look of a scene station's
    scanner if given), kind of positive (whole handguns: the station's name alone), whether
    the models were trained without the station's look or scene (``-held-out``) and station
    size (the default's: no suffix)."""
    kind = {None: "-parts", "hand": "", "long": "-long-guns"}[guns]
    return (
        f"adapt-{stem(station, look)}{kind}"
        + ("-held-out" if held_out else "")
        + ("" if cleared == CLEARED_DEFAULT else f"-cleared-{cleared}")
    )


def parser(doc: str = __doc__, counts: bool = False) -> argparse.ArgumentParser:
    """``benchmarks.xray_domain``'s options, plus the station's (with ``counts``, several
    station sizes, a row each)."""
    p = xray_domain.parser()
    p.description = doc.splitlines()[0]
    p.add_argument(
        "--station", required=True, help="the station's scanner look or clutter family (scene)"
    )
    p.add_argument(
        "--look",
        help="with a scene --station: the one look its scanner gives every parcel (otherwise "
        "each parcel's look is drawn from the trained ones)",
    )
    if counts:
        p.add_argument(
            "--cleared", type=int, nargs="+", default=[CLEARED_DEFAULT],
            help="cleared scan counts, a row each",
        )  # fmt: skip
    else:
        p.add_argument(
            "--cleared", type=int, default=CLEARED_DEFAULT, help="the station's cleared scans"
        )
    p.add_argument("--minutes", type=float, default=15.0, help="gunmatch adapt's time budget")
    return p


def stations() -> list[str]:
    """What a station may be: a scanner look (its bags in the trained scenes) or a clutter
    family (its bags in the trained looks), the classic scene aside (the default look's)."""
    scenes = [n for n in xray_domain.SCENES if n != xray_domain.DEFAULT_SCENE]
    return [*xray_domain.LOOKS, *scenes]


def family(station: str) -> str:
    """ "look" or "clutter family": what a station stands for."""
    return "look" if station in xray_domain.LOOKS else "clutter family"


def label(station: str, look: str | None = None) -> str:
    """A station's name in tables and headings: a scene station's look, if one, after it."""
    return station if look is None else f"{station} in {look}"


def stem(station: str, look: str | None = None) -> str:
    """A station's name in section names: its ``label``, hyphenated."""
    return label(station, look).replace(" ", "-")


def station_text(station: str, look: str | None = None) -> str:
    """Where a station's parcels come from, in the sections' words."""
    if station in xray_domain.LOOKS:
        return f"in the {station} look (scenes drawn from the trained ones)"
    if look is not None:
        return f"of the {station} scene (its clutter family), each scanned in the {look} look"
    return (
        f"of the {station} scene (its clutter family; each parcel's scanner look drawn from "
        "the trained ones)"
    )


def held_out(held: list[str] | None, name: str | None) -> bool:
    """Whether the models were trained without the look or scene ``name`` (``held``: as
    ``xray_domain.held_out_arg`` gives it)."""
    return any(r.name == name and r.held_out for r in xray_domain.plan_rows(held))


def station_row(held: list[str] | None, station: str, look: str | None = None) -> xray_domain.Row:
    """The station's row of ``benchmarks.xray_domain``; with ``look``, the scene ``station``
    scanned in that one look (a station has one scanner), held out if either of them is,
    trained or not."""
    if look is None:
        (row,) = xray_domain.chosen_rows(held, [station])
        return row
    style = ScannerStyle(xray_domain.LOOKS[look], xray_domain.SCENES[station])
    seen = held_out(held, station) or held_out(held, look)
    return xray_domain.Row(label(station, look), seen, lambda seed: style)


def check_station(args: argparse.Namespace) -> None:
    """A station must be a look or a clutter family, and ``--look`` a look given with a
    clutter family (SystemExit otherwise)."""
    if args.station not in stations():
        raise SystemExit(f"--station must be a look or a scene: {', '.join(stations())}")
    if args.look is not None and (
        args.look not in xray_domain.LOOKS or args.station in xray_domain.LOOKS
    ):
        raise SystemExit(
            f"--look goes with a scene --station and must be a look: {', '.join(xray_domain.LOOKS)}"
        )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    args = parser().parse_args(argv)
    check_station(args)
    if args.gallery or args.dump or args.only or args.quick or args.whole_image:
        raise SystemExit("--gallery, --dump, --only, --quick and --whole-image do not apply here")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = begun()
    res = run(args)
    text = markdown(args, res, command_line("benchmarks.xray_adapt", argv), started)
    held = res["held_out"] or res["look_held_out"]
    name = section_name(args.station, args.guns, args.cleared, held, args.look)
    publish(text, name, args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
