"""Embedding inference paths: images/s at batch 1 and 32, and top-1 agreement with float32.

Run ``python -m benchmarks.embedding`` (or ``gunmatch bench embedding``); writes the
"embedding" section of docs/benchmarks.md. Agreement: every image of
../shared/data/weapon-types (gallery/ and queries/) is embedded by the float32 torch reference
and by each path; a path agrees on a query when its top-1 gallery match (cosine) is the same
one. ``symmetric`` embeds both sides with the path; ``mixed`` searches a float32 gallery with
path-embedded queries (a gallery built before switching paths). A path is accepted when both
are >= 0.99.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from benchmarks.report import git_rev, machine, write_section
from benchmarks.timing import load_average, table, time_calls
from gunmatch.allocator import hold_freed_memory
from matcher.fast import MIN_AGREEMENT, RuntimeOptions, create_runner, top1_agreement
from matcher.images import load_image
from matcher.model import build_pretrained
from matcher.preprocess import preprocess

log = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "weapon-types"
# torch_bf16 is registered but not run by default: this CPU has no AVX512-BF16, autocast
# falls back to slow emulation (a probe took seconds per image under load).
PATHS = ("torch", "onnx", "onnx_int8")
GMAC = {"efficientnet_lite0": 0.40, "efficientnet_lite2": 0.90}  # per image at native size
# AVX2 (this CPU reports fma/avx2, no AVX-512): 2 FMA ports x 8 fp32 lanes = 16 MAC/cycle/core.
MAC_PER_CYCLE = 16


def cpu_ghz() -> float:
    """Nominal clock from /proc/cpuinfo (nan if unknown)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) / 1e3
    except (OSError, ValueError):
        pass
    return float("nan")


def arithmetic_limit_ms(backbone: str, threads: int) -> float:
    """Milliseconds per image if every core ran fp32 FMAs at full width all the time."""
    return GMAC[backbone] / (threads * cpu_ghz() * MAC_PER_CYCLE) * 1e3


def image_files(root: Path, split: str, limit: int | None) -> list[Path]:
    """Image files of one split, sorted, at most ``limit`` spread evenly."""
    files = sorted(p for p in (root / split).rglob("*") if p.suffix.lower() in {".jpg", ".png"})
    if limit and len(files) > limit:
        files = [files[i] for i in np.linspace(0, len(files) - 1, limit).astype(int)]
    return files


def preprocess_files(files: Sequence[Path], model) -> torch.Tensor:
    """Decode + photo preprocessing, as the embedder does it."""
    cfg = model.config.preprocess
    return torch.stack([preprocess(load_image(p), "photo", cfg) for p in files])


def embed_all(run, x: torch.Tensor, batch: int = 32) -> np.ndarray:
    """Embed a tensor stack in batches with a runner."""
    return np.concatenate([run(x[i : i + batch]) for i in range(0, len(x), batch)])


def measure_speed(run, size: int, batch: int, repeats: int) -> tuple[float, float]:
    """(median ms per batch, images/s) on random input."""
    x = torch.rand(batch, 3, size, size)
    t = time_calls(lambda _: run(x), repeats, warmup=2)
    return t.p50, batch / (t.p50 / 1e3)


