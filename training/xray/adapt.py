"""Adapt the threat map to one station's scanner, from scans the station already cleared.

A station owns thousands of cleared scans from its own scanner and a gallery of isolated
threat references. The cleared scans are real negatives; projecting the gallery's own threat
references into them (threat image projection, multiplicative like X-rays) gives positives on
real backgrounds with known masks, from a firing pin to a whole gun. The map's head is
fine-tuned on both (the trunk stays frozen), with generated training parcels mixed into its
batches (rehearsal: without them the head forgets the generator while it learns the station).

Held-out cleared scans with their own projections measure it, small parts and large objects
apart (``AdaptConfig.small_part``): an adaptation that learns whole guns can unlearn small
parts, and one AUC over both hides it. The epoch kept is the best on the worse of the two, and
the result is refused when either falls, or when it forgets the generated parcels all the same
(``gate_margin`` on the AUC of held-out generated parcels, a seed range rehearsal never draws
from).

The map kept is not the fine-tuned head itself but a weighted mean of its weights and the
base map's (``AdaptConfig.base_share``; weight-space ensembling, as WiSE-FT does for
fine-tuned image models): the station's projections are not the parts its bags will hold,
and a head fine-tuned on them alone lost single parts drawn in the station's look while its
own held-out measure rose (docs/benchmarks.md, sections "adapt-noisy-lowres-parts" and
"adapt-dual-energy-vivid-parts").
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from matcher.threatmap import ThreatMap
from screening.augment import object_patch
from synth.detector import gaussian_blur, noise_sigma
from synth.projection import tight_box, transform_object
from training.xray.threatmap import (
    TRAIN_SEED,
    VAL_SEED,
    Cache,
    ThreatMapTrainConfig,
    build_cache,
    cache_samples,
    fit_head,
    head_optimizer,
    head_state,
    parcel_plan,
    parcel_samples,
    ranking,
    scan_scores,
    train_step,
)

log = logging.getLogger(__name__)

OBJECT_THRESHOLD = 0.98  # transmission below this is part of an isolated reference's object
# A projected object's point spread, in scan pixels (the looks' detector blur spans 0.3-1.4).
PROJECTION_BLUR = (0.4, 1.4)
# The standard deviation of white noise left after subtracting its own Gaussian blur of
# sigma 1 px: sqrt(1 - 2 g(0) + sum g^2) for the 2-D kernel g.
RESIDUAL_SHARE = float(np.sqrt(1.0 - 2.0 / (2.0 * np.pi) + 1.0 / (4.0 * np.pi)))
SIZES = ("small", "large")  # projected objects below and above ``AdaptConfig.small_part``
# Share of the time left that the plan fills, and by which the last epoch, with what the plan
# puts after it, must end: each cost is the fastest of a few timings, caching ran 8-10% and
# an epoch 2-10% longer than planned (an AMD EPYC, docs/benchmarks.md, section
# "adapt-budget-dual-energy-vivid"; 20-64% and 9-31% before gunmatch.allocator kept freed
# memory for the next pass), and installing the map is not planned at all. With the whole
# budget as the epochs' deadline, a run offered 1000 scans on an AMD EPYC took 901 s of 900
# (benchmarks/notes/xray.md, thirty-fourth session).
PLAN_SHARE = 0.9
# Each cost is the fastest of this many timings: a single cold timing, taken right after the
# gallery's ONNX Runtime sessions had run, read a trunk pass at 1.1 s instead of 0.2 s and let
# the same command train on 41 to 99 of 120 scans (docs/benchmarks.md, section
# "adapt-dual-energy-vivid-parts").
TIMING_REPEAT = 3


@dataclass(frozen=True)
class AdaptConfig:
    """How a station's cleared scans adapt the threat map."""

    # Share of the cleared scans kept out of training: epoch choice, the report, and the
    # screening thresholds are measured on them.
    holdout: float = 0.4
    min_holdout: int = 2
    # Projected references per cleared scan (each scan is also a negative once): at least
    # ``projections``, and where every scan fits the time budget with time to spare, as many
    # more as the plan holds, up to ``max_projections`` (``Costs.projections_that_fit``): a
    # station with few scans gets more real-background positives instead of an idle budget.
    # Two, not one, even where fewer scans then fit: whole handguns in dense bags read 0.860 at
    # 1% false alarms with two on 166 of 200 scans against 0.780 twice with one on all 200;
    # two or three read better than one in every station tried (+0.017 to +0.150), at the
    # price of fewer held-out scans for the thresholds (benchmarks/notes/xray.md, "at least
    # two projections" and "more projections on fewer scans").
    projections: int = 2
    max_projections: int = 3
    # A projected object's longer side, as a fraction of the scan's longer side, drawn
    # log-uniformly: small parts (a firing pin) as often as whole handguns. Parts in the
    # generated bags of the trained looks measure 0.04-0.59 of the side (median 0.14; 0.11 on
    # the default generator); a uniform draw over (0.08, 0.45) projected mostly objects
    # larger than that, and the adapted map lost parts (docs/benchmarks.md, section
    # "adapt-noisy-lowres-parts").
    scale_range: tuple[float, float] = (0.04, 0.45)
    # A projection whose longer side is below this share of the scan's is a small part; the
    # held-out measure, the epoch choice and the gate take small parts and larger objects
    # apart.
    small_part: float = 0.15
    epochs: int = 8
    lr: float = 1e-3
    batch_size: int = 8
    pos_weight: float = 5.0
    target_gain: float = 3.0
    # Rehearsal: generated training parcels (seeds from TRAIN_SEED, every third one clean,
    # the default generator the gate measures) per station training sample, mixed into the
    # training batches. On a held-out look, 0.5 still forgot too much for the gate (docs/
    # benchmarks.md, section "adapt"); 1.0 did not.
    rehearsal: float = 1.0
    # The gate: generated validation parcels (every third one clean) whose AUC may fall by at
    # most ``gate_margin``; with ``require_gain`` the held-out station scans' AUC must not
    # fall either, for small parts and for larger objects alike.
    gate_parcels: int = 60
    gate_margin: float = 0.02
    require_gain: bool = True
    # The base map's share in the adapted head's weights (``mix_heads``): 0 keeps the
    # fine-tuned head as trained, 1 the base map unchanged. One share for every station,
    # not the better of the two on the held-out scans: that measure ranked the fine-tuned
    # head alone above the mix in 13 of 14 adapt sections, the generated bags the mix above
    # it in 10 of those 13 (benchmarks/notes/xray.md, "the fine-tuned head alone or the mix").
    base_share: float = 0.5
    # Time budget; training scans are subsampled when caching and training on them all would
    # not fit (``Costs.scans_that_fit``).
    minutes: float = 15.0
    seed: int = 0

    @property
    def samples_per_scan(self) -> int:
        """A cleared scan's samples: itself as a negative, then its projections."""
        return 1 + self.projections


