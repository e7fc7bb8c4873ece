"""Concurrent single-image requests: one forward pass each vs micro-batched.

Run ``python -m benchmarks.microbatch`` (or ``gunmatch bench microbatch``); writes the
"microbatch" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Sequence

import torch

from benchmarks.report import git_rev, machine, write_section
from benchmarks.timing import load_average, table
from gunmatch.allocator import hold_freed_memory
from gunmatch.microbatch import MicroBatcher
from matcher.fast import create_runner
from matcher.model import build_pretrained


def serve(fn, clients: int, per_client: int, size: int) -> tuple[float, float]:
    """(images/s, median request latency ms) with ``clients`` threads sending one image each."""
    x = torch.rand(1, 3, size, size)
    lat: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(per_client):
            t0 = time.perf_counter()
            fn(x)
            with lock:
                lat.append((time.perf_counter() - t0) * 1e3)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    return clients * per_client / wall, lat[len(lat) // 2]


def run(
    quick: bool = False,
    threads: int = 2,
    path: str = "onnx",
    command: str = "python -m benchmarks.microbatch",
) -> str:
    """Measure both ways at a few concurrency levels; return the section's markdown."""
    started, commit = machine(), git_rev()  # the load, time and code at its start
    torch.set_num_threads(threads)
    hold_freed_memory()  # as the service does (it hands the memory back once a minute)
    model = build_pretrained("efficientnet_lite0")
    size = model.config.preprocess.input_size
    runner = create_runner(model, path, threads)
    one_at_a_time = threading.Lock()

    def direct(x):
        with one_at_a_time:  # the service runs one forward pass at a time
            return runner(x)

    runner(torch.rand(1, 3, size, size))  # warm up
    load0, rows = load_average(), []
    per_client = 2 if quick else 6
    for clients in (1, 8) if quick else (1, 4, 16):
        d_ips, d_ms = serve(direct, clients, per_client, size)
        with MicroBatcher(runner, max_batch=32, max_wait_ms=3) as mb:
            m_ips, m_ms = serve(mb.embed, clients, per_client, size)
            mean_batch = mb.stats.images / max(1, mb.stats.batches)
        rows.append(
            [
                clients,
                f"{d_ips:.1f}",
                f"{d_ms:.0f}",
                f"{m_ips:.1f}",
                f"{m_ms:.0f}",
                f"{mean_batch:.1f}",
                f"{m_ips / d_ips:.2f}x",
            ]
        )
    header = [
        "clients",
        "direct images/s",
        "direct p50 ms",
        "micro-batched images/s",
        "micro-batched p50 ms",
        "mean batch",
        "throughput gain",
    ]
    return "\n".join(
        [
            "## Micro-batching concurrent requests",
            "",
            f"Command: `{command}`  ",
            f"Machine: {started}  ",
            f"Commit: {commit}; efficientnet_lite0 on the `{path}` path, {threads} threads, "
            f"max wait 3 ms, max batch 32; {per_client} single-image requests per client; "
            f"load average before/after: {load0:.2f} / {load_average():.2f}",
            "",
            table(header, rows),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the micro-batching benchmark and write its section."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--path", default="onnx")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    md = run(
        args.quick, args.threads, args.path, " ".join(["python -m benchmarks.microbatch", *argv])
    )
    print(md if args.no_write else write_section("microbatch", md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