def run(
    quick: bool = False,
    threads: int = 2,
    backbones: Sequence[str] = ("efficientnet_lite0", "efficientnet_lite2"),
    paths: Sequence[str] = PATHS,
    data: Path = DATA,
    limit: int | None = None,
    command: str = "python -m benchmarks.embedding",
) -> str:
    """Measure every path; return the section's markdown."""
    started, commit = machine(), git_rev()  # the load, time and code at its start
    torch.set_num_threads(threads)
    hold_freed_memory()  # as every gunmatch command does
    reps1, reps32 = (5, 2) if quick else (30, 6)
    limit = limit or (40 if quick else None)
    load0, rows, notes = load_average(), [], []
    have_data = (data / "gallery").is_dir() and (data / "queries").is_dir()
    for bb in backbones:
        model = build_pretrained(bb)
        size = model.config.preprocess.input_size
        agree_on = bb == backbones[0] and have_data  # agreement on the default backbone
        if agree_on:
            t0 = time.perf_counter()
            gal = preprocess_files(image_files(data, "gallery", limit), model)
            qry = preprocess_files(image_files(data, "queries", limit), model)
            notes.append(
                f"{bb}: {len(gal)} gallery + {len(qry)} query images preprocessed in "
                f"{time.perf_counter() - t0:.0f} s"
            )
            calib = gal[:: max(1, len(gal) // 64)][:64]
        ref = None
        limit_ms = arithmetic_limit_ms(bb, threads)
        base1 = base32 = None
        for path in paths:
            opts = RuntimeOptions(calibration=calib if agree_on else torch.rand(16, 3, size, size))
            try:
                runner = create_runner(model, path, threads, opts)
            except (RuntimeError, ValueError, OSError, ImportError) as exc:
                rows.append([bb, path, "failed", "", "", "", "", "", str(exc)[:60]])
                continue
            ms1, _ = measure_speed(runner, size, 1, reps1)
            ms32, ips32 = measure_speed(runner, size, 32, reps32)
            base1 = base1 or ms1
            base32 = base32 or ips32
            sym = mixed = "n/a"
            verdict = "reference" if path == "torch" else "not checked"
            if agree_on:
                g, q = embed_all(runner, gal), embed_all(runner, qry)
                if ref is None:
                    ref = (g, q)
                s, m = top1_agreement(*ref, g, q), top1_agreement(*ref, ref[0], q)
                sym, mixed = f"{s:.4f}", f"{m:.4f}"
                if path != "torch":
                    ok = min(s, m) >= MIN_AGREEMENT
                    verdict = "accepted" if ok else f"rejected (< {MIN_AGREEMENT})"
            log.info("%s %s b1 %.1f ms b32 %.1f img/s %s %s", bb, path, ms1, ips32, sym, mixed)
            rows.append(
                [
                    bb,
                    path,
                    f"{ms1:.1f}",
                    f"{base1 / ms1:.2f}x",
                    f"{ips32:.1f}",
                    f"{ips32 / base32:.2f}x",
                    f"{(1e3 / ips32) / limit_ms:.1f}x",
                    f"{sym} / {mixed}",
                    verdict,
                ]
            )
    header = [
        "backbone",
        "path",
        "batch-1 p50 ms",
        "vs torch",
        "batch-32 images/s",
        "vs torch",
        "ms/image vs arithmetic limit",
        "top-1 agreement sym / mixed",
        "verdict",
    ]
    limits = ", ".join(f"{b} {arithmetic_limit_ms(b, threads):.1f} ms" for b in backbones)
    return "\n".join(
        [
            "## Embedding inference paths",
            "",
            f"Command: `{command}`  ",
            f"Machine: {started}  ",
            f"Commit: {commit}; threads {threads}; load average before/after: "
            f"{load0:.2f} / {load_average():.2f}",
            "",
            "Speed on random preprocessed input (preprocessing excluded), medians. Agreement "
            f"on weapon-types (see benchmarks/embedding.py docstring); accepted at >= "
            f"{MIN_AGREEMENT}. Arithmetic limit per image at {threads} cores x "
            f"{cpu_ghz():.2f} GHz x {MAC_PER_CYCLE} fp32 MAC/cycle (AVX2 FMA): {limits}.",
            "",
            table(header, rows),
            "",
            *[f"- {n}" for n in notes],
            f"- Agreement is checked on the default backbone ({backbones[0]}) only"
            + ("" if have_data else f"; {data} was absent, so no path was checked")
            + ".",
            "- int8 is calibrated on 64 gallery images (QDQ, per-channel weights, uint8 "
            "activations); bf16 is torch autocast.",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the embedding benchmark and write its section."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="few images and repeats (smoke test)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--paths", default=",".join(PATHS))
    p.add_argument("--backbones", default="efficientnet_lite0,efficientnet_lite2")
    p.add_argument("--limit", type=int, default=None, help="images per split for agreement")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cmd = "python -m benchmarks.embedding" + (" " + " ".join(argv) if argv else "")
    md = run(
        args.quick,
        args.threads,
        args.backbones.split(","),
        args.paths.split(","),
        limit=args.limit,
        command=cmd.strip(),
    )
    print(md if args.no_write else write_section("embedding", md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