@dataclass
class AdaptResult:
    """The adapted map, whether it passed the gate, what was measured, the held-out scans and
    those the time budget left out of training and holdout alike (``unused``)."""

    model: ThreatMap
    accepted: bool
    report: dict
    holdout: list[int]
    unused: list[int] = field(default_factory=list)


def reference_patches(references: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each isolated reference cropped to its object; one with no object is an error (its
    projections would be positives with empty boxes), and so is having none."""
    if not references:
        raise ValueError("the gallery has no X-ray threat references to project")
    patches = [object_patch(np.asarray(r, dtype=np.float32), OBJECT_THRESHOLD) for r in references]
    for i, patch in enumerate(patches):
        if patch.min() >= OBJECT_THRESHOLD:
            raise ValueError(f"reference {i} holds no object darker than the belt")
    return patches


def scan_noise(scan: np.ndarray) -> float:
    """The scanner's noise level in ``scan``, as ``synth.detector.noise_sigma`` models it:
    the robust spread of the scan's high-pass residual over its brightest fifth (chosen on
    the scan smoothed, so that the choice does not pick the noise), where little but noise
    varies."""
    scan = np.asarray(scan, dtype=np.float32)
    residual = scan - gaussian_blur(scan, 1.0)
    smooth = gaussian_blur(scan, 2.0)
    bright = smooth >= np.quantile(smooth, 0.8)
    spread = 1.4826 * float(np.median(np.abs(residual[bright]))) / RESIDUAL_SHARE
    return spread / float(noise_sigma(smooth[bright], 1.0).mean())


def project_reference(
    scan: np.ndarray,
    patch: np.ndarray,
    rng: np.random.Generator,
    scale_range: tuple[float, float],
    noise: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``patch`` at a random size (log-uniform in ``scale_range``), angle and place inside
    ``scan``: (image, object mask).

    The object is seen through the scanner as the scan was: blurred by a point spread of
    ``PROJECTION_BLUR`` pixels, and with the noise its darkness brings (``noise``, the
    scan's ``scan_noise`` unless given). Multiplying alone would scale the scan's noise
    down with the object's transmission, leaving a projected object smoother and sharper
    than anything the scanner itself shows: a cue a map learns instead of shapes.
    """
    height, width = scan.shape
    low, high = np.log(scale_range[0]), np.log(scale_range[1])
    side = float(np.exp(rng.uniform(low, high))) * max(height, width)
    angle = float(rng.uniform(0.0, 360.0))
    obj = transform_object(patch, scale=side / max(patch.shape), angle_deg=angle)
    fit = min(1.0, 0.95 * height / obj.shape[0], 0.95 * width / obj.shape[1])
    if fit < 1.0:  # a long gun turned across a short scan: shrink it to fit
        obj = transform_object(patch, scale=fit * side / max(patch.shape), angle_deg=angle)
    obj = np.minimum(gaussian_blur(obj, float(rng.uniform(*PROJECTION_BLUR))), 1.0)
    ph, pw = obj.shape
    x = int(rng.integers(0, width - pw + 1))
    y = int(rng.integers(0, height - ph + 1))
    out = np.array(scan, dtype=np.float32, copy=True)
    under = out[y : y + ph, x : x + pw]
    noise = scan_noise(scan) if noise is None else noise
    # Detector noise at the new transmission, less what the scan's own noise still brings
    # through the object (scaled by it): what is missing is added.
    wanted = noise_sigma(under * obj, noise)
    kept = obj * noise_sigma(under, noise)
    missing = np.sqrt(np.maximum(wanted**2 - kept**2, 0.0))
    under *= obj
    under += missing * rng.standard_normal(obj.shape, dtype=np.float32)
    np.clip(under, 0.0, 1.0, out=under)
    mask = np.zeros(scan.shape, dtype=bool)
    mask[y : y + ph, x : x + pw] = obj < OBJECT_THRESHOLD
    return out, mask


