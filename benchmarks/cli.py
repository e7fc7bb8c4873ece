"""``gunmatch bench``: regenerate the figures in docs/benchmarks.md, all or selected suites."""

from __future__ import annotations

import argparse
import importlib
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.report import DOC, write_section
from gunmatch.commands.common import UsageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Suite:
    """A benchmark suite: a module with ``run(quick, threads, command=...) -> markdown``, or an
    external script run as ``python -m MODULE --write`` (it writes its own section)."""

    module: str
    section: str
    external: bool = False
    help: str = ""
    # An external script that takes --quick (a smoke run) gets it from `gunmatch bench --quick`.
    quick_flag: bool = False


SUITES: dict[str, Suite] = {
    "core": Suite("benchmarks.core", "core", help="embedding images/s per backbone, exact search"),
    "embedding": Suite("benchmarks.embedding", "embedding", help="inference paths + agreement"),
    "microbatch": Suite("benchmarks.microbatch", "microbatch", help="concurrent requests"),
    "scale": Suite("benchmarks.scale", "scale", help="flat/HNSW/IVF-PQ at 10k, 100k, 1M"),
    "http": Suite("benchmarks.http_load", "http", True, "end-to-end HTTP search latency"),
    "xray": Suite("benchmarks.xray_screening", "xray", True, "X-ray parcel screening"),
    "training": Suite("benchmarks.training", "training", True, "fine-tuning"),
    "domain": Suite(
        "benchmarks.xray_domain",
        "domain",
        True,
        "X-ray screening on held-out scanner styles",
        quick_flag=True,
    ),
    # Not in DEFAULT_ORDER: ten minutes of live traffic, run on its own (`gunmatch bench soak`).
    "soak": Suite(
        "benchmarks.soak",
        "soak",
        True,
        "10 minutes of mixed search/add/delete traffic at 4 clients",
        quick_flag=True,
    ),
    # Not in DEFAULT_ORDER: starts PostgreSQL and Milvus and loads 100k references twice.
    "distributed": Suite(
        "benchmarks.distributed",
        "distributed",
        help="Milvus + PostgreSQL vs embedded FAISS, one replica vs two, 10k and 100k",
    ),
}
DEFAULT_ORDER = ("core", "embedding", "microbatch", "scale", "http", "xray", "domain", "training")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand."""
    listing = "; ".join(f"{k}: {s.help}" for k, s in SUITES.items())
    p = sub.add_parser(
        "bench",
        help="run benchmarks and rewrite docs/benchmarks.md",
        description=f"Suites: {listing}.",
    )
    p.add_argument("suites", nargs="*", metavar="SUITE", help="suites to run (default: all)")
    p.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="markdown file for the built-in suites (external ones write docs/benchmarks.md)",
    )
    p.add_argument("--list", action="store_true", help="list the suites and exit")
    p.set_defaults(func=cmd_bench)


def selected(names: list[str]) -> list[str]:
    """Validate suite names (default: all, in order)."""
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise UsageError(f"unknown suite(s) {', '.join(unknown)}; known: {', '.join(SUITES)}")
    return list(names) or list(DEFAULT_ORDER)


def run_suite(name: str, quick: bool, threads: int, out: Path | None) -> Path | None:
    """Run one suite and write its section; returns the document written."""
    suite = SUITES[name]
    if suite.external:
        cmd = [sys.executable, "-m", suite.module, "--write"]
        cmd += ["--quick"] if quick and suite.quick_flag else []
        subprocess.run(cmd, check=True)
        return DOC
    mod = _load(suite.module)
    command = f"gunmatch bench {name}" + (" --quick" if quick else "")
    command += f" --threads {threads}" if threads != 2 else ""
    md = mod.run(quick=quick, threads=threads, command=command)
    return write_section(suite.section, md, out or DOC)


def _load(module: str):
    return importlib.import_module(module)


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the selected suites."""
    if args.threads < 1:
        raise UsageError("--threads must be at least 1")
    if args.list:
        for k, s in SUITES.items():
            print(f"{k:12s} {s.help}")  # noqa: T201
        return 0
    failed = []
    for name in selected(args.suites):
        log.info("bench %s", name)
        try:
            doc = run_suite(name, args.quick, args.threads, args.out)
            print(f"{name}: wrote {doc}")  # noqa: T201
        except (subprocess.CalledProcessError, RuntimeError, OSError, ValueError) as exc:
            failed.append(name)
            print(f"{name}: failed: {exc}", file=sys.stderr)  # noqa: T201
    if failed:
        raise RuntimeError(f"benchmark suite(s) failed: {', '.join(failed)}")
    return 0
