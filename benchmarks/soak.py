"""Soak: minutes of mixed traffic (searches, adds, deletes) from several clients against a live
`gunmatch serve`; reports errors, latency, the server's memory growth and whether every
acknowledged write survived (checked after a restart).

    .venv/bin/python -m benchmarks.soak [--minutes 10] [--clients 4] [--items 2000] [--write]

Pass: no error other than 503 (the bounded queue saying "busy"), memory flat within 10%
from the end of warm-up to the end beyond the vectors that the acknowledged adds (less the
deletes) put in the gallery meanwhile, every acknowledged add present and every acknowledged
delete absent afterwards.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from benchmarks.http_load import build_gallery, query_png
from benchmarks.report import machine, write_section
from gunmatch.state import KeyStore, state_db_path

MIX = (("search", 0.6), ("add", 0.25), ("delete", 0.15))
OK = {"search": {200}, "add": {200, 201}, "delete": {204}}
SAMPLE_S = 5.0


def noise_png(rng: random.Random, size: int = 96) -> bytes:
    """A distinct small photo-like upload (a new sha256 each time: a new item)."""
    arr = np.frombuffer(rng.randbytes(size * size * 3), dtype=np.uint8).reshape(size, size, 3)
    buf = io.BytesIO()
    Image.fromarray(arr.copy(), "RGB").save(buf, "PNG")
    return buf.getvalue()


@dataclass
class Tally:
    """What the clients saw, shared under a lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    latency: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k, _ in MIX})
    codes: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    added: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    changes: list[tuple[float, int]] = field(default_factory=list)  # (monotonic s, +1 / -1)


def _request(http, op: str, key: str, rng: random.Random, mine: list[str], image: bytes):
    headers = {"X-API-Key": key}
    if op == "search":
        return http.post("/v1/search", files={"image": ("q.png", image)}, headers=headers)
    if op == "add":
        files = {"image": ("ref.png", noise_png(rng))}
        return http.post("/v1/gallery/items", files=files, data={"label": "soak"},
                         headers=headers)  # fmt: skip
    return http.delete(f"/v1/gallery/items/{mine[-1]}", headers=headers)


def client(url: str, key: str, seed: int, deadline: float, tally: Tally) -> None:
    """One client: a weighted mix of operations until the deadline."""
    import httpx

    rng = random.Random(seed)
    image = query_png()
    mine: list[str] = []
    ops, weights = zip(*MIX, strict=True)
    with httpx.Client(base_url=url, timeout=120) as http:
        while time.monotonic() < deadline:
            op = rng.choices(ops, weights)[0]
            if op == "delete" and not mine:
                op = "add"
            t0 = time.perf_counter()
            try:
                r = _request(http, op, key, rng, mine, image)
            except httpx.HTTPError as exc:
                with tally.lock:
                    tally.errors.append(f"{op}: {type(exc).__name__}: {exc}")
                continue
            dt = time.perf_counter() - t0
            with tally.lock:
                tally.codes[(op, r.status_code)] += 1
                if r.status_code in OK[op]:
                    tally.latency[op].append(dt)
                elif r.status_code != 503:
                    tally.errors.append(f"{op}: {r.status_code} {r.text[:200]}")
            if op == "add" and r.status_code in OK["add"]:
                item = r.json()["item"]["item_id"]
                mine.append(item)
                with tally.lock:
                    tally.added.add(item)
                    tally.changes.append((time.monotonic(), 1))
            elif op == "delete" and r.status_code == 204:
                with tally.lock:
                    tally.deleted.add(mine.pop())
                    tally.changes.append((time.monotonic(), -1))


@contextmanager
def serve(root: Path, env: dict[str, str], queue_size: int):
    """`gunmatch serve ROOT` on a free port until the block ends: (url, process)."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunmatch.cli", "serve", "--gallery", str(root), "--port",
         str(port), "--queue-size", str(queue_size), "--log-level", "warning"],
        env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(900):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError("gunmatch serve exited during start-up")
            time.sleep(0.2)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def sample_memory(proc, stop: threading.Event, out: list[tuple[float, int]], start: float) -> None:
    """The server's RSS every few seconds, timed from ``start`` (monotonic)."""
    p = psutil.Process(proc.pid)
    while not stop.wait(SAMPLE_S):
        out.append((time.monotonic() - start, p.memory_info().rss))