def size_kind(mask: np.ndarray, small_part: float) -> str:
    """ "projected small" or "projected large": the object's longer side against
    ``small_part`` times the scan's."""
    box = tight_box(mask)
    side = max(box.w, box.h) if box is not None else 0
    return f"projected {SIZES[0] if side < small_part * max(mask.shape) else SIZES[1]}"


def station_samples(
    scans: Sequence[np.ndarray],
    patches: Sequence[np.ndarray],
    projections: int,
    scale_range: tuple[float, float],
    seed: int,
    small_part: float = AdaptConfig.small_part,
) -> Iterator[tuple[np.ndarray, np.ndarray | None, str]]:
    """Each scan as a negative, then ``projections`` positives drawn on it, each of kind
    ``size_kind``."""
    rng = np.random.default_rng(seed)
    for scan in scans:
        yield scan, None, ""
        noise = scan_noise(scan)
        for _ in range(projections):
            patch = patches[int(rng.integers(len(patches)))]
            image, mask = project_reference(scan, patch, rng, scale_range, noise)
            yield image, mask, size_kind(mask, small_part)


def _measure(model: ThreatMap, cache: Cache) -> dict[str, float]:
    positive = np.array([k != "" for k in cache.kinds])
    return ranking(scan_scores(model, cache), positive)


