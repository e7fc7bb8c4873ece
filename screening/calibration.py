"""Screening thresholds measured on cleared parcels: stop a known share of clean traffic.

A gallery's calibration file (``calibration.json``) puts thresholds on the similarity of a
query to its best threat reference, measured on isolated scans. A screened scan's score is
a different quantity (a margin, plus the threat map's logit), so a station that wants
"stop about 1 in 100 clean parcels" measures it: ``gunmatch gallery calibrate-screening
CLEARED_SCANS`` screens scans known to hold no threat with the very settings searches use
and writes ``screening-calibration.json``, whose alert threshold lets at most a
``false_alarm`` share of them alert and whose review threshold at most a ``review_rate``
share reach review or alert. It records those settings; ``fitting_calibration`` hands the
file back only to a search with the same settings, model and threat map (the application
falls back to the gallery's calibration otherwise, with a warning).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from index.files import atomic_write
from matcher.threatmap import views_per_zoom
from screening.screen import ScanEngine, ScreeningConfig, crop_side, screen_transmission

log = logging.getLogger(__name__)

SCREENING_CALIBRATION_FILE = "screening-calibration.json"


def screening_key(engine: ScanEngine, cfg: ScreeningConfig) -> dict:
    """The settings a screening score depends on (a calibration only fits the same ones)."""
    tmap = engine.threatmap if cfg.use_map else None
    return {
        "model_id": engine.embedder.model_id,
        "score_mode": cfg.score_mode,
        "score_k": cfg.score_k,
        "proposals": asdict(cfg.proposal_config(tmap is not None)),
        # the side crops are embedded at, named or the model's (the same scores either way)
        "crop_size": crop_side(engine, cfg),
        "threatmap": None
        if tmap is None
        else {
            "id": tmap.map_id,
            # Files from before the logit term (weight x probability) carry no "term" and
            # so no longer fit.
            "term": "logit",
            "weight": cfg.map_weight,
            "fit_weight": cfg.map_fit_weight,
            "box_weight": cfg.map_box_weight,
            "threshold": cfg.map_threshold,
            "regions": cfg.map_regions,
            "views": list(views_per_zoom(cfg.map_views, len(cfg.map_zooms))),
            "zooms": [round(z, 4) for z in cfg.map_zooms],
        },
    }


def with_crop_side(key: object, engine: ScanEngine, cfg: ScreeningConfig) -> object:
    """A stored key with the crop side filled in: files written before the key held the side
    itself say null where the model's side was used (the model id is in the key, so it is
    this engine's model where the rest matches)."""
    if isinstance(key, dict) and "crop_size" in key and key["crop_size"] is None:
        return {**key, "crop_size": crop_side(engine, replace(cfg, crop_size=None))}
    return key


def calibration_file(engine: ScanEngine) -> Path:
    """Where a gallery keeps its screening calibration."""
    return engine.gallery.root / SCREENING_CALIBRATION_FILE


def reached(n: int, rate: float) -> int:
    """How many of ``n`` cleared scores the threshold for ``rate`` sits under (at least 1).

    A new clean scan, exchangeable with the ``n`` cleared ones, outscores the k-th highest of
    them with probability k / (n + 1) (its rank among the n + 1 is uniform), so the largest k
    with k / (n + 1) <= rate keeps the expected false alarms on new parcels at ``rate``
    or under. The plain quantile (at most ``rate`` of the cleared scans reach it, k - 1 =
    floor(rate n)) gives (floor(rate n) + 1) / (n + 1): about twice the rate where rate n
    is near 1 (40 scans at 2.5%, 100 at 1%). Below 1 / rate - 1 scans even the highest
    (k = 1) gives more than the rate: ``expected_rate`` says how much.
    """
    return max(1, int(np.floor(rate * (n + 1) + 1e-9)))


def expected_rate(n: int, rate: float) -> float:
    """The expected share of new clean scans reaching ``threshold_above`` of ``n`` scores."""
    return reached(n, rate) / (n + 1)


def scans_for_rate(rate: float) -> int:
    """The fewest cleared scans whose highest score keeps new false alarms at ``rate``."""
    return int(np.ceil(1.0 / rate - 1.0 - 1e-9))


