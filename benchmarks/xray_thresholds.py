"""Screening thresholds set on a station's cleared scans: the false alarms they give after.

`gunmatch gallery calibrate-screening` and `gunmatch adapt` set a station's alert (and
review) threshold on n cleared scans so that a share ``rate`` of clean parcels alerts. What a
station then lives with is the share of its *next* clean parcels that alert, which differs from
draw to draw of the n scans. This benchmark screens a pool of generated bags of one station
(``benchmarks.xray_domain``'s rows, seeds and gallery; every option it does not know goes to
that module) once, then B times draws n of the clean bags as the cleared scans, sets the
threshold from them, and counts the pool's other clean bags and its threat bags that reach it.

Two rules side by side: ``screening.calibration.threshold_above`` (the product's: the expected
share of new clean scans reaching it is at most the rate where n >= 1 / rate - 1) and the plain
quantile (at most floor(rate n) of the cleared scans reach it; the product's rule until the
fortieth session).

    python -m benchmarks.xray_thresholds --station dense --guns --positives 100 \\
        --negatives 800 --model models/xray-v1 --threatmap models/threatmap-v6 --crop 112 \\
        --clutter-refs 64 --write
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from benchmarks import xray_domain
from benchmarks.report import begun, command_line, publish
from benchmarks.timing import table
from screening.calibration import expected_rate, threshold_above

Rule = Callable[[np.ndarray, float], float]


def plain_quantile(scores: np.ndarray, rate: float) -> float:
    """Just above the (floor(rate n) + 1)-th highest score: at most ``rate`` of them reach it."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    allowed = int(np.floor(rate * len(s) + 1e-9))
    return float(np.nextafter(s[len(s) - allowed - 1], np.inf))


RULES: dict[str, Rule] = {"plain quantile": plain_quantile, "threshold_above": threshold_above}


def draws(
    clean: np.ndarray, threat: np.ndarray, n: int, rate: float, rule: Rule, b: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """``b`` draws of ``n`` cleared scans from ``clean``: each threshold's false alarms on the
    other clean scores and its detection of ``threat`` (score >= threshold alerts)."""
    if not 0 < n < len(clean):
        raise ValueError(f"need 0 < n < {len(clean)} clean scores, got n = {n}")
    rng = np.random.default_rng(seed)
    fa, det = np.empty(b), np.empty(b)
    for i in range(b):
        picked = np.zeros(len(clean), bool)
        picked[rng.choice(len(clean), n, replace=False)] = True
        t = rule(clean[picked], rate)
        fa[i] = np.mean(clean[~picked] >= t)
        det[i] = np.mean(threat >= t)
    return {"fa": fa, "det": det}


def summary(d: dict[str, np.ndarray], rate: float) -> dict[str, float]:
    """Mean, 5%-95% range and share over twice the rate of the false alarms; mean detection."""
    fa = d["fa"]
    return {
        "fa": float(fa.mean()),
        "fa_lo": float(np.quantile(fa, 0.05)),
        "fa_hi": float(np.quantile(fa, 0.95)),
        "over_2x": float(np.mean(fa > 2 * rate)),
        "det": float(d["det"].mean()),
    }


def compare(
    clean: np.ndarray,
    threat: np.ndarray,
    sizes: Sequence[int],
    rates: Sequence[float],
    b: int,
) -> list[dict]:
    """Each (rate, n): both rules' summaries on the same draws (the same seed)."""
    out = []
    for rate in rates:
        for n in sizes:
            row = {"rate": rate, "n": n, "expected": expected_rate(n, rate)}
            for name, rule in RULES.items():
                row[name] = summary(draws(clean, threat, n, rate, rule, b), rate)
            out.append(row)
    return out


def pool_detection(clean: np.ndarray, threat: np.ndarray, rate: float) -> float:
    """Detection at the pool's own quantile (every clean bag known): the figure to approach."""
    return float(np.mean(threat >= plain_quantile(clean, rate)))


def screened_scores(domain_argv: list[str], station: str) -> dict[str, list[float]]:
    """Screen one row of ``benchmarks.xray_domain`` (models trained on every style)."""
    args = xray_domain.parser().parse_args([*domain_argv, "--only", station, "--held-out", "none"])
    (result,) = xray_domain.run(args)
    return result["scores"]


def markdown(
    scores: dict[str, list[float]], rows: list[dict], args: argparse.Namespace, command: str,
    started: str,
) -> str:  # fmt: skip
    """The docs/benchmarks.md section."""
    clean, threat = np.array(scores["clean"]), np.array(scores["threat"])
    lines = [
        f"## X-ray screening thresholds from n cleared scans: {args.station} station",
        "",
        f"Command: `{command}`  ",
        f"Machine: {started}  ",
        f"Pool: the row '{args.station}' of benchmarks.xray_domain (its seeds and gallery), "
        f"{len(threat)} bags with a threat and {len(clean)} clean, each screened once"
        + (f" (scores read from {args.scores})" if args.scores else "")
        + f". Each row draws n of the clean bags {args.draws} times as the station's cleared "
        "scans, sets the threshold for the asked rate from them, and counts the pool's other "
        "clean bags that reach it (false alarms on new parcels) and the threat bags "
        "(detection). Expected: k / (n + 1) for `threshold_above`'s k.",
        "",
    ]
    head = ["asked rate", "n", "expected"]
    for name in RULES:
        head += [f"{name}: false alarms, mean (5%-95%)", "over 2x the rate", "detection"]
    body = []
    for r in rows:
        cells: list[object] = [f"{r['rate']:.1%}", r["n"], f"{r['expected']:.2%}"]
        for name in RULES:
            s = r[name]
            cells += [
                f"{s['fa']:.2%} ({s['fa_lo']:.2%}-{s['fa_hi']:.2%})",
                f"{s['over_2x']:.2f}",
                f"{s['det']:.3f}",
            ]
        body.append(cells)
    lines.append(table(head, body))
    lines += [
        "",
        "Detection at the pool's own quantile (all its clean bags known): "
        + ", ".join(f"{rate:.1%}: {pool_detection(clean, threat, rate):.3f}" for rate in args.rates)
        + ".",
    ]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    """This benchmark's options; the rest are benchmarks.xray_domain's."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--station", default="dense", help="the xray_domain row (its scene or look)")
    p.add_argument("--sizes", type=int, nargs="+", default=[40, 67, 100, 200, 300])
    p.add_argument("--rates", type=float, nargs="+", default=[0.01, 0.025, 0.05])
    p.add_argument("--draws", type=int, default=2000)
    p.add_argument("--scores", help="read the pool's scores (JSON) instead of screening")
    p.add_argument("--save-scores", help="write the pool's scores (JSON)")
    p.add_argument("--write", action="store_true", help="write docs/benchmarks.md section")
    return p


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    args, domain_argv = parser().parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = begun()
    if args.scores:
        scores = json.loads(Path(args.scores).read_text())
    else:
        scores = screened_scores(domain_argv, args.station)
    if args.save_scores:
        Path(args.save_scores).write_text(json.dumps(scores))
    clean, threat = np.array(scores["clean"]), np.array(scores["threat"])
    rows = compare(clean, threat, args.sizes, args.rates, args.draws)
    text = markdown(scores, rows, args, command_line("benchmarks.xray_thresholds", argv), started)
    publish(text, f"thresholds-{args.station}", args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
