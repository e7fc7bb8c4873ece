"""Shared gallery vs embedded: search latency and adds per second, one replica vs two.

``gunmatch bench distributed`` (or ``python -m benchmarks.distributed --write``) starts a
private PostgreSQL cluster and a milvus-lite server (``benchmarks.servers``), builds the same
synthetic gallery (``benchmarks.synthvec``, clustered, embedding-like) twice: embedded (FAISS +
SQLite, today's default) and shared (Milvus + PostgreSQL), at each size, with the default index
settings (``auto``: exact search up to 100k vectors). Then, for one and for two replica
processes over the same gallery, each replica runs single-query searches back to back (k=10,
no filter) and then single-reference adds (one ``Gallery.add`` each, as one API request does);
every request is timed. Figures are ratios measured in this one run, on this machine.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.report import begun, write_section
from benchmarks.servers import start_milvus, start_postgres, stop, stop_postgres
from benchmarks.synthvec import ClusteredVectors, VectorSpec
from benchmarks.timing import table
from index import Gallery, NewItem
from index.backends import BackendSpec
from index.factory import IndexConfig
from index.itemstore import StoreSpec

log = logging.getLogger(__name__)

K = 10
EXACT = IndexConfig(kind="flat")
WORK_PARENT = "/var/tmp"
CATEGORIES = ("barrel", "slide", "frame", "magazine")


@dataclass
class Load:
    """What the replicas measured together."""

    search_ms: list[float]
    search_wall_s: float
    add_ms: list[float]
    add_wall_s: float

    @property
    def searches_per_s(self) -> float:
        """All replicas' searches per wall-clock second."""
        return len(self.search_ms) / self.search_wall_s

    @property
    def adds_per_s(self) -> float:
        """All replicas' adds per wall-clock second."""
        return len(self.add_ms) / self.add_wall_s


@contextmanager
def shared_servers(parent: Path):
    """A private PostgreSQL cluster and a milvus-lite server for the run, under ``parent``."""
    pg_base, pg_url = start_postgres(parent=str(parent))
    work = Path(tempfile.mkdtemp(prefix="gunmatch-bench-milvus-", dir=parent))
    proc, uri = start_milvus(work / "data")
    try:
        yield pg_url, uri
    finally:
        stop(proc)
        stop_postgres(pg_base)
        shutil.rmtree(work, ignore_errors=True)


def make_items(vectors: np.ndarray, tag: str) -> list[NewItem]:
    """One reference per vector, with varied metadata."""
    return [
        NewItem(
            vectors=v[None],
            label=f"label{i % 50}",
            image_bytes=f"{tag}-{i}".encode(),
            category=CATEGORIES[i % len(CATEGORIES)],
            threat=i % 3 == 0,
            source=f"{tag}/{i}.png",
        )
        for i, v in enumerate(vectors)
    ]


def storage_bytes(root: Path, shared: dict) -> int:
    """Bytes the gallery's item store (and, embedded, its index file) takes on disk: the
    SQLite database and FAISS file, or every table of the PostgreSQL schema with its indexes
    and TOAST (the vectors)."""
    store = shared.get("item_store")
    if store is None:
        names = ("gallery.sqlite", "gallery.sqlite-wal", "index.faiss", "index.faiss.meta.json")
        return sum((root / n).stat().st_size for n in names if (root / n).exists())
    import psycopg

    with psycopg.connect(store.url, autocommit=True) as conn:
        conn.execute("VACUUM")
        row = conn.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r'",
            (store.schema,),
        ).fetchone()
    return int(row[0] or 0)


def build(root: Path, base: np.ndarray, shared: dict, batch: int = 2000) -> float:
    """Create and fill one gallery; returns the bulk load rate (references per second)."""
    # Exact search throughout: with ``auto`` the adds would carry 100k past the exact-search
    # threshold and the next phase would search an HNSW index instead.
    g = Gallery.create(root, "bench-model", base.shape[1], index_config=EXACT, **shared)
    t0 = time.perf_counter()
    try:
        for start in range(0, len(base), batch):
            g.add(make_items(base[start : start + batch], f"base{start}"), "bench-model")
        g.flush()
    finally:
        g.close()
    return len(base) / (time.perf_counter() - t0)