def threshold_above(scores: np.ndarray, rate: float) -> float:
    """The threshold (score >= t alerts) just above the ``reached(n, rate)``-th highest score:
    the lowest that keeps the expected share of new clean scans reaching it at ``rate``."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    return float(np.nextafter(s[len(s) - reached(len(s), rate)], np.inf))


def calibrate_screening(
    engine: ScanEngine,
    scans: Iterable[np.ndarray],
    cfg: ScreeningConfig | None = None,
    false_alarm: float = 0.01,
    review_rate: float = 0.05,
    progress: bool = True,
) -> dict:
    """Screen cleared scans (transmission images) and write the gallery's screening thresholds."""
    cfg = cfg or ScreeningConfig()
    if not 0 < false_alarm <= review_rate < 1:
        raise ValueError("need 0 < false_alarm <= review_rate < 1")
    scores = []
    bar = tqdm(scans, desc="screening cleared scans", unit="scan", disable=not progress or None)
    for t in bar:
        res = screen_transmission(engine, t, 1, None, lambda s: "clear", cfg)
        scores.append(res.score if res.score is not None else -np.inf)
    if len(scores) < 2:
        raise ValueError("need at least 2 cleared scans")
    a = np.array(scores, dtype=np.float64)
    finite = a[np.isfinite(a)]
    alert = threshold_above(a, false_alarm) if finite.size else 1.0
    review = min(threshold_above(a, review_rate), alert) if finite.size else alert
    if expected_rate(len(a), false_alarm) > false_alarm:
        log.warning(
            "%d cleared scans: the alert threshold, above the highest of them, lets about %.2f%% "
            "of new clean parcels alert, not %g%%; %d or more scans hold it to that",
            len(a), 100 * expected_rate(len(a), false_alarm), 100 * false_alarm,
            scans_for_rate(false_alarm),
        )  # fmt: skip
    data = {
        "model_id": engine.embedder.model_id,
        "alert_threshold": alert,
        "review_threshold": review,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": f"gunmatch gallery calibrate-screening ({len(a)} cleared scans)",
        "metrics": {
            "scans": len(a),
            "false_alarm": false_alarm,
            "review_rate": review_rate,
            "alerts_on_cleared": int(np.sum(a >= alert)),
            "reviews_on_cleared": int(np.sum((a >= review) & (a < alert))),
            # on new clean parcels, in expectation (``reached``)
            "expected_false_alarm": expected_rate(len(a), false_alarm),
            "expected_review_rate": expected_rate(len(a), review_rate),
            "scans_for_rate": scans_for_rate(false_alarm),
            "score_quantiles": {
                q: float(np.quantile(finite, float(q))) for q in ("0.5", "0.9", "0.95", "0.99")
            }
            if finite.size
            else {},
        },
        "screening": screening_key(engine, cfg),
    }
    atomic_write(calibration_file(engine), json.dumps(data, indent=2).encode())
    return data


def fitting_calibration(engine: ScanEngine, cfg: ScreeningConfig) -> dict | None:
    """The gallery's screening calibration (raw JSON) when it fits these settings, else None."""
    path = calibration_file(engine)
    if not path.is_file():
        if cfg.use_map and engine.threatmap is not None:
            log.warning(
                "%s has a threat map but no screening calibration: region scores (retrieval + "
                "%g x map logit) are judged on the gallery's thresholds, measured on "
                "isolated references; run gunmatch gallery calibrate-screening on cleared scans",
                engine.gallery.root,
                cfg.map_weight,
            )
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("ignoring screening calibration %s (%s)", path, exc)
        return None
    if not isinstance(data, dict) or with_crop_side(data.get("screening"), engine, cfg) != (
        json.loads(json.dumps(screening_key(engine, cfg)))
    ):
        log.warning(
            "screening calibration %s was measured with other settings; using the gallery's "
            "calibration (re-run gunmatch gallery calibrate-screening)",
            path,
        )
        return None
    return data


__all__ = [
    "SCREENING_CALIBRATION_FILE",
    "calibrate_screening",
    "calibration_file",
    "expected_rate",
    "fitting_calibration",
    "reached",
    "scans_for_rate",
    "screening_key",
    "threshold_above",
    "with_crop_side",
]