def station_measure(model: ThreatMap, cache: Cache) -> dict[str, float]:
    """``ranking`` of every projection against the clean scans, then of each size apart
    (``auc_small``, ``auc_large``: None where none was drawn, so the report stays JSON) and
    the worse of them (``auc_worst``: the overall AUC where neither size has positives)."""
    scores = scan_scores(model, cache)
    kinds = np.array(cache.kinds)
    clean = kinds == ""
    out: dict[str, float | None] = dict(ranking(scores, ~clean))
    for size in SIZES:
        keep = clean | (kinds == f"projected {size}")
        auc = ranking(scores[keep], ~clean[keep])["auc"]
        out[f"auc_{size}"] = auc if np.isfinite(auc) else None
    sized = [out[f"auc_{size}"] for size in SIZES if out[f"auc_{size}"] is not None]
    out["auc_worst"] = min(sized) if sized else out["auc"]
    return out


def station_gain(before: dict, after: dict) -> float:
    """The smallest change in held-out AUC over the sizes measured both times (the overall
    AUC where no size was)."""
    keys = [f"auc_{s}" for s in SIZES if None not in (before[f"auc_{s}"], after[f"auc_{s}"])]
    return min(after[k] - before[k] for k in keys or ["auc"])


@dataclass(frozen=True)
class Costs:
    """Seconds each piece of an adaptation takes on this machine, measured on one scan."""

    scan: float  # one trunk pass over a station sample
    parcel: float  # rendering a generated parcel and its trunk pass
    step: float  # training the head on one station sample (the loop's step, cache to update)
    parcel_step: float  # training the head on one generated parcel (its maps are smaller)
    score: float  # scoring one sample with the head
    projection: float  # projecting a reference into a scan (``project_reference``)
    # The caller's costs, around the adaptation: decoding a cleared scan before it, and
    # screening a held-out scan after it (``gunmatch.adapt`` measures the thresholds on them).
    read: float = 0.0
    calibrate: float = 0.0

    def caching(self, cfg: AdaptConfig, training: int, held: int) -> float:
        """The trunk over the samples of ``training`` and ``held`` scans (each projection
        drawn first), over the training scans' share of rehearsal parcels and over the gate
        parcels (each rendered first)."""
        per_scan = cfg.samples_per_scan
        return (training + held) * (per_scan * self.scan + cfg.projections * self.projection) + (
            training * per_scan * cfg.rehearsal + cfg.gate_parcels
        ) * self.parcel

    def epoch(self, cfg: AdaptConfig, training: int, held: int) -> float:
        """One epoch: training on ``training`` scans' samples and their share of rehearsal
        parcels, then scoring ``held`` held-out scans' samples."""
        per_scan = cfg.samples_per_scan
        return per_scan * (
            training * (self.step + cfg.rehearsal * self.parcel_step) + held * self.score
        )

    def after_training(self, cfg: AdaptConfig, held: int) -> float:
        """What follows the epochs: the fine-tuned and the mixed head scored on the ``held``
        held-out scans' samples and the gate parcels, then the held-out scans screened for
        the thresholds."""
        per_scan = cfg.samples_per_scan
        return held * (2 * per_scan * self.score + self.calibrate) + (
            2 * cfg.gate_parcels * self.score
        )

    def seconds(self, cfg: AdaptConfig, scans: int) -> float:
        """An adaptation on ``scans`` cleared scans: reading them, caching, the held-out
        samples and gate parcels scored before training, the epochs and what follows them."""
        held = holdout_count(scans, cfg)
        training = scans - held
        before = (held * cfg.samples_per_scan + cfg.gate_parcels) * self.score
        return (
            scans * self.read
            + self.caching(cfg, training, held)
            + before
            + cfg.epochs * self.epoch(cfg, training, held)
            + self.after_training(cfg, held)
        )

    def scans_that_fit(self, cfg: AdaptConfig, available: int, seconds: float) -> int:
        """The most of ``available`` cleared scans an adaptation can use in ``seconds``; never
        fewer than one training scan and its held-out ones need (or ``available``)."""
        least = min(available, cfg.min_holdout + 1)
        return most_that_fit(least, available, lambda n: self.seconds(cfg, n) <= seconds)

    def projections_that_fit(self, cfg: AdaptConfig, scans: int, seconds: float) -> int:
        """The most projections per scan, from ``cfg.projections`` up to
        ``cfg.max_projections``, with which ``scans`` cleared scans fit in ``seconds``
        (``cfg.projections`` if even that does not)."""
        return most_that_fit(
            cfg.projections,
            cfg.max_projections,
            lambda n: self.seconds(replace(cfg, projections=n), scans) <= seconds,
        )


