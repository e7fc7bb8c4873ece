"""Core figures: embedding throughput per backbone (batch 1 and 32) and exact search latency.

Run ``python -m benchmarks.core`` (or ``gunmatch bench core``); writes the "core" section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence

import faiss
import numpy as np
import torch

from benchmarks.report import git_rev, machine, write_section
from benchmarks.timing import load_average, table, time_calls
from index.vectors import VectorIndex
from matcher.embedder import Embedder
from matcher.model import build_pretrained

log = logging.getLogger(__name__)

BACKBONES = ("efficientnet_lite0", "efficientnet_lite2")


def embedding_throughput(
    backbone: str, batch: int, threads: int = 2, repeats: int = 10, warmup: int = 2
) -> dict:
    """Images/s and per-batch latency of the float32 embedder on random input tensors."""
    emb = Embedder(build_pretrained(backbone), batch_size=batch, threads=threads)
    s = emb.preprocess_config.input_size
    x = torch.rand(batch, 3, s, s)
    t = time_calls(lambda _: emb.embed_tensors(x), repeats, warmup)
    return {
        "backbone": backbone,
        "input": s,
        "batch": batch,
        "threads": threads,
        "p50_ms": t.p50,
        "p99_ms": t.p99,
        "images_per_s": batch / (t.p50 / 1e3),
    }


def random_unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Gaussian vectors normalised to unit length, float32."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for i in range(0, n, 65536):
        block = rng.standard_normal((min(65536, n - i), dim), dtype=np.float32)
        out[i : i + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def flat_search_latency(
    n: int, dim: int = 1280, k: int = 10, queries: int = 200, threads: int = 2, seed: int = 0
) -> dict:
    """Build time and single-query latency of the exact flat index on random unit vectors."""
    faiss.omp_set_num_threads(threads)
    data = random_unit_vectors(n, dim, seed)
    q = random_unit_vectors(queries, dim, seed + 1)
    t0 = time.perf_counter()
    idx = VectorIndex(dim)
    idx.add(np.arange(n, dtype=np.int64), data)
    build_s = time.perf_counter() - t0
    t = time_calls(lambda i: idx.search(q[i % queries : i % queries + 1], k), queries, 5)
    return {
        "n": n,
        "dim": dim,
        "k": k,
        "build_s": build_s,
        "p50_ms": t.p50,
        "p99_ms": t.p99,
        "mem_mb": n * dim * 4 / 2**20,
    }


def run(quick: bool = False, threads: int = 2, command: str = "python -m benchmarks.core") -> str:
    """Measure everything in this section; return its markdown."""
    started, commit = machine(), git_rev()  # the load, time and code at its start
    repeats = 3 if quick else 10
    sizes = (1000, 5000) if quick else (10_000, 100_000)
    backbones = BACKBONES[:1] if quick else BACKBONES
    emb_rows, load0 = [], load_average()
    for bb in backbones:
        for batch in (1, 32):
            r = embedding_throughput(bb, batch, threads, repeats if batch > 1 else repeats * 3)
            log.info("embed %s", r)
            emb_rows.append(
                [
                    bb,
                    r["input"],
                    batch,
                    threads,
                    f"{r['p50_ms']:.1f}",
                    f"{r['p99_ms']:.1f}",
                    f"{r['images_per_s']:.1f}",
                ]
            )
    search_rows = []
    for n in sizes:
        r = flat_search_latency(n, threads=threads)
        log.info("search %s", r)
        search_rows.append(
            [
                f"{n:,}",
                r["dim"],
                r["k"],
                f"{r['build_s']:.2f}",
                f"{r['p50_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
                f"{r['mem_mb']:.0f}",
            ]
        )
    return "\n".join(
        [
            "## Core: embedding throughput and exact search",
            "",
            f"Command: `{command}`  ",
            f"Machine: {started}  ",
            f"Commit: {commit}; load average before/after: {load0:.2f} / {load_average():.2f}",
            "",
            "Embedding (float32, channels_last, random 3xSxS input tensors, preprocessing "
            "excluded; latency per batch, images/s from the median):",
            "",
            table(
                ["backbone", "input", "batch", "threads", "p50 ms", "p99 ms", "images/s"],
                emb_rows,
            ),
            "",
            "Exact search (`IndexIDMap2(IndexFlatIP)`, random unit vectors, one query per call, "
            "k=10):",
            "",
            table(["vectors", "dim", "k", "build s", "p50 ms", "p99 ms", "vector MB"], search_rows),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the core benchmark and write its section."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-write", action="store_true", help="print instead of writing the doc")
    args = p.parse_args(argv)
    cmd = "python -m benchmarks.core" + (" --quick" if args.quick else "")
    md = run(args.quick, args.threads, cmd)
    if args.no_write:
        print(md)
    else:
        print(write_section("core", md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