def _replica(root: str, queries: np.ndarray, adds: np.ndarray, tag: str, barrier, out) -> None:
    """One replica process: open the gallery, search back to back, then add one by one
    (either may be empty)."""
    import faiss

    faiss.omp_set_num_threads(1)  # one request at a time per replica, as a service worker
    g = Gallery.open(root)
    try:
        for q in queries[:5]:  # warm-up
            g.search(q, K)
        barrier.wait()
        search_ms, t0 = [], time.perf_counter()
        for q in queries:
            t = time.perf_counter()
            g.search(q, K)
            search_ms.append((time.perf_counter() - t) * 1000)
        search_end = time.perf_counter() if len(queries) else t0
        barrier.wait()
        add_ms, t1 = [], time.perf_counter()
        for it in make_items(adds, tag):
            t = time.perf_counter()
            g.add([it], "bench-model")
            add_ms.append((time.perf_counter() - t) * 1000)
        add_end = time.perf_counter() if len(adds) else t1
    finally:
        g.close()
    out.put((search_ms, t0, search_end, add_ms, t1, add_end))


def run_replicas(
    root: Path, queries: np.ndarray, adds: np.ndarray, replicas: int, tag: str
) -> Load:
    """``replicas`` processes over one gallery, each with its share of the queries and adds."""
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(replicas), ctx.Queue()
    procs = [
        ctx.Process(
            target=_replica,
            args=(str(root), queries[r::replicas], adds[r::replicas], f"{tag}-r{r}", barrier, out),
        )
        for r in range(replicas)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=3600) for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"replica process failed with exit code {p.exitcode}")
    search_ms = [x for r in results for x in r[0]]
    add_ms = [x for r in results for x in r[3]]
    search_wall = max(r[2] for r in results) - min(r[1] for r in results)
    add_wall = max(r[5] for r in results) - min(r[4] for r in results)
    return Load(search_ms, search_wall, add_ms, add_wall)


def _p(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q))


