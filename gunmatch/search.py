"""One search path for the CLI and the API: decode once, embed, search, screen, decide, audit.

A query is decoded once (``decode_query``); its tensor is embedded by the caller's embedder
(the CLI calls the model directly, the service goes through its bounded queue and
micro-batcher), and ``finish_search`` does the rest: the whole-image search, the decision on
the best threat reference in the whole gallery, and for X-ray queries region screening, whose
matches merge with the whole image's (each reference's best score) and whose worst region
can only make the verdict more severe. ``search_image`` chains the three for the CLI.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from gunmatch.decision import (
    Calibration,
    Decision,
    decide,
    decision_fn,
    gallery_calibration,
    most_severe,
    screening_calibration,
)
from gunmatch.service import Engine
from gunmatch.state import AuditLog
from index import Filters, Match, best_per_item
from matcher.images import ImageSource, load_image
from matcher.preprocess import check_modality, xray_to_transmission
from screening.screen import DecisionFn, ScreeningConfig, ScreeningResult, screen_transmission

HISTORY_LIMIT = 5


def new_query_id() -> str:
    """A random, URL-safe id for one query."""
    return "q_" + secrets.token_hex(10)


@dataclass(frozen=True)
class SearchOptions:
    """What one search asks for; ``regions=None`` screens regions of X-ray queries only."""

    k: int = 10
    modality: str | None = None
    filters: Filters = field(default_factory=Filters)
    regions: bool | None = None
    screening: ScreeningConfig = field(default_factory=ScreeningConfig)

    def use_regions(self, modality: str) -> bool:
        """Whether a query of ``modality`` is screened region by region."""
        return self.regions if self.regions is not None else modality == "xray"


@dataclass(frozen=True)
class Judge:
    """The thresholds searches decide on: the gallery's calibration, and the screening
    calibration measured on cleared scans with the service's screening settings (if any)."""

    calibration: Calibration
    screening: Calibration | None = None

    @property
    def region_fn(self) -> DecisionFn:
        """Region verdicts: on the screening calibration when it fits, else the gallery's."""
        return decision_fn(self.screening or self.calibration)


def load_judge(
    engine: Engine, cfg: ScreeningConfig, calibration: Calibration | None = None
) -> Judge:
    """Read a gallery's calibrations once (``calibration`` overrides the gallery's file)."""
    cal = calibration or gallery_calibration(engine)
    return Judge(cal, screening_calibration(engine, cfg))


@dataclass
class Query:
    """One decoded query image."""

    name: str
    image: Image.Image
    modality: str


def decode_query(engine: Engine, name: str, source: ImageSource, modality: str | None) -> Query:
    """Decode a query once (raises ``ImageError`` for bad input); modality defaults to the
    gallery's."""
    mod = check_modality(modality or engine.gallery.modality)
    return Query(name, load_image(source, engine.embedder.max_pixels), mod)


def query_tensor(engine: Engine, query: Query) -> torch.Tensor:
    """The decoded query preprocessed for the model: (3, s, s)."""
    return engine.embedder.prepare(query.image, query.modality)


@dataclass
class SearchOutcome:
    """Matches, the verdict and (for screened scans) the regions of one query."""

    query: str
    modality: str
    matches: list[Match]
    decision: Decision
    model_id: str
    screened: ScreeningResult | None = None
    elapsed_ms: float = 0.0
    vector: np.ndarray | None = field(default=None, repr=False)

    def matches_dicts(self) -> list[dict]:
        """The matches in their public shape."""
        return [m.to_dict() for m in self.matches]

    def regions_dicts(self) -> list[dict] | None:
        """The screened regions in their public shape (None: not screened)."""
        return None if self.screened is None else [r.to_dict() for r in self.screened.regions]

    def to_dict(self) -> dict:
        """The CLI's ``search --json`` line."""
        out = {
            "query": self.query,
            "matches": self.matches_dicts(),
            "decision": self.decision.decision,
            "model_id": self.model_id,
            "elapsed_ms": round(self.elapsed_ms, 2),
        }
        if self.screened is not None:
            screened = self.screened.to_dict()
            for key in ("regions", "score", "width", "height", "proposals", "timings_ms"):
                out[key] = screened[key]
        return out


def finish_search(
    engine: Engine,
    query: Query,
    vector: np.ndarray,
    opts: SearchOptions,
    judge: Judge,
    started: float | None = None,
) -> SearchOutcome:
    """Search an embedded query, screen its regions where asked, and decide.

    The whole-image decision looks at the best threat reference in the whole gallery (not
    only in the top k shown), so a filter or a small k never hides a threat.
    """
    if opts.k < 1:
        raise ValueError("k must be at least 1")
    started = time.perf_counter() if started is None else started
    vector = np.asarray(vector, dtype=np.float32).reshape(1, -1)
    matches = engine.gallery.search(vector, opts.k, opts.filters)[0]
    threat = engine.gallery.search(vector, 1, Filters(threat=True))[0]
    verdict = decide([threat[0].to_dict()] if threat else [], judge.calibration)
    screened = None
    if opts.use_regions(query.modality):
        pre = engine.embedder.preprocess_config
        t = xray_to_transmission(query.image, pre.xray_white_percentile)
        screened = screen_transmission(
            engine, t, opts.k, opts.filters, judge.region_fn, opts.screening
        )
        matches = best_per_item([*matches, *screened.matches], opts.k)
        worst = most_severe([verdict.decision, screened.decision])
        verdict = Decision(**{**verdict.to_dict(), "decision": worst})
    return SearchOutcome(
        query=query.name,
        modality=query.modality,
        matches=matches,
        decision=verdict,
        model_id=engine.embedder.model_id,
        screened=screened,
        elapsed_ms=(time.perf_counter() - started) * 1000.0,
        vector=vector[0],
    )


def search_image(
    engine: Engine, name: str, source: ImageSource, opts: SearchOptions, judge: Judge
) -> SearchOutcome:
    """Decode, embed, search, screen and decide one image (the CLI's path)."""
    started = time.perf_counter()
    query = decode_query(engine, name, source, opts.modality)
    vector = engine.embedder.embed_tensors(query_tensor(engine, query)[None])
    return finish_search(engine, query, vector[0], opts, judge, started)


def search_history(audit: AuditLog, sha256: str) -> list[dict]:
    """The latest searches of the same image bytes."""
    rows = audit.list(limit=HISTORY_LIMIT, sha256=sha256, action="search")
    return [
        {"ts": r.ts, "query_id": r.query_id, "key_name": r.key_name, "decision": r.decision}
        for r in rows
    ]


def audit_search(
    audit: AuditLog,
    key_name: str,
    query_id: str,
    data: bytes,
    ext: str,
    outcome: SearchOutcome,
    k: int,
) -> tuple[str, list[dict]]:
    """Keep the query image and append its audit row; returns (sha256, earlier searches)."""
    sha, rel = audit.store_image(data, ext)
    history = search_history(audit, sha)
    regions = outcome.regions_dicts()
    audit.append(
        "search",
        key_name,
        query_id,
        sha,
        rel,
        outcome.model_id,
        outcome.decision.decision,
        {
            "filename": outcome.query,
            "k": k,
            "modality": outcome.modality,
            "matches": [[m.item.item_id, round(float(m.score), 4)] for m in outcome.matches],
            "decision": outcome.decision.to_dict(),
            "regions": len(regions) if regions is not None else None,
        },
    )
    return sha, history