def after_warmup(samples: list[tuple[float, int]], warmup_s: float) -> list[tuple[float, int]]:
    """The samples from the end of warm-up on (all of them where fewer than four are left)."""
    after = [(t, m) for t, m in samples if t >= warmup_s]
    return after if len(after) >= 4 else samples


def ends(samples: list[tuple[float, int]], warmup_s: float) -> tuple[list, list]:
    """The samples of the first and of the last minute after warm-up."""
    after = after_warmup(samples, warmup_s)
    window = max(2, min(12, len(after) // 4))
    return after[:window], after[-window:]


def memory_growth(samples: list[tuple[float, int]], warmup_s: float) -> tuple[float, float, float]:
    """(MB after warm-up, MB at the end, growth %): medians of the first and last minute
    after warm-up (a sawtooth of allocator pages is not growth)."""
    first, last = (float(np.median([m for _, m in w])) / 1e6 for w in ends(samples, warmup_s))
    return first, last, (last - first) / first * 100.0


def vectors_added_mb(
    changes: list[tuple[float, int]], samples: list[tuple[float, int]], warmup_s: float, dim: int
) -> float:
    """MB of float32 vectors that the acknowledged adds less deletes (``changes``, timed as
    the samples are) put in the gallery between the middles of the first and last minute
    after warm-up: data the service must hold, not growth of its own."""
    first, last = ends(samples, warmup_s)
    t0, t1 = float(np.median([t for t, _ in first])), float(np.median([t for t, _ in last]))
    return sum(d for t, d in changes if t0 <= t < t1) * dim * 4 / 1e6


def memory_trace(samples: list[tuple[float, int]], warmup_s: float, parts: int = 10) -> list[float]:
    """MB after warm-up, the median of each of `parts` equal stretches of time in turn: whether
    the memory levels off or keeps growing, which the first and last minute alone cannot say."""
    after = after_warmup(samples, warmup_s)
    if not after:
        return []
    t0, t1 = after[0][0], after[-1][0]
    width = (t1 - t0) / parts or 1.0
    stretches: list[list[int]] = [[] for _ in range(parts)]
    for t, m in after:
        stretches[min(parts - 1, int((t - t0) / width))].append(m)
    return [float(np.median(ms)) / 1e6 for ms in stretches if ms]


def check_writes(url: str, key: str, tally: Tally) -> tuple[int, int, list[str]]:
    """Every acknowledged add that was not deleted is there; every acknowledged delete is gone."""
    import httpx

    missing = []
    present = tally.added - tally.deleted
    with httpx.Client(base_url=url, timeout=60) as http:
        for item in sorted(present):
            if http.get(f"/v1/gallery/items/{item}", headers={"X-API-Key": key}).status_code != 200:
                missing.append(f"added {item} missing")
        for item in sorted(tally.deleted):
            if http.get(f"/v1/gallery/items/{item}", headers={"X-API-Key": key}).status_code != 404:
                missing.append(f"deleted {item} present")
    return len(present), len(tally.deleted), missing


def pct(values: list[float], q: float) -> float:
    """Percentile in ms (nan when empty)."""
    return float(np.percentile(np.array(values) * 1000.0, q)) if values else float("nan")


def main() -> int:
    """Build, serve, soak, restart, check, report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--items", type=int, default=2000, help="gallery size at the start")
    ap.add_argument("--threads", type=int, default=2, help="torch threads in the service")
    ap.add_argument("--queue-size", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="one minute (a smoke run)")
    ap.add_argument("--write", action="store_true", help="write docs/benchmarks.md section 'soak'")
    args = ap.parse_args()
    minutes = 1.0 if args.quick else args.minutes
    host_info = machine()
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "gallery"
        dim = build_gallery(root, args.items)
        key = KeyStore(state_db_path(root)).create("soak", "analyst")[1]
        env = {**os.environ, "GUNMATCH_THREADS": str(args.threads),
               "GUNMATCH_AUDIT_SECRET_FILE": str(Path(tmp) / "secret" / "audit.key")}  # fmt: skip
        tally = Tally()
        samples: list[tuple[float, int]] = []
        with serve(root, env, args.queue_size) as (url, proc):
            stop = threading.Event()
            t0 = time.monotonic()  # the clock of the memory samples and of the writes
            sampler = threading.Thread(target=sample_memory, args=(proc, stop, samples, t0))
            sampler.start()
            deadline = t0 + minutes * 60.0
            threads = [threading.Thread(target=client, args=(url, key, i, deadline, tally))
                       for i in range(args.clients)]  # fmt: skip
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            ran_s = time.monotonic() - t0
            stop.set()
            sampler.join()
        with serve(root, env, args.queue_size) as (url, _):  # after a restart: durable?
            kept, gone, missing = check_writes(url, key, tally)
    warmup = min(60.0, ran_s / 5)
    mb0, mb1, growth = memory_growth(samples, warmup)
    changes = [(t - t0, d) for t, d in tally.changes]
    data_mb = vectors_added_mb(changes, samples, warmup, dim)
    own = growth - data_mb / mb0 * 100.0  # the service's own growth, the vectors aside
    every = [x for v in tally.latency.values() for x in v]
    n = sum(tally.codes.values())
    busy = sum(c for (_, code), c in tally.codes.items() if code == 503)
    ok = not tally.errors and abs(own) <= 10.0 and not missing
    cmd = (f"gunmatch bench soak (= .venv/bin/python -m benchmarks.soak --minutes {minutes:g} "
           f"--clients {args.clients} --items {args.items} --threads {args.threads} "
           f"--queue-size {args.queue_size} --write)")  # fmt: skip
    lines = [
        "## Soak: mixed traffic against a live service",
        "",
        f"{args.clients} clients for {ran_s / 60:.1f} minutes ({ran_s:.0f} s measured) against "
        f"`gunmatch serve` ({args.threads} torch threads, queue size {args.queue_size}) on a "
        f"{args.items:,}-item gallery; each client picks search 60% / add 25% / delete 15% "
        "(deleting only what it added). Memory: the server's RSS every 5 s, median of the "
        f"first and last minute after {warmup:.0f} s of warm-up; the vectors that the "
        "acknowledged adds less deletes put in the gallery between those minutes are data, "
        "and the bound of 10% is on the growth beyond them. Writes: after the run the "
        "service is restarted and every acknowledged add / delete is checked.",
        "",
        "| requests | errors (non-503) | 503 busy | p50 (ms) | p99 (ms) | search p99 | "
        "add p99 | delete p99 | RSS after warm-up → end (MB) | growth | vectors added (MB) | "
        "growth beyond them | acknowledged adds kept / deletes gone | missing | verdict |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---:|---|",
        f"| {n} | {len(tally.errors)} | {busy} | {pct(every, 50):.0f} | {pct(every, 99):.0f} | "
        f"{pct(tally.latency['search'], 99):.0f} | {pct(tally.latency['add'], 99):.0f} | "
        f"{pct(tally.latency['delete'], 99):.0f} | {mb0:.0f} → {mb1:.0f} | {growth:+.1f}% | "
        f"{data_mb:+.0f} | {own:+.1f}% | {kept} / {gone} | {len(missing)} | "
        f"{'pass' if ok else 'FAIL'} |",
        "",
        f"Status codes: {dict(sorted((f'{o} {c}', k) for (o, c), k in tally.codes.items()))}",
        "",
        "RSS after warm-up (MB), the median of each tenth of the time in turn: "
        + ", ".join(f"{mb:.0f}" for mb in memory_trace(samples, warmup)),
    ]
    if tally.errors or missing:
        lines += ["", "First problems: " + "; ".join((tally.errors + missing)[:5])]
    lines += ["", f"Command: `{cmd}`", "", f"Date: {date}. Machine: {host_info}"]
    md = "\n".join(lines)
    print(md)
    if args.write:
        print(f"wrote {write_section('soak', md)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