def measure(sizes: tuple[int, ...], dim: int, n_queries: int, n_adds: int, work: Path) -> dict:
    """Every (size, backend, replicas) cell: {(n, backend, replicas): (Load, bulk rate,
    stored bytes per reference)}."""
    cells = {}
    with shared_servers(work) as (pg_url, milvus_uri):
        for n in sizes:
            gen = ClusteredVectors(VectorSpec(dim=dim, clusters=max(100, n // 50), seed=11))
            base, queries = gen.gallery(n), gen.queries(n_queries)
            fresh = gen.queries(4 * n_adds)  # new references, never in the base
            for backend in ("faiss", "milvus"):
                name = f"bench_{backend}_{n}"
                shared = {}
                if backend == "milvus":
                    shared = {
                        "vector_store": BackendSpec("milvus", milvus_uri, name),
                        "item_store": StoreSpec("postgresql", pg_url, name),
                    }
                root = work / name
                log.info("n=%d %s: loading", n, backend)
                rate = build(root, base, shared)
                per_ref = storage_bytes(root, shared) / n
                # All searches first, on the gallery as loaded; then the adds.
                searched = {}
                for replicas in (1, 2):
                    log.info("n=%d %s: searches, %d replica(s)", n, backend, replicas)
                    none = fresh[:0]
                    searched[replicas] = run_replicas(root, queries, none, replicas, "s")
                for i, replicas in enumerate((1, 2)):
                    adds = fresh[(2 * i) * n_adds : (2 * i + 2) * n_adds][: n_adds * replicas]
                    log.info("n=%d %s: adds, %d replica(s)", n, backend, replicas)
                    added = run_replicas(root, queries[:0], adds, replicas, f"{name}-{replicas}")
                    s_load = searched[replicas]
                    load = Load(
                        s_load.search_ms, s_load.search_wall_s, added.add_ms, added.add_wall_s
                    )
                    cells[(n, backend, replicas)] = (load, rate, per_ref)
    return cells


def report(
    cells: dict, sizes, dim: int, n_queries: int, n_adds: int, command: str, started: str
) -> str:
    """The markdown section: measured cells, then the ratios the issue asks for."""
    rows = []
    for (n, backend, replicas), (load, rate, per_ref) in sorted(cells.items()):
        label = "FAISS + SQLite (embedded)" if backend == "faiss" else "Milvus + PostgreSQL"
        rows.append(
            [
                f"{n:,}",
                label,
                replicas,
                f"{_p(load.search_ms, 50):.1f}",
                f"{_p(load.search_ms, 99):.1f}",
                f"{load.searches_per_s:.0f}",
                f"{load.adds_per_s:.1f}",
                f"{_p(load.add_ms, 50):.1f}",
                f"{rate:,.0f}",
                f"{per_ref / 1024:.1f}",
            ]
        )
    ratio_rows = []
    for n in sizes:
        f1, m1 = cells[(n, "faiss", 1)][0], cells[(n, "milvus", 1)][0]
        f2, m2 = cells[(n, "faiss", 2)][0], cells[(n, "milvus", 2)][0]
        ratio_rows.append(
            [
                f"{n:,}",
                f"{_p(m1.search_ms, 50) / _p(f1.search_ms, 50):.1f}x",
                f"{_p(m1.search_ms, 99) / _p(f1.search_ms, 99):.1f}x",
                f"{m1.adds_per_s / f1.adds_per_s:.2f}x",
                f"{f2.searches_per_s / f1.searches_per_s:.2f}x",
                f"{m2.searches_per_s / m1.searches_per_s:.2f}x",
                f"{m2.adds_per_s / m1.adds_per_s:.2f}x",
            ]
        )
    return "\n".join(
        [
            "## Shared gallery: Milvus + PostgreSQL vs embedded FAISS + SQLite",
            "",
            f"`{command}` on {started}. Synthetic clustered {dim}-d "
            f"vectors, exact search (flat index) on both backends, k={K}, no filter; "
            f"{n_queries} single-query searches (split over the replicas, all searches before "
            f"any add), then {n_adds} single-reference adds per replica; each replica is a "
            "separate process with the gallery open, requests back to "
            "back. Milvus is the milvus-lite server (pure Python) on this same machine, "
            "PostgreSQL a local cluster on a Unix socket, so the shared figures include their "
            "CPU on the same two cores and no network. Store KB/ref: on-disk bytes per "
            "reference of the item store after loading (SQLite + the FAISS file; or the "
            "PostgreSQL schema's tables with indexes and TOAST, after VACUUM), Milvus not "
            "included.",
            "",
            table(
                [
                    "references",
                    "backend",
                    "replicas",
                    "search p50 ms",
                    "search p99 ms",
                    "searches/s (all)",
                    "adds/s (all)",
                    "add p50 ms",
                    "bulk load refs/s",
                    "store KB/ref",
                ],
                rows,
            ),
            "",
            "Ratios from the same run:",
            "",
            table(
                [
                    "references",
                    "Milvus/FAISS search p50",
                    "Milvus/FAISS search p99",
                    "Milvus/FAISS adds/s",
                    "FAISS 2/1 replicas searches/s",
                    "Milvus 2/1 replicas searches/s",
                    "Milvus 2/1 replicas adds/s",
                ],
                ratio_rows,
            ),
        ]
    )


def run(quick: bool = False, threads: int = 2, command: str = "") -> str:
    """Measure and return the markdown section (``gunmatch bench distributed``)."""
    started = begun()
    sizes = (2_000, 10_000) if quick else (10_000, 100_000)
    dim = 256 if quick else 1280
    n_queries, n_adds = (100, 20) if quick else (300, 50)
    # Not /tmp: an hour-long run must not lose its servers' files to a tmp cleaner.
    work = Path(tempfile.mkdtemp(prefix="gunmatch-bench-dist-", dir=WORK_PARENT))
    work.chmod(0o755)  # the postgres user (when run as root) must reach its cluster
    try:
        cells = measure(sizes, dim, n_queries, n_adds, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    command = command or "gunmatch bench distributed"
    return report(cells, sizes, dim, n_queries, n_adds, command, started)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.distributed [--quick] [--write]``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2k and 10k references, 256-d")
    ap.add_argument("--write", action="store_true", help="write the section of docs/benchmarks.md")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    command = "python -m benchmarks.distributed" + (" --quick" if args.quick else "")
    md = run(quick=args.quick, command=command)
    if args.write:
        write_section("distributed", md)
    sys.stdout.write(md + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
