"""Screen a cluttered X-ray scan: propose regions, embed them in one batch, search, merge, decide.

A parcel scan embedded whole hides a barrel among clothes and cables; here each proposed
region (see ``screening.regions``) is cropped from the transmission image, letterboxed on
white like an isolated reference, embedded in one batch and searched. Overlapping hits on
the same reference label merge; each region carries its box, top matches and a decision,
and the scan's decision is the worst region's.

When the gallery has a threat map (``matcher.threatmap``, installed with ``gunmatch gallery
threatmap``), one pass over the whole scan adds its hot areas to the proposals and each
region's score gains ``map_weight`` times the map's logit (log-odds) of a part inside its box.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

import numpy as np
import torch
from PIL import Image

from index import Filters, Gallery, Match, best_per_item
from matcher.embedder import Embedder
from matcher.images import ImageSource, load_image
from matcher.preprocess import PreprocessConfig, grey_to_tensor, xray_to_transmission
from matcher.threatmap import ThreatMap, box_fit, box_scores
from screening.regions import (
    ProposalConfig,
    clip_boxes,
    local_contrast,
    map_regions,
    merge_groups,
    pad_boxes,
    propose_regions,
    square_boxes,
)

log = logging.getLogger(__name__)

# A region's verdict from its threat score (None: no threat reference): "alert", "review" or
# "clear", never less severe for a higher score. The application passes it in (its
# calibrations live there), so screening knows scores, not thresholds.
DecisionFn = Callable[[float | None], str]


class ScanEngine(Protocol):
    """What screening needs of an opened gallery (``gunmatch.service.Engine`` is one)."""

    gallery: Gallery
    embedder: Embedder
    threatmap: ThreatMap | None


@dataclass(frozen=True)
class ScreeningConfig:
    """How a scan is screened; the defaults fit a 2-megapixel scan in about a second."""

    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    # Crop side fed to the model; None = the model's input size, capped at ``max_crop_size``.
    crop_size: int | None = None
    max_crop_size: int = 160
    # Context kept around a proposal's tight box when cropping, as a fraction of its side.
    crop_pad: float = 0.15
    # Crops smaller than this (scan pixels) are grown so tiny parts keep some context.
    min_crop_side: int = 48
    # Regions whose boxes overlap more than this and share a top label are merged.
    merge_iou: float = 0.3
    # Divide out clothes and packaging in each crop: floor neighbourhood as a fraction of the
    # crop side (0 = off).
    flatten_frac: float = 0.0
    # Region threat score: "match" = best threat reference's cosine similarity (the scale
    # calibration files use); "margin" = that minus the best benign reference's similarity,
    # which discounts crops that look as much like a phone or a wrench as like a slide.
    score_mode: Literal["match", "margin"] = "match"
    # Similarities averaged into each side of the score: the k best threat references (and,
    # for "margin", the k best benign ones). k > 1 steadies the score against one stray
    # reference that happens to resemble a battery or a buckle.
    score_k: int = 1
    # The most regions reported per scan (best threat score first).
    max_regions: int = 8
    # With a threat map (GALLERY/model/threatmap, ``gunmatch train-threatmap``): its hot
    # areas (connected cells with a logit above ``map_threshold``, at most ``map_regions``)
    # are proposed besides the dense-material boxes, and each region's threat score adds
    # ``map_weight`` x the map's logit (log-odds) that a part lies in its box. The logit,
    # not the probability: on styled bags the map's clean and threat logits both lie far
    # up the sigmoid, where probabilities differ by less than the retrieval score's spread
    # and a weighted probability lost what the map alone separates (0.08 against 0.88
    # detected at 1% false alarms on validation bags holding a whole handgun). The weight
    # was chosen on validation parcels and bags (benchmarks/notes/xray.md).
    use_map: bool = True
    map_threshold: float = -1.0
    map_regions: int = 16
    map_weight: float = 1.0
    # Plus ``map_fit_weight`` x how well the box fits the hot area it holds
    # (``matcher.threatmap.box_fit``): of the boxes round one hot part, which the map rates
    # alike, the tight one wins over a large window holding it or a small one cutting a hot
    # gun in pieces. 1.0 was chosen on validation parcels (benchmarks/notes/xray.md).
    map_fit_weight: float = 1.0
    # Plus ``map_box_weight`` for the map's own hot-area boxes. Every box holding a hot
    # part's hottest cell has the same logit; without this the retrieval score chose among
    # them, and on bags holding a whole handgun it chose a part-sized box inside the gun
    # (IoU with the gun >= 0.3 for 0.70 of validation bags, 0.98 with the weight at 1; the
    # detection rate is unchanged, benchmarks/notes/xray.md).
    map_box_weight: float = 1.0
    # Views of the scan the map averages at each size (``ThreatMap.predict``; one count for
    # every size, or one per size): 2 = the scan and its mirror image (twice one pass's
    # work, in one batch), 4 = those and both upside down, 1 = the scan alone. 2 at 960 px
    # and 4 at 1280 px found 6 more parts of 300 at 1% false alarms on the reported parcels
    # than 2 at both; with ``map_proposals`` it stays under the speed target
    # (benchmarks/notes/xray.md).
    map_views: tuple[int, ...] = (2, 4)
    # Sizes the map runs at, as multiples of its own input size (``ThreatMap.predict``):
    # each cell keeps its hottest logit of any. The shipped 960-px maps at 960 and 1280 px
    # find more small parts at 1% false alarms on validation parcels and keep every whole
    # gun they found at 960 alone; at 1280 alone they miss some guns (benchmarks/notes/xray.md).
    map_zooms: tuple[float, ...] = (1.0, 4.0 / 3.0)
    # With a threat map, at most this many dense-material proposals (besides the map's own
    # hot areas; None = ``proposals.max_regions``). The map's logit carries a region's score
    # and its own boxes find the parts: 24 proposals found as many parts at 1% false alarms
    # on validation parcels as 48, for fewer crops to embed (benchmarks/notes/xray.md).
    map_proposals: int | None = 24

    def proposal_config(self, with_map: bool) -> ProposalConfig:
        """The dense-material proposals screened: ``proposals``, capped at ``map_proposals``
        when a threat map proposes its own hot areas too."""
        if not with_map or self.map_proposals is None:
            return self.proposals
        n = min(self.proposals.max_regions, self.map_proposals)
        return replace(self.proposals, max_regions=n)

    def with_proposals(self, n: int) -> ScreeningConfig:
        """These settings with exactly ``n`` dense-material proposals, threat map or not."""
        return replace(self, proposals=replace(self.proposals, max_regions=n), map_proposals=None)


@dataclass
class RegionResult:
    """One region of a scan: its box, matches, best threat match and decision."""

    box: tuple[int, int, int, int]
    matches: list[Match]
    threat_score: float | None
    threat_match: Match | None
    decision: str
    proposal_score: float = 0.0
    merged: int = 1
    # The threat map's probability of a part in the box (None without a threat map) and
    # its logit, the term the threat score adds.
    map_score: float | None = None
    map_logit: float | None = None
    # How well the box fits the map's hot area in it, 0..1 (None without a threat map).
    map_fit: float | None = None
    # Whether the box is one of the map's hot areas (not a dense-material proposal).
    from_map: bool = False

    def to_dict(self) -> dict:
        """JSON-ready dict: box is [x, y, w, h] in pixels of the scan."""
        return {
            "box": [int(v) for v in self.box],
            "matches": [m.to_dict() for m in self.matches],
            "decision": self.decision,
            "threat_score": None if self.threat_score is None else round(self.threat_score, 4),
            "threat_match": self.threat_match.to_dict() if self.threat_match else None,
            "proposal_score": round(float(self.proposal_score), 4),
            "merged": self.merged,
            "map_score": None if self.map_score is None else round(self.map_score, 4),
            "map_logit": None if self.map_logit is None else round(self.map_logit, 4),
            "map_fit": None if self.map_fit is None else round(self.map_fit, 4),
            "from_map": self.from_map,
        }


@dataclass
class ScreeningResult:
    """Regions of one scan, worst first, and the scan's overall decision."""

    regions: list[RegionResult]
    decision: str
    score: float | None
    width: int
    height: int
    proposals: int
    model_id: str
    elapsed_ms: float = 0.0
    timings_ms: dict[str, float] = field(default_factory=dict)
    # Best score per gallery item over all regions (the whole scan is one), top k: the
    # region-aware answer in the same shape as a whole-image search's matches.
    matches: list[Match] = field(default_factory=list)
    # Every proposal screened, [x, y, w, h] (for evaluation; not part of the JSON output).
    proposal_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)), repr=False)

    def to_dict(self) -> dict:
        """JSON-ready dict (the CLI's and the API's ``regions`` output)."""
        return {
            "matches": [m.to_dict() for m in self.matches],
            "regions": [r.to_dict() for r in self.regions],
            "decision": self.decision,
            "score": None if self.score is None else round(self.score, 4),
            "width": self.width,
            "height": self.height,
            "proposals": self.proposals,
            "model_id": self.model_id,
            "elapsed_ms": round(self.elapsed_ms, 2),
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }


