"""ImageNet baseline retrieval on the shared photo sets: gallery/ indexed, queries/ searched.

    python -m benchmarks.baseline_retrieval [--backbones efficientnet_lite0,efficientnet_lite2]

Writes the "retrieval" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.report import machine, write_section
from gunmatch.allocator import hold_freed_memory
from gunmatch.indexing import scan_source
from matcher import Embedder, build_pretrained

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def top1(embedder: Embedder, root: Path) -> tuple[float, float, int]:
    """(top-1 accuracy, seconds, number of queries) for one dataset."""
    gallery = scan_source(root / "gallery")
    queries = scan_source(root / "queries")
    start = time.perf_counter()
    g = embedder.embed([r.path for r in gallery])
    q = embedder.embed([r.path for r in queries])
    seconds = time.perf_counter() - start
    nearest = (q @ g.T).argmax(axis=1)
    correct = np.mean([gallery[j].label == queries[i].label for i, j in enumerate(nearest)])
    return float(correct), seconds, len(queries)


def main() -> None:
    """Measure and write the section."""
    started = machine()  # the load average and time at its start
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--backbones", default="efficientnet_lite0,efficientnet_lite2")
    ap.add_argument("--datasets", default="weapon-types,handgun-brands")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    hold_freed_memory()  # as every gunmatch command does
    rows = []
    for backbone in args.backbones.split(","):
        embedder = Embedder(build_pretrained(backbone), batch_size=32, threads=args.threads)
        for name in args.datasets.split(","):
            if not (DATA / name / "gallery").is_dir():
                continue
            acc, secs, n = top1(embedder, DATA / name)
            rows.append(f"| {backbone} | {name} | {n} | {acc:.3f} | {secs:.0f} |")
    body = "\n".join(
        [
            "## Retrieval accuracy of the bundled ImageNet models (GeM p=3, 224/260 px)",
            "",
            f"Machine: {started}",
            "",
            "Command: `python -m benchmarks.baseline_retrieval`",
            "",
            "| backbone | dataset | queries | top-1 | embed seconds (gallery+queries) |",
            "|---|---|---|---|---|",
            *rows,
        ]
    )
    write_section("retrieval", body)


if __name__ == "__main__":
    main()
