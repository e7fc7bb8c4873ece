"""Alert / review / clear decisions from match scores, and the calibration file they use.

The calibration file (written by evaluation) is JSON at ``<gallery>/calibration.json``::

    {"model_id": str, "alert_threshold": float, "review_threshold": float,
     "created_at": str, "source": str, "metrics": {...}}

Decision: the best *threat* match's score >= alert -> ``alert``; >= review -> ``review``;
otherwise (or with no threat match) ``clear``. When the file is absent, unreadable or made for
another model, conservative defaults are used (a low review threshold, so doubtful cases go
to a person rather than being cleared) and a warning is logged.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from index import CALIBRATION_FILE
from screening.calibration import fitting_calibration
from screening.screen import DecisionFn, ScanEngine, ScreeningConfig

log = logging.getLogger(__name__)

DECISIONS = ("alert", "review", "clear")
# Uncalibrated: cosine similarities of pretrained GeM features rarely fall below ~0.3 even
# for unrelated images, so 0.5 sends most plausible threat look-alikes to review.
DEFAULT_ALERT_THRESHOLD = 0.85
DEFAULT_REVIEW_THRESHOLD = 0.5


@dataclass(frozen=True)
class Calibration:
    """Thresholds for one model; ``calibrated`` is False when these are the safe defaults."""

    model_id: str
    alert_threshold: float = DEFAULT_ALERT_THRESHOLD
    review_threshold: float = DEFAULT_REVIEW_THRESHOLD
    created_at: str = ""
    source: str = "defaults"
    metrics: dict[str, Any] = field(default_factory=dict)
    calibrated: bool = False

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    """The verdict for one query and why."""

    decision: str
    score: float | None
    threshold: float | None
    alert_threshold: float
    review_threshold: float
    calibrated: bool
    best_threat: dict | None = None

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


def default_calibration(model_id: str, reason: str = "defaults") -> Calibration:
    """Safe, uncalibrated thresholds."""
    return Calibration(model_id=model_id, source=reason)


def calibration_path(gallery_dir: str | Path, override: str | Path | None = None) -> Path:
    """Where the calibration file for a gallery lives (``override`` wins)."""
    return Path(override) if override else Path(gallery_dir) / CALIBRATION_FILE


def parse_calibration(data: dict, model_id: str) -> Calibration:
    """Validate a calibration dict for ``model_id``; raises ValueError when unusable."""
    if not isinstance(data, dict):
        raise ValueError("calibration must be a JSON object")
    if data.get("model_id") != model_id:
        raise ValueError(f"calibration is for model {data.get('model_id')!r}, not {model_id!r}")
    try:
        alert = float(data["alert_threshold"])
        review = float(data["review_threshold"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"calibration thresholds missing or not numbers ({exc})") from None
    if not (math.isfinite(alert) and math.isfinite(review)):
        raise ValueError("calibration thresholds must be finite")
    if review > alert:
        raise ValueError(f"review_threshold {review} is above alert_threshold {alert}")
    metrics = data.get("metrics") if isinstance(data.get("metrics"), dict) else {}
    return Calibration(
        model_id=model_id,
        alert_threshold=alert,
        review_threshold=review,
        created_at=str(data.get("created_at", "")),
        source=str(data.get("source", "")),
        metrics=metrics,
        calibrated=True,
    )


def load_calibration(path: str | Path, model_id: str) -> Calibration:
    """The calibration at ``path`` for ``model_id``, or safe defaults with a logged warning."""
    path = Path(path)
    if not path.is_file():
        log.warning("no calibration file at %s: using default thresholds", path)
        return default_calibration(model_id, f"defaults (no {path.name})")
    try:
        return parse_calibration(json.loads(path.read_text(encoding="utf-8")), model_id)
    except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
        log.warning("ignoring calibration %s (%s): using default thresholds", path, exc)
        return default_calibration(model_id, f"defaults ({exc})")


def decide_score(score: float | None, cal: Calibration) -> tuple[str, float | None]:
    """Decision for the best threat score (None: no threat match) and the threshold it met."""
    if score is None or not math.isfinite(score):
        return "clear", None
    if score >= cal.alert_threshold:
        return "alert", cal.alert_threshold
    if score >= cal.review_threshold:
        return "review", cal.review_threshold
    return "clear", cal.review_threshold


def decide(threat_matches: Iterable[dict], cal: Calibration) -> Decision:
    """Decision from match dicts (``score``, ``threat``); only threat matches count."""
    best = None
    for m in threat_matches:
        if m.get("threat") and (best is None or float(m["score"]) > float(best["score"])):
            best = m
    score = float(best["score"]) if best is not None else None
    verdict, threshold = decide_score(score, cal)
    return Decision(
        decision=verdict,
        score=score,
        threshold=threshold,
        alert_threshold=cal.alert_threshold,
        review_threshold=cal.review_threshold,
        calibrated=cal.calibrated,
        best_threat=best,
    )


def compare_verdict(similarity: float, cal: Calibration) -> str:
    """Verdict for a pairwise comparison: ``match``, ``possible_match`` or ``different``."""
    if similarity >= cal.alert_threshold:
        return "match"
    if similarity >= cal.review_threshold:
        return "possible_match"
    return "different"


def most_severe(decisions: Iterable[str]) -> str:
    """The most severe of several decisions (alert > review > clear); ``clear`` if none."""
    ranked = [d for d in decisions if d in DECISIONS]
    return min(ranked, key=DECISIONS.index) if ranked else "clear"


def decision_fn(cal: Calibration) -> DecisionFn:
    """A region's verdict from its threat score on ``cal``'s thresholds."""
    return lambda score: decide_score(score, cal)[0]


def threshold_decision_fn(alert: float, review: float) -> DecisionFn:
    """Decisions from explicit thresholds: >= alert -> alert, >= review -> review, else clear."""
    if review > alert:
        raise ValueError(f"review threshold {review} is above alert threshold {alert}")
    return decision_fn(Calibration("", alert, review, source="explicit", calibrated=True))


def gallery_calibration(engine: ScanEngine) -> Calibration:
    """The gallery's calibration file (safe defaults when it has none or it does not fit)."""
    return load_calibration(engine.gallery.calibration_file, engine.embedder.model_id)


def screening_calibration(engine: ScanEngine, cfg: ScreeningConfig) -> Calibration | None:
    """The screening calibration measured with these settings (``gunmatch gallery
    calibrate-screening``), else None."""
    data = fitting_calibration(engine, cfg)
    if data is None:
        return None
    try:
        return parse_calibration(data, engine.embedder.model_id)
    except ValueError as exc:
        log.warning("ignoring screening calibration of %s (%s)", engine.gallery.root, exc)
        return None


def screening_decision_fn(engine: ScanEngine, cfg: ScreeningConfig) -> DecisionFn:
    """Region decisions as searches make them: on the screening calibration when it fits these
    settings, else on the gallery's."""
    return decision_fn(screening_calibration(engine, cfg) or gallery_calibration(engine))