# -- pure pieces ----------------------------------------------------------------------------


def crop_boxes(boxes: np.ndarray, width: int, height: int, pad: float, min_side: int) -> np.ndarray:
    """Square, padded crop windows around proposal boxes (may extend past the scan)."""
    sq = square_boxes(pad_boxes(boxes, pad), min_side=float(min_side))
    return sq.round()


def flatten_background(crop: np.ndarray, radius: int) -> np.ndarray:
    """Divide out the smooth local floor of a transmission crop (clothes, packaging).

    Transmissions multiply, so dividing by the floor's transmission leaves objects as if
    they lay on an empty belt; an isolated reference passes through unchanged.
    """
    att = -np.log(np.clip(crop, 1e-4, 1.0))
    return np.exp(-local_contrast(att, radius)).astype(np.float32)


def crop_transmission(
    t: np.ndarray, box: np.ndarray, size: int, flatten_radius: int = 0
) -> np.ndarray:
    """A size x size crop of a transmission image; outside the scan is empty belt (1.0)."""
    x, y, w, h = (int(round(v)) for v in box)
    side = max(w, h, 1)
    canvas = np.ones((side, side), dtype=np.float32)
    H, W = t.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x1 > x0 and y1 > y0:
        canvas[y0 - y : y1 - y, x0 - x : x1 - x] = t[y0:y1, x0:x1]
    if side != size:
        img = Image.fromarray(canvas, "F").resize((size, size), Image.BILINEAR, reducing_gap=2.0)
        canvas = np.asarray(img, np.float32)
    return flatten_background(canvas, flatten_radius) if flatten_radius > 0 else canvas


