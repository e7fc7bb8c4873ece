"""Index at scale: build time, memory, single-query latency and recall@10 at 10k, 100k and 1M.

Run ``python -m benchmarks.scale`` (or ``gunmatch bench scale``); writes the "scale" section of
docs/benchmarks.md. Vectors come from ``benchmarks.synthvec`` (clustered, embedding-like,
1280-d); recall@10 is always measured against exact search on the original 1280-d vectors,
so PCA loss counts against the approximate indexes.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np

from benchmarks.report import git_rev, machine, write_section
from benchmarks.synthvec import ClusteredVectors, VectorSpec, exact_topk, recall_at_k
from benchmarks.timing import load_average, table, time_calls
from index.factory import IndexConfig, build_index
from index.transform import fit_pca

log = logging.getLogger(__name__)

K = 10


def measure(index, queries: np.ndarray, truth: np.ndarray | None, n_lat: int) -> dict:
    """Single-query latency (p50/p99 over ``n_lat`` calls) and recall@10 on all queries
    (``truth=None``: the index is the exact reference itself)."""
    # One query per call runs best on one thread: an OpenMP team waiting on a descheduled
    # second thread costs milliseconds on a shared 2-core machine.
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        t = time_calls(lambda i: index.search(queries[i % len(queries)][None], K), n_lat, 2)
    finally:
        faiss.omp_set_num_threads(threads)
    if truth is None:
        return {"p50": t.p50, "p99": t.p99, "recall": 1.0}
    _, found = index.search(queries, K)
    return {"p50": t.p50, "p99": t.p99, "recall": recall_at_k(found, truth, K)}


def file_bytes(index) -> int:
    """Bytes of the saved index (+ sidecar): what it costs on disk and, loaded, in memory."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "i.faiss"
        index.save(path)
        return sum(p.stat().st_size for p in Path(d).iterdir())


def run_size(
    n: int,
    spec: VectorSpec,
    pca_dim: int,
    configs: dict[str, IndexConfig],
    n_queries: int,
    flat_queries: int,
) -> list[list]:
    """All configurations at one gallery size; returns table rows."""
    gen = ClusteredVectors(replace(spec, clusters=max(100, n // 50)))
    t0 = time.perf_counter()
    base, queries = gen.gallery(n), gen.queries(n_queries)
    log.info("n=%d generated in %.1f s", n, time.perf_counter() - t0)
    truth = exact_topk(base, queries, K)
    ids = np.arange(n, dtype=np.int64)
    rows = []

    t0 = time.perf_counter()
    flat = build_index(ids, base, IndexConfig(kind="flat"))
    build = time.perf_counter() - t0
    m = measure(flat, queries, None, flat_queries)
    flat_p50, mem = m["p50"], file_bytes(flat)
    rows.append([f"{n:,}", "flat (exact) 1280-d", f"{build:.1f}", mem, m, 1.0])
    log.info("n=%d flat %s", n, m)
    del flat
    gc.collect()

    t0 = time.perf_counter()
    pca = fit_pca(base, pca_dim, max_samples=100_000)
    reduced = np.empty((n, pca_dim), np.float32)
    for i in range(0, n, 100_000):
        reduced[i : i + 100_000] = pca.apply(base[i : i + 100_000])
    q_red = pca.apply(queries)
    pca_s = time.perf_counter() - t0
    del base
    gc.collect()
    log.info("n=%d PCA-%d (energy %.3f) in %.1f s", n, pca_dim, pca.energy, pca_s)
    for name, cfg in configs.items():
        t0 = time.perf_counter()
        index = build_index(ids, reduced, cfg)
        build = time.perf_counter() - t0 + pca_s
        m = measure(index, q_red, truth, n_queries)
        mem = file_bytes(index) + pca.components.nbytes
        label = f"PCA-{pca_dim} (energy {pca.energy:.3f}) + {name}"
        rows.append([f"{n:,}", label, f"{build:.1f}", mem, m, flat_p50])
        log.info("n=%d %s build %.1f s %s", n, name, build, m)
        del index
        gc.collect()
    return rows


def fmt(rows: list[list], n: int) -> list[list]:
    """Table cells (memory per million references, speed-up over exact)."""
    out = []
    for size, name, build, mem, m, flat_p50 in rows:
        out.append(
            [
                size,
                name,
                build,
                f"{mem / 2**20:.0f}",
                f"{mem / 2**30 * 1e6 / int(size.replace(',', '')):.2f}",
                f"{m['p50']:.3f}",
                f"{m['p99']:.3f}",
                f"{flat_p50 / m['p50']:.0f}x" if flat_p50 != 1.0 else "1x",
                f"{m['recall']:.3f}",
            ]
        )
    return out


def default_configs(n: int, ivfpq_max: int) -> dict[str, IndexConfig]:
    """The approximate indexes compared at size ``n`` (IVF-PQ only up to ``ivfpq_max``: its
    PQ training dominates the time budget on 2 shared cores)."""
    configs = {"HNSW32 (efC 64, efS 96)": IndexConfig(kind="hnsw", hnsw_m=32, ef_construction=64)}
    if n <= ivfpq_max:
        configs["IVF-PQ32 (nprobe 32)"] = IndexConfig(kind="ivfpq", pq_m=32, nprobe=32)
    return configs


def run(
    quick: bool = False,
    threads: int = 2,
    sizes: Sequence[int] | None = None,
    pca_dim: int = 256,
    command: str = "python -m benchmarks.scale",
    n_queries: int = 300,
    ivfpq_max: int = 10_000,
    on_progress=None,
) -> str:
    """Measure every size; return the section's markdown (``on_progress(md)`` after each)."""
    faiss.omp_set_num_threads(threads)
    sizes = sizes or ((2_000, 10_000) if quick else (10_000, 100_000, 1_000_000))
    spec = VectorSpec(latent=256)
    start, rows = (machine(), git_rev(), load_average()), []
    nq = 100 if quick else n_queries
    md = ""
    for n in sizes:
        rows += run_size(n, spec, pca_dim, default_configs(n, ivfpq_max), nq, 10)
        md = _markdown(rows, spec, start, threads, command, nq)
        if on_progress is not None:
            on_progress(md)
    return md


def _markdown(rows, spec, start, threads, command, nq) -> str:
    started, commit, load0 = start  # machine line, commit and load as the run began
    header = [
        "references",
        "index",
        "build s",
        "index MB",
        "GB per million",
        "p50 ms",
        "p99 ms",
        "speed-up vs exact",
        "recall@10 vs exact 1280-d",
    ]
    return "\n".join(
        [
            "## Index at scale",
            "",
            f"Command: `{command}`  ",
            f"Machine: {started}  ",
            f"Commit: {commit}; faiss {faiss.__version__}, {threads} threads for builds, "
            f"1 for searches (one query per call); load average before/after: "
            f"{load0:.2f} / {load_average():.2f}",
            "",
            f"Vectors: {spec.describe()} (clusters = n/50). {nq} queries, fresh draws from the "
            "same clusters (not copies of references); latency is one query per call over all "
            "of them (exact search: 10 calls). Build time includes fitting and applying the "
            "PCA; memory is the saved index file plus the PCA matrix.",
            "",
            table(header, fmt(rows, 0)),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scale benchmark and write its section."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sizes", default=None, help="comma-separated, e.g. 10000,100000,1000000")
    p.add_argument("--pca", type=int, default=256)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else None
    cmd = " ".join(["python -m benchmarks.scale", *argv])
    progress = None if args.no_write else (lambda md: write_section("scale", md))
    md = run(args.quick, args.threads, sizes, args.pca, cmd, on_progress=progress)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
