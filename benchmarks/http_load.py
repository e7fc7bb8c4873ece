"""Load test of POST /v1/search: p50/p99 latency and throughput at 1, 4 and 16 clients.

Builds a 10,000-item gallery (random unit vectors attached to real metadata rows and tiny
distinct PNGs; the cost that matters per request is decode + embed + index search), starts
`gunmatch serve` on it in a subprocess, and hammers /v1/search from client threads.

    .venv/bin/python -m benchmarks.http_load [--items 10000] [--requests 40] [--write]
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from benchmarks.report import machine, write_section
from gunmatch.state import KeyStore, state_db_path
from index import Gallery, NewItem
from matcher import load_model, save_checkpoint
from matcher.model import DEFAULT_BACKBONE

LABELS = [("glock_slide", "slide", True), ("ar15_barrel", "barrel", True),
          ("revolver_cylinder", "cylinder", True), ("spanner", "benign", False),
          ("umbrella", "benign", False), ("toy_pistol", "replica", False)]  # fmt: skip


def tiny_png(i: int) -> bytes:
    """A distinct 4x4 PNG per index (distinct sha256 -> distinct item)."""
    arr = np.frombuffer(i.to_bytes(48, "little"), dtype=np.uint8).reshape(4, 4, 3)
    buf = io.BytesIO()
    Image.fromarray(arr.copy(), "RGB").save(buf, "PNG")
    return buf.getvalue()


def build_gallery(root: Path, n: int, seed: int = 0) -> int:
    """A gallery of n random-vector items made with the default model's id and checkpoint;
    returns its vector dimension."""
    net = load_model(DEFAULT_BACKBONE)
    gallery = Gallery.create(root, net.model_id, net.dim)
    save_checkpoint(net, gallery.model_dir)
    rng = np.random.default_rng(seed)
    for start in range(0, n, 1000):
        items = []
        for i in range(start, min(n, start + 1000)):
            v = rng.standard_normal(net.dim).astype(np.float32)
            label, cat, threat = LABELS[i % len(LABELS)]
            items.append(NewItem(vectors=(v / np.linalg.norm(v))[None], label=label,
                                 image_bytes=tiny_png(i), category=cat, threat=threat,
                                 make_model=f"model {i % 37}", source=f"bench/{i}"))  # fmt: skip
        gallery.add(items, net.model_id)
    gallery.close()
    return net.dim


def query_png(size: int = 320) -> bytes:
    """A realistic-size query photo (a drawn part)."""
    img = Image.new("RGB", (size, size), (230, 230, 230))
    d = ImageDraw.Draw(img)
    d.rectangle((30, 120, 290, 180), fill=(40, 40, 45))
    d.rectangle((200, 180, 250, 280), fill=(70, 70, 70))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def run_level(url: str, key: str, clients: int, total: int, image: bytes) -> dict:
    """`total` requests spread over `clients` threads; latency of each successful one."""
    import httpx

    lat: list[float] = []
    codes: dict[int, int] = {}
    lock = threading.Lock()
    todo = iter(range(total))

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            while True:
                with lock:
                    if next(todo, None) is None:
                        return
                t0 = time.perf_counter()
                r = http.post("/v1/search", files={"image": ("q.png", image)},
                              data={"k": "10"}, headers={"X-API-Key": key})  # fmt: skip
                dt = time.perf_counter() - t0
                with lock:
                    codes[r.status_code] = codes.get(r.status_code, 0) + 1
                    if r.status_code == 200:
                        lat.append(dt)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    arr = np.array(lat) * 1000.0
    return {"clients": clients, "requests": total, "ok": len(lat), "codes": codes,
            "p50": float(np.percentile(arr, 50)) if len(arr) else float("nan"),
            "p99": float(np.percentile(arr, 99)) if len(arr) else float("nan"),
            "rps": len(lat) / wall, "wall": wall}  # fmt: skip


def main() -> int:
    """Build, serve, load, report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=40, help="requests per concurrency level")
    ap.add_argument("--threads", type=int, default=2, help="torch threads in the service")
    ap.add_argument("--queue-size", type=int, default=32)
    ap.add_argument("--levels", default="1,4,16")
    ap.add_argument("--write", action="store_true", help="write docs/benchmarks.md section 'http'")
    args = ap.parse_args()

    host_info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "gallery"
        t0 = time.perf_counter()
        build_gallery(root, args.items)
        print(f"built {args.items}-item gallery in {time.perf_counter() - t0:.1f} s")
        key = KeyStore(state_db_path(root)).create("bench", "station")[1]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "GUNMATCH_THREADS": str(args.threads)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunmatch.cli", "serve", "--gallery", str(root), "--port",
             str(port), "--queue-size", str(args.queue_size), "--log-level", "warning"],
            env=env,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            import httpx

            for _ in range(600):
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            image = query_png()
            run_level(url, key, 1, 3, image)  # warm-up
            rows = []
            for c in (int(x) for x in args.levels.split(",")):
                res = run_level(url, key, c, max(args.requests, 2 * c), image)
                rows.append(res)
                print(f"{c:>3} clients: p50 {res['p50']:.0f} ms, p99 {res['p99']:.0f} ms, "
                      f"{res['rps']:.2f} req/s, codes {res['codes']}")  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    cmd = (
        f".venv/bin/python -m benchmarks.http_load --items {args.items} --requests "
        f"{args.requests} --threads {args.threads} --queue-size {args.queue_size} --write"
    )
    lines = [
        "## HTTP service: POST /v1/search",
        "",
        f"Gallery: {args.items:,} items (random unit vectors, flat index); query: a 320x320 "
        f"PNG, k=10; service: `gunmatch serve`, {args.threads} torch threads, 1 embedding "
        f"worker, queue size {args.queue_size}; clients: httpx threads on the same machine.",
        "",
        "| concurrent clients | requests | ok | p50 latency (ms) | p99 latency (ms) | "
        "throughput (req/s) | status codes |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(f"| {r['clients']} | {r['requests']} | {r['ok']} | {r['p50']:.0f} | "
                     f"{r['p99']:.0f} | {r['rps']:.2f} | {r['codes']} |")  # fmt: skip
    lines += ["", f"Command: `{cmd}`", "", f"Machine: {host_info}"]
    md = "\n".join(lines)
    print(md)
    if args.write:
        print(f"wrote {write_section('http', md)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
