"""`gunmatch serve --gallery DIR [--host 127.0.0.1] [--port 8000] [--state DIR]`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import uvicorn

from api.app import ServiceConfig, create_app
from gunmatch.commands.common import UsageError, add_gallery_arg, gallery_dir, out
from gunmatch.settings import get_settings

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `serve` command."""
    p = sub.add_parser("serve", help="run the HTTP service and web form")
    add_gallery_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--state", type=Path, help="state directory (default: the gallery directory)")
    p.add_argument("--threads", type=int, help="CPU threads for the model")
    p.add_argument("--queue-size", type=int, help="embedding jobs waiting before 503")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    # The service holds freed memory itself and hands it back now and then (api.app): held
    # for good, a soak's resident memory grew 15% in 30 minutes against the vectors' 6%
    # (gunmatch/allocator.py), the blocks a growing index outgrows kept.
    p.set_defaults(func=cmd_serve, hold_memory=False)


def cmd_serve(args: argparse.Namespace) -> int:
    """Start uvicorn with the app; SIGHUP reloads model and calibration."""
    if not 0 < args.port < 65536:
        raise UsageError("--port must be 1..65535")
    gdir = gallery_dir(args)
    if not (gdir / "manifest.json").is_file():
        raise ValueError(f"{gdir} is not a gallery (no manifest.json)")
    settings = get_settings(threads=args.threads, queue_size=args.queue_size)
    cfg = ServiceConfig(gdir, args.state, settings, handle_sighup=True, manage_memory=True)
    out(f"gunmatch: serving {gdir} on http://{args.host}:{args.port} (API docs at /docs)")
    uvicorn.run(create_app(cfg), host=args.host, port=args.port, log_level=args.log_level)
    return 0