def crops_to_batch(
    t: np.ndarray, crops: np.ndarray, size: int, cfg: PreprocessConfig, flatten_radius: int = 0
) -> torch.Tensor:
    """Crop windows of a transmission image -> normalised (n, 3, size, size) tensor."""
    if len(crops) == 0:
        return torch.zeros((0, 3, size, size))
    return torch.stack(
        [grey_to_tensor(crop_transmission(t, c, size, flatten_radius), cfg) for c in crops]
    )


def load_transmission(source: ImageSource, max_pixels: int, white_percentile: float) -> np.ndarray:
    """Decode any X-ray export (8/16-bit grey, pseudo-colour) into float transmission."""
    return xray_to_transmission(load_image(source, max_pixels), white_percentile)


@dataclass(frozen=True)
class MapTerms:
    """What the threat map says of each screened box: its logit (the hottest cell inside),
    its fit to the hot area it holds, and whether it is one of the map's own boxes."""

    logit: np.ndarray
    fit: np.ndarray
    own: np.ndarray

    def score(self, cfg: ScreeningConfig) -> np.ndarray:
        """The map's part of each box's threat score."""
        return (
            cfg.map_weight * self.logit
            + cfg.map_fit_weight * self.fit
            + cfg.map_box_weight * self.own
        )

    def region_fields(self, i: int) -> dict:
        """Box ``i``'s ``RegionResult`` fields (the probability shown is the logit's)."""
        return {
            "map_score": float(1.0 / (1.0 + np.exp(-self.logit[i]))),
            "map_logit": float(self.logit[i]),
            "map_fit": float(self.fit[i]),
            "from_map": bool(self.own[i]),
        }


