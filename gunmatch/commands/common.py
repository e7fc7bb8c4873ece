"""Argument helpers shared by subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gunmatch.settings import get_settings


def add_gallery_arg(p: argparse.ArgumentParser, required: bool = True) -> None:
    """--gallery DIR (falls back to GUNMATCH_GALLERY)."""
    p.add_argument("--gallery", type=Path, required=False, help="gallery directory")
    p.set_defaults(_gallery_required=required)


def gallery_dir(args: argparse.Namespace) -> Path:
    """The gallery directory from --gallery or GUNMATCH_GALLERY."""
    from gunmatch.cli import UsageError

    g = args.gallery or get_settings().gallery
    if g is None:
        raise UsageError("--gallery DIR is required (or set GUNMATCH_GALLERY)")
    return Path(g)


def add_runtime_args(p: argparse.ArgumentParser) -> None:
    """--threads and --batch-size."""
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the model")
    p.add_argument("--batch-size", type=int, default=None, help="images per forward pass")


def runtime(args: argparse.Namespace) -> dict:
    """threads/batch_size from flags, else settings."""
    s = get_settings(threads=args.threads, batch_size=args.batch_size)
    return {"threads": s.threads, "batch_size": s.batch_size}


def emit_json(obj: object) -> None:
    """One JSON object per line on stdout."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def out(line: str = "") -> None:
    """A line of human-readable output on stdout."""
    sys.stdout.write(line + "\n")