def most_that_fit(least: int, most: int, fits: Callable[[int], bool]) -> int:
    """Counting up from ``least``, the last count up to ``most`` before ``fits`` first fails
    (``least`` when it fails at once): a plan's seconds grow with the count."""
    n = least
    while n < most and fits(n + 1):
        n += 1
    return n


def holdout_count(scans: int, cfg: AdaptConfig) -> int:
    """How many of ``scans`` cleared scans ``split_holdout`` keeps out of training."""
    return max(cfg.min_holdout, int(round(cfg.holdout * scans)))


def fastest(run: Callable[[], object], repeat: int = TIMING_REPEAT) -> tuple[object, float]:
    """``run``'s result and its fastest of ``repeat`` timings (the first call of a model pays
    one-time costs, and a thread pool still spinning from a run before slows it)."""
    best, result = math.inf, None
    for _ in range(repeat):
        clock = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - clock)
    return result, best


def measure_costs(
    model: ThreatMap,
    scan: np.ndarray,
    patch: np.ndarray,
    batch_size: int,
    scale_range: tuple[float, float] = AdaptConfig.scale_range,
) -> Costs:
    """``Costs`` of ``model`` on this machine, from ``scan``, a reference ``patch`` projected
    into it at the sizes of ``scale_range`` and one generated parcel; each the fastest of
    ``TIMING_REPEAT`` timings. Caching, a training step and scoring are timed through the
    code that runs them (a step from the float16 cache to the optimizer's update, the
    head's weights put back after), on a batch of each kind, since a station's scans need
    not be the size of the generated parcels."""
    rng = np.random.default_rng(0)
    _, projection_s = fastest(lambda: project_reference(scan, patch, rng, scale_range))

    def read(samples: Iterable[tuple[np.ndarray, np.ndarray | None, str]]) -> Cache:
        return cache_samples(model, samples, 1, progress=False)

    def batch(one: Cache) -> Cache:
        return Cache([level * batch_size for level in one.feats], one.targets * batch_size,
                     one.kinds * batch_size)  # fmt: skip

    train_cfg = ThreatMapTrainConfig()
    pos_weight = torch.tensor(train_cfg.pos_weight)

    def step(cache: Cache) -> float:
        saved = head_state(model)
        opt = head_optimizer(model, train_cfg)
        idx = np.arange(len(cache))
        model.train()
        _, seconds = fastest(lambda: train_step(model, opt, cache, idx, train_cfg, pos_weight))
        model.load_state_dict(saved, strict=False)
        model.zero_grad(set_to_none=True)
        model.eval()
        return seconds / len(cache)

    scan_cache, scan_s = fastest(lambda: read([(scan, None, "")]))
    parcel_cache, parcel_s = fastest(lambda: read(parcel_samples(parcel_plan(1, 3, TRAIN_SEED))))
    scans = batch(scan_cache)
    _, score_s = fastest(lambda: scan_scores(model, scans))
    return Costs(
        scan=scan_s,
        parcel=parcel_s,
        step=step(scans),
        parcel_step=step(batch(parcel_cache)),
        score=score_s / batch_size,
        projection=projection_s,
    )


