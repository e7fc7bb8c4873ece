"""Embedder: decoded or raw images in, float32 unit vectors out, batched on the CPU."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

from matcher.fast import RuntimeOptions, create_runner
from matcher.images import DEFAULT_MAX_PIXELS, ImageSource, load_image
from matcher.model import EmbeddingModel, load_model
from matcher.preprocess import Modality, check_modality, preprocess


class Embedder:
    """Wraps an EmbeddingModel with its preprocessing, batching and thread settings."""

    def __init__(
        self,
        model: EmbeddingModel,
        batch_size: int = 32,
        threads: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        runtime: str = "torch",
        runtime_options: RuntimeOptions | None = None,
    ) -> None:
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        # Inference path (matcher.fast): "torch" float32 reference, or a faster checked one.
        # Eager torch reads self.model at call time (callers may swap or train it in place).
        self.runtime = runtime
        self._run = (
            None
            if runtime == "torch"
            else create_runner(self.model, runtime, threads, runtime_options)
        )

    @property
    def model_id(self) -> str:
        """Identifier of the weights + preprocessing in use."""
        return self.model.model_id

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self.model.dim

    @property
    def preprocess_config(self):
        """The preprocessing that travels with the model."""
        return self.model.config.preprocess

    def prepare(self, source: ImageSource, modality: Modality) -> torch.Tensor:
        """Decode and preprocess one image into a (3, s, s) tensor."""
        img = load_image(source, self.max_pixels)
        return preprocess(img, modality, self.preprocess_config)

    def embed_tensors(self, batch: torch.Tensor) -> np.ndarray:
        """Already-preprocessed (n, 3, s, s) tensors -> (n, d) float32 vectors."""
        run = self._run or self._torch_forward
        out = [run(batch[i : i + self.batch_size]) for i in range(0, len(batch), self.batch_size)]
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)

    def _torch_forward(self, chunk: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return self.model(chunk.contiguous(memory_format=torch.channels_last)).float().numpy()

    def embed(self, images: Sequence[ImageSource], modality: str = "photo") -> np.ndarray:
        """Images (paths, bytes, PIL images) -> (n, d) float32 unit vectors."""
        modality = check_modality(modality)
        vectors = [
            self.embed_tensors(torch.stack([self.prepare(s, modality) for s in chunk]))
            for chunk in _chunks(images, self.batch_size)
        ]
        if not vectors:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(vectors)

    def embed_iter(
        self,
        tensors: Iterable[torch.Tensor],
        on_batch: Callable[[int], None] | None = None,
    ) -> Iterable[np.ndarray]:
        """Embed a stream of preprocessed tensors batch by batch (for gallery builds)."""
        buf: list[torch.Tensor] = []
        for t in tensors:
            buf.append(t)
            if len(buf) == self.batch_size:
                yield self.embed_tensors(torch.stack(buf))
                if on_batch:
                    on_batch(len(buf))
                buf = []
        if buf:
            yield self.embed_tensors(torch.stack(buf))
            if on_batch:
                on_batch(len(buf))


def _chunks(items: Sequence, n: int) -> Iterable[Sequence]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def create_embedder(model: str | None = None, **kwargs) -> Embedder:
    """Embedder for a bundled backbone name or a checkpoint directory."""
    return Embedder(load_model(model), **kwargs)
