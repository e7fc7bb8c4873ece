"""Inference paths: the same EmbeddingModel run by eager torch, bf16 autocast or ONNX Runtime.

A path is a registered factory ``(model, threads, options) -> Runner``; a runner maps an
already-preprocessed (n, 3, s, s) float tensor to (n, d) float32 unit vectors. ``torch`` is the
float32 reference. A path is only worth using if ``top1_agreement`` with the reference stays
at or above ``MIN_AGREEMENT`` on real images (see ``benchmarks/embedding.py``).

ONNX graphs are exported once per weights (keyed by a hash of the state dict, not the
model_id, so a model being fine-tuned never reuses a stale graph) into a cache directory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from matcher.model import EmbeddingModel

log = logging.getLogger(__name__)

Runner = Callable[[torch.Tensor], np.ndarray]
MIN_AGREEMENT = 0.99
ONNX_OPSET = 17


@dataclass
class RuntimeOptions:
    """Knobs shared by the paths (cache location, calibration images for int8)."""

    cache_dir: Path | None = None
    calibration: torch.Tensor | None = None  # (n, 3, s, s) preprocessed images, int8 only
    extra: dict = field(default_factory=dict)

    def cache(self) -> Path:
        """The export cache directory (created)."""
        d = self.cache_dir or Path(tempfile.gettempdir()) / "gunmatch-runtime"
        d.mkdir(parents=True, exist_ok=True)
        return d


PathFactory = Callable[[EmbeddingModel, int | None, RuntimeOptions], Runner]
_PATHS: dict[str, PathFactory] = {}


def register_path(name: str) -> Callable[[PathFactory], PathFactory]:
    """Register an inference path factory under ``name``."""

    def deco(fn: PathFactory) -> PathFactory:
        if name in _PATHS:
            raise ValueError(f"inference path {name!r} is already registered")
        _PATHS[name] = fn
        return fn

    return deco


def list_paths() -> list[str]:
    """Names of the registered inference paths."""
    return sorted(_PATHS)


def create_runner(
    model: EmbeddingModel,
    path: str = "torch",
    threads: int | None = None,
    options: RuntimeOptions | None = None,
) -> Runner:
    """A runner for ``model`` on inference path ``path``."""
    try:
        factory = _PATHS[path]
    except KeyError:
        raise ValueError(
            f"unknown inference path {path!r}; known: {', '.join(list_paths())}"
        ) from None
    return factory(model.eval(), threads, options or RuntimeOptions())


@register_path("torch")
def _torch(model: EmbeddingModel, threads: int | None, opts: RuntimeOptions) -> Runner:
    model = model.to(memory_format=torch.channels_last)

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return model(x.contiguous(memory_format=torch.channels_last)).float().numpy()

    return run


@register_path("torch_bf16")
def _torch_bf16(model: EmbeddingModel, threads: int | None, opts: RuntimeOptions) -> Runner:
    model = model.to(memory_format=torch.channels_last)

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x.contiguous(memory_format=torch.channels_last)).float()
        return torch.nn.functional.normalize(out, dim=1).numpy()

    return run


def state_digest(module: torch.nn.Module, tag: str) -> str:
    """Short hash of ``tag`` (the module's config) and its current parameter values."""
    h = hashlib.sha256(tag.encode())
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def weights_digest(model: EmbeddingModel) -> str:
    """Short hash of the config and the current parameter values (export cache key)."""
    return state_digest(model, repr(model.config.to_dict()))


def export_graph(
    module: torch.nn.Module,
    example: torch.Tensor,
    out: Path,
    names: tuple[str, str],
    dynamic_axes: dict[str, dict[int, str]],
) -> Path:
    """Export ``module`` (in eval mode) to ONNX at ``out``, atomically; ``names`` are the
    input's and the output's, ``dynamic_axes`` theirs by name."""
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    was_training = module.training
    module.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                example,
                str(tmp),
                input_names=[names[0]],
                output_names=[names[1]],
                dynamic_axes=dynamic_axes,
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
    finally:
        module.train(was_training)
    tmp.replace(out)
    return out


def export_onnx(model: EmbeddingModel, out: Path) -> Path:
    """Export the full model (backbone, GeM, head, L2); batch and image size are dynamic
    (region search embeds crops smaller than the model's native input)."""
    s = model.config.preprocess.input_size
    return export_graph(
        model,
        torch.rand(1, 3, s, s),
        out,
        ("images", "vectors"),
        {"images": {0: "n", 2: "h", 3: "w"}, "vectors": {0: "n"}},
    )


def quantize_int8(fp32: Path, out: Path, calibration: torch.Tensor) -> Path:
    """Static int8 (QDQ, per-channel weights, VNNI kernels) calibrated on real images."""
    # ONNX Runtime loads here, not at import: the default torch path never pays for it.
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(
                [calibration[i : i + 8].numpy() for i in range(0, len(calibration), 8)]
            )

        def get_next(self) -> dict | None:
            batch = next(self.batches, None)
            return None if batch is None else {"images": batch}

    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    quantize_static(
        str(fp32),
        str(tmp),
        _Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    tmp.replace(out)
    return out


def ort_session(path: Path, threads: int | None):
    """An ONNX Runtime CPU session on ``threads`` intra-op threads (0/None: all cores)."""
    import onnxruntime as ort  # loaded on first use: the torch path never pays for it

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or 0
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # errors only: the exporter leaves harmless unused constants
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _onnx_file(model: EmbeddingModel, opts: RuntimeOptions) -> Path:
    out = opts.cache() / f"{model.config.backbone}-{weights_digest(model)}-op{ONNX_OPSET}-dyn.onnx"
    if not out.is_file():
        log.info("exporting %s to %s", model.model_id, out)
        export_onnx(model, out)
    return out


def _ort_runner(session) -> Runner:
    def run(x: torch.Tensor) -> np.ndarray:
        out = session.run(None, {"images": np.ascontiguousarray(x.numpy(), np.float32)})[0]
        return np.ascontiguousarray(out, dtype=np.float32)

    return run


@register_path("onnx")
def _onnx(model: EmbeddingModel, threads: int | None, opts: RuntimeOptions) -> Runner:
    return _ort_runner(ort_session(_onnx_file(model, opts), threads))


@register_path("onnx_int8")
def _onnx_int8(model: EmbeddingModel, threads: int | None, opts: RuntimeOptions) -> Runner:
    fp32 = _onnx_file(model, opts)
    out = fp32.with_name(fp32.stem + "-int8.onnx")
    if not out.is_file():
        if opts.calibration is None or len(opts.calibration) == 0:
            raise ValueError("the onnx_int8 path needs calibration images (RuntimeOptions)")
        quantize_int8(fp32, out, opts.calibration)
    return _ort_runner(ort_session(out, threads))


def top1(gallery: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index of each query's nearest gallery vector by inner product."""
    return np.argmax(queries @ gallery.T, axis=1)


def top1_agreement(
    ref_gallery: np.ndarray, ref_queries: np.ndarray, gallery: np.ndarray, queries: np.ndarray
) -> float:
    """Share of queries whose top-1 gallery match is the same as under the reference."""
    if len(ref_queries) == 0:
        raise ValueError("no queries to compare")
    return float(np.mean(top1(ref_gallery, ref_queries) == top1(gallery, queries)))