def mix_heads(tuned: ThreatMap, base: ThreatMap, base_share: float) -> ThreatMap:
    """``tuned`` with each head weight replaced by ``base_share`` x the base map's plus the
    rest x its own (in place; the trunk, frozen while adapting, is the same in both). A share
    below 0 extrapolates: mixing a mix with ``-s / (1 - s)`` gives back the head it mixed
    with share ``s``."""
    if not math.isfinite(base_share) or base_share > 1.0:
        raise ValueError(f"base_share must be a finite number up to 1, not {base_share}")
    theirs = base.state_dict()
    mixed = {
        k: torch.lerp(v, theirs[k].to(v.dtype), base_share)
        for k, v in tuned.state_dict().items()
        if not k.startswith("trunk.") and v.is_floating_point()
    }
    tuned.load_state_dict(mixed, strict=False)
    return tuned


def split_holdout(n: int, cfg: AdaptConfig) -> tuple[list[int], list[int]]:
    """(training, held-out) scan indices, drawn with ``cfg.seed``."""
    held = holdout_count(n, cfg)
    if n - held < 1:
        raise ValueError(
            f"need more cleared scans: {n} leave none for training after holding out {held}"
        )
    order = np.random.default_rng(cfg.seed).permutation(n)
    return sorted(int(i) for i in order[held:]), sorted(int(i) for i in order[:held])


def trainable_copy(base: ThreatMap) -> ThreatMap:
    """A copy of ``base`` to fine-tune (and to time, as it will train)."""
    model = copy.deepcopy(base).to(memory_format=torch.channels_last)
    model._session = None  # the copy trains in torch; ONNX Runtime is for serving
    return model


