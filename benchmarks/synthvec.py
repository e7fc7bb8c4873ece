"""Synthetic embedding-like vectors: clustered, low intrinsic dimension, unit length.

Real CNN embeddings of a gallery are not isotropic Gaussian noise: many references of one
part or model sit in a tight cluster, and most of the variance lives in a few hundred
directions. ``clustered_unit_vectors`` draws cluster centres and members from an anisotropic
Gaussian in a ``latent`` space whose per-axis standard deviation decays as i**-decay,
embeds it in ``dim`` dimensions through a random orthonormal basis, adds isotropic noise in
all ``dim`` dimensions and L2-normalises.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VectorSpec:
    """Parameters of the synthetic distribution (recorded with every benchmark figure)."""

    dim: int = 1280
    latent: int = 128
    clusters: int = 20_000
    spread: float = 0.35  # member deviation from its centre, relative to the centre spread
    decay: float = 0.5  # latent axis i has standard deviation (i + 1) ** -decay
    noise: float = 0.08  # isotropic noise per dimension, relative to the first latent axis
    seed: int = 0

    def describe(self) -> str:
        """One line for the report."""
        return (
            f"{self.clusters:,} clusters in a {self.latent}-d latent space (axis std "
            f"(i+1)^-{self.decay}, member spread {self.spread}), random orthonormal map to "
            f"{self.dim}-d, isotropic noise {self.noise}/dim, L2-normalised, seed {self.seed}"
        )


class ClusteredVectors:
    """A seeded generator: ``gallery(n)`` and ``queries(n)`` from the same clusters."""

    def __init__(self, spec: VectorSpec | None = None) -> None:
        self.spec = spec or VectorSpec()
        s = self.spec
        rng = np.random.default_rng(s.seed)
        self.axis_std = ((np.arange(s.latent) + 1.0) ** -s.decay).astype(np.float32)
        q, _ = np.linalg.qr(rng.standard_normal((s.dim, s.latent)))
        self.basis = np.ascontiguousarray(q.T, dtype=np.float32)  # (latent, dim)
        self.centres = (rng.standard_normal((s.clusters, s.latent)) * self.axis_std).astype(
            np.float32
        )

    def _draw(self, n: int, rng: np.random.Generator, chunk: int = 50_000) -> np.ndarray:
        s = self.spec
        out = np.empty((n, s.dim), np.float32)
        noise_scale = s.noise * np.sqrt(self.axis_std.dot(self.axis_std) / s.dim)
        for i in range(0, n, chunk):
            m = min(chunk, n - i)
            which = rng.integers(0, s.clusters, m)
            z = self.centres[which] + s.spread * self.axis_std * rng.standard_normal(
                (m, s.latent), dtype=np.float32
            )
            x = z @ self.basis
            x += noise_scale * rng.standard_normal((m, s.dim), dtype=np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            out[i : i + m] = x
        return out

    def gallery(self, n: int) -> np.ndarray:
        """``n`` reference vectors, (n, dim) float32, unit length."""
        return self._draw(n, np.random.default_rng(self.spec.seed + 1))

    def queries(self, n: int) -> np.ndarray:
        """``n`` fresh query vectors from the same clusters (not copies of references)."""
        return self._draw(n, np.random.default_rng(self.spec.seed + 2))


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int, chunk: int = 200_000) -> np.ndarray:
    """Brute-force top-k ids by inner product (ground truth), blockwise to bound memory."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for i in range(0, len(base), chunk):
        s = queries @ base[i : i + chunk].T
        kk = min(k, s.shape[1])
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        best_s = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)
        best_i = np.concatenate([best_i, part + i], axis=1)
        keep = np.argsort(-best_s, axis=1)[:, :k]
        best_s = np.take_along_axis(best_s, keep, 1)
        best_i = np.take_along_axis(best_i, keep, 1)
    return best_i


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean share of the true top-k found in the returned top-k."""
    hits = [
        len(set(f[:k].tolist()) & set(t[:k].tolist())) for f, t in zip(found, truth, strict=True)
    ]
    return float(np.mean(hits)) / k