# -- the service ----------------------------------------------------------------------------


def top_mean(matches: list[Match], k: int) -> float:
    """Mean score of the best ``k`` matches (fewer if there are fewer; -inf if none)."""
    return float(np.mean([m.score for m in matches[:k]])) if matches else -np.inf


def _benign_scores(
    engine: ScanEngine, vecs: np.ndarray, filters: Filters | None, k: int = 1
) -> np.ndarray:
    """Mean of each vector's ``k`` best similarities to non-threat references (0 if none)."""
    f = replace(filters or Filters(), threat=False)
    if not len(vecs) or (filters is not None and filters.threat):
        return np.zeros(len(vecs))
    return np.array([top_mean(m, k) if m else 0.0 for m in engine.gallery.search(vecs, k, f)])


def _threat_filters(filters: Filters | None) -> Filters:
    f = filters or Filters()
    return replace(f, threat=True) if f.threat is None else f


def crop_side(engine: ScanEngine, cfg: ScreeningConfig) -> int:
    """The side of the crops fed to the model: ``cfg.crop_size``, or the model's input size
    capped at ``cfg.max_crop_size``."""
    return cfg.crop_size or min(engine.embedder.preprocess_config.input_size, cfg.max_crop_size)


def screen_transmission(
    engine: ScanEngine,
    t: np.ndarray,
    k: int,
    filters: Filters | None,
    decide: DecisionFn,
    config: ScreeningConfig | None = None,
) -> ScreeningResult:
    """Screen an already-decoded transmission image (float, 1.0 = empty belt).

    ``decide`` turns a region's threat score into its verdict; the scan's verdict is that of
    its best region (``gunmatch.decision.screening_decision_fn`` decides as searches do).
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    cfg = config or ScreeningConfig()
    if cfg.score_k < 1:
        raise ValueError("score_k must be at least 1")
    pre = engine.embedder.preprocess_config
    size = crop_side(engine, cfg)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    height, width = t.shape
    tmap = engine.threatmap if cfg.use_map else None
    boxes, pscores = propose_regions(t, cfg.proposal_config(tmap is not None))
    timings["propose_ms"] = (time.perf_counter() - clock) * 1000.0
    terms = None
    if tmap is not None:
        clock = time.perf_counter()
        hot = tmap.predict(t, views=cfg.map_views, zooms=cfg.map_zooms)
        mboxes, _ = map_regions(hot.logits, hot.cell, cfg.map_threshold, cfg.map_regions)
        boxes = np.concatenate([clip_boxes(mboxes, width, height), boxes])
        pscores = np.concatenate([np.zeros(len(mboxes)), pscores])
        # Clipped so that an empty map (a scan smaller than one cell: -inf) still scores.
        terms = MapTerms(
            logit=np.clip(box_scores(hot, boxes), -30.0, 30.0),
            fit=box_fit(hot, boxes, cfg.map_threshold),
            own=np.arange(len(boxes)) < len(mboxes),
        )
        timings["map_ms"] = (time.perf_counter() - clock) * 1000.0
    crops = crop_boxes(boxes, width, height, cfg.crop_pad, cfg.min_crop_side)

    clock = time.perf_counter()
    radius = int(round(cfg.flatten_frac * size))
    vecs = engine.embedder.embed_tensors(crops_to_batch(t, crops, size, pre, radius))
    timings["embed_ms"] = (time.perf_counter() - clock) * 1000.0

    clock = time.perf_counter()
    shown = engine.gallery.search(vecs, k, filters) if len(vecs) else []
    threat_filters = _threat_filters(filters)
    threats = (
        engine.gallery.search(vecs, cfg.score_k, threat_filters)
        if len(vecs) and threat_filters.threat
        else [[] for _ in range(len(vecs))]
    )
    benign = (
        _benign_scores(engine, vecs, filters, cfg.score_k) if cfg.score_mode == "margin" else None
    )
    regions = _merge(boxes, pscores, shown, threats, cfg, decide, benign, terms)
    timings["search_ms"] = (time.perf_counter() - clock) * 1000.0
    scores = [r.threat_score for r in regions if r.threat_score is not None]
    best = max(scores) if scores else None
    return ScreeningResult(
        regions=regions[: cfg.max_regions],
        decision=decide(best),  # the worst region's verdict: ``decide`` is monotone
        score=best,
        width=width,
        height=height,
        proposals=len(boxes),
        model_id=engine.embedder.model_id,
        elapsed_ms=sum(timings.values()),
        timings_ms=timings,
        matches=best_per_item((m for ms in shown for m in ms), k),
        proposal_boxes=boxes,
    )


def _merge(
    boxes: np.ndarray,
    pscores: np.ndarray,
    shown: list[list[Match]],
    threats: list[list[Match]],
    cfg: ScreeningConfig,
    decide: DecisionFn,
    benign: np.ndarray | None = None,
    terms: MapTerms | None = None,
) -> list[RegionResult]:
    """Merge overlapping regions that agree on their best threat label; best score first."""
    if len(boxes) == 0:
        return []
    tscore = np.array([top_mean(m, cfg.score_k) for m in threats], dtype=np.float64)
    if benign is not None:
        tscore = tscore - benign
    if terms is not None:
        tscore = tscore + terms.score(cfg)
    keys = [
        m[0].item.label if m else (s[0].item.label if s else "")
        for m, s in zip(threats, shown, strict=True)
    ]
    groups = merge_groups(boxes, tscore, cfg.merge_iou, keys)
    out = []
    for g in groups:
        i = int(g[0])
        score = float(tscore[i]) if np.isfinite(tscore[i]) else None
        out.append(
            RegionResult(
                box=tuple(int(round(v)) for v in boxes[i]),  # type: ignore[arg-type]
                matches=shown[i],
                threat_score=score,
                threat_match=threats[i][0] if threats[i] else None,
                decision=decide(score),
                proposal_score=float(pscores[i]),
                merged=len(g),
                **({} if terms is None else terms.region_fields(i)),
            )
        )
    return out


def screen_image(
    engine: ScanEngine,
    source: ImageSource,
    k: int,
    filters: Filters | None,
    decide: DecisionFn,
    config: ScreeningConfig | None = None,
) -> ScreeningResult:
    """Decode a scan (any X-ray export) and screen it region by region."""
    clock = time.perf_counter()
    pre = engine.embedder.preprocess_config
    t = load_transmission(source, engine.embedder.max_pixels, pre.xray_white_percentile)
    decode_ms = (time.perf_counter() - clock) * 1000.0
    result = screen_transmission(engine, t, k, filters, decide, config)
    result.timings_ms = {"decode_ms": decode_ms, **result.timings_ms}
    result.elapsed_ms += decode_ms
    return result


__all__ = [
    "DecisionFn",
    "MapTerms",
    "RegionResult",
    "ScanEngine",
    "ScreeningConfig",
    "ScreeningResult",
    "crop_boxes",
    "crop_side",
    "crop_transmission",
    "crops_to_batch",
    "load_transmission",
    "screen_image",
    "screen_transmission",
]