def adapt_threatmap(
    base: ThreatMap,
    scans: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
    cfg: AdaptConfig | None = None,
    progress: bool = True,
    costs: Costs | None = None,
    seconds: float | None = None,
) -> AdaptResult:
    """Fine-tune a copy of ``base`` on a station's cleared scans and projected references.

    It plans to take ``seconds`` (by default all of ``cfg.minutes``), screening the held-out
    scans for the thresholds afterwards included where ``costs.calibrate`` says what that
    takes; ``costs`` are measured here unless given. Scans beyond what fits are left out at
    random; where all of them fit with time to spare, each gets more projections (up to
    ``cfg.max_projections``; the report's config gives the number used). An epoch is not
    begun where it would end too late for what follows it to end within ``PLAN_SHARE`` of the
    time.
    """
    cfg = cfg or AdaptConfig()
    if not 0.0 < cfg.holdout < 1.0 or cfg.projections < 1 or cfg.epochs < 1:
        raise ValueError("need 0 < holdout < 1, projections >= 1 and epochs >= 1")
    if cfg.max_projections < cfg.projections:
        raise ValueError("max_projections must be at least projections")
    if cfg.rehearsal < 0.0:
        raise ValueError("rehearsal is a share of the training samples: need >= 0")
    if not 0.0 <= cfg.base_share < 1.0:
        raise ValueError("base_share is the base map's share of the head: need 0 <= it < 1")
    started = time.perf_counter()
    budget = cfg.minutes * 60.0 if seconds is None else seconds
    torch.manual_seed(cfg.seed)
    patches = reference_patches(references)
    model = trainable_copy(base)
    if costs is None:
        patch = max(patches, key=np.size)
        costs = measure_costs(model, scans[0], patch, cfg.batch_size, cfg.scale_range)
    plan = replace(costs, read=0.0)  # the scans are read
    # The plan, and the epochs with what the plan puts after them, end by then.
    plan_end = started + PLAN_SHARE * budget
    left = plan_end - time.perf_counter()
    used = np.arange(len(scans))
    fits = plan.scans_that_fit(cfg, len(scans), left)
    if fits < len(scans):
        log.warning("time budget of %.0f s: using %d of %d cleared scans", budget, fits, len(scans))
        used = np.sort(np.random.default_rng(cfg.seed + 1).choice(len(scans), fits, False))
    else:  # time to spare: more projections on each scan
        cfg = replace(cfg, projections=plan.projections_that_fit(cfg, len(scans), left))
    train_idx, held_idx = ([int(used[i]) for i in part] for part in split_holdout(len(used), cfg))
    samples_per_scan = cfg.samples_per_scan
    deadline = plan_end - plan.after_training(cfg, len(held_idx))

    def cached(idx: list[int], seed: int, desc: str, rehearsal: int = 0) -> Cache:
        chosen = [scans[i] for i in idx]
        samples = itertools.chain(
            station_samples(
                chosen, patches, cfg.projections, cfg.scale_range, seed, cfg.small_part
            ),
            parcel_samples(parcel_plan(rehearsal, 3, TRAIN_SEED)),
        )
        total = len(idx) * samples_per_scan + rehearsal
        return cache_samples(model, samples, total, progress, desc)

    rehearsal = math.ceil(cfg.rehearsal * len(train_idx) * samples_per_scan)
    train = cached(train_idx, cfg.seed + 10, "station scans and generated parcels", rehearsal)
    held = cached(held_idx, cfg.seed + 20, "station scans (held out)")
    gate = build_cache(
        model, parcel_plan(cfg.gate_parcels, 3, VAL_SEED), progress=progress,
        desc="generated parcels (gate)",
    )  # fmt: skip
    cache_s = time.perf_counter() - started

    def measured() -> dict:
        return {"station": station_measure(model, held), "generated": _measure(model, gate)}

    before = measured()
    fit_cfg = replace(
        ThreatMapTrainConfig(),
        epochs=cfg.epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        pos_weight=cfg.pos_weight,
        target_gain=cfg.target_gain,
        seed=cfg.seed,
    )
    history = fit_head(
        model, train, held, fit_cfg, progress, measure=station_measure, select="auc_worst",
        deadline=deadline,
    )  # fmt: skip
    tuned = measured()
    mix_heads(model, base, cfg.base_share)
    after = measured()
    drop = before["generated"]["auc"] - after["generated"]["auc"]
    gained = station_gain(before["station"], after["station"])
    accepted = bool(
        np.isfinite(drop) and drop <= cfg.gate_margin and (gained >= 0.0 or not cfg.require_gain)
    )
    report = {
        "kind": "xray-threatmap-adapted",
        "trainer": "training.xray.adapt",
        "config": asdict(cfg),
        "base_map_id": base.map_id,
        "cleared_scans": len(scans),
        "training_scans": len(train_idx),
        "held_out_scans": len(held_idx),
        "rehearsal_parcels": rehearsal,
        "costs_s": {k: round(v, 4) for k, v in asdict(costs).items()},
        # what the plan expected (reading aside, screening for the thresholds in where the
        # caller gave its cost), and the epochs run
        "planned_s": round(plan.seconds(cfg, len(used)), 1),
        "planned_cache_s": round(plan.caching(cfg, len(train_idx), len(held_idx)), 1),
        "planned_epoch_s": round(plan.epoch(cfg, len(train_idx), len(held_idx)), 3),
        "epochs_trained": len(history),
        "references": len(patches),
        "before": before,
        # the fine-tuned head before ``mix_heads``; "after" is the map kept
        "tuned": tuned,
        "after": after,
        "gate": {
            "metric": "generated.auc",
            "drop": round(float(drop), 4),
            "margin": cfg.gate_margin,
            # the smaller of the held-out AUC changes on small parts and on larger objects
            "station_auc_gain": round(float(gained), 4),
            "accepted": accepted,
        },
        "best_epoch": max(history, key=lambda r: r["auc_worst"])["epoch"],
        "history": history,
        "cache_s": round(cache_s, 1),
        "total_s": round(time.perf_counter() - started, 1),
    }
    model.card = report
    model.eval()
    unused = sorted(set(range(len(scans))) - set(int(i) for i in used))
    return AdaptResult(model, accepted, report, held_idx, unused)


__all__ = [
    "AdaptConfig",
    "AdaptResult",
    "Costs",
    "PLAN_SHARE",
    "adapt_threatmap",
    "fastest",
    "holdout_count",
    "measure_costs",
    "mix_heads",
    "reference_patches",
    "project_reference",
    "scan_noise",
    "size_kind",
    "split_holdout",
    "station_gain",
    "station_measure",
    "station_samples",
    "trainable_copy",
]
