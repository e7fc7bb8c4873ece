"""The one command, ``gunmatch``: subcommands map onto plain functions.

Exit codes: 0 success, 2 bad arguments, 1 other failure (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from gunmatch.allocator import hold_freed_memory
from gunmatch.commands.common import UsageError

# Each module exposes register(subparsers); its subcommands set ``func(args) -> int``.
COMMAND_MODULES = (
    "gunmatch.commands.gallery",
    "gunmatch.commands.search",
    "gunmatch.commands.demo",
    "gunmatch.commands.serve",
    "gunmatch.commands.keys",
    "gunmatch.commands.audit",
    "gunmatch.commands.train",
    "gunmatch.commands.evaluate",
    "gunmatch.commands.model",
    "gunmatch.commands.adapt",
    "gunmatch.commands.db",
)
# Other installed packages add command groups through this entry-point group (the packaged
# benchmarks add ``bench``); gunmatch itself never imports them.
PLUGIN_GROUP = "gunmatch.commands"


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = argparse.ArgumentParser(
        prog="gunmatch",
        description="Compare images of firearm components against a reference gallery.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for plugin in sorted(entry_points(group=PLUGIN_GROUP), key=lambda ep: ep.name):
        plugin.load().register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if getattr(args, "hold_memory", True):  # the commands' model passes; not the service
        hold_freed_memory()
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        parser.exit(2, f"gunmatch: error: {exc}\n")
    except KeyboardInterrupt:
        print("gunmatch: interrupted", file=sys.stderr)  # noqa: T201
        return 130
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        if args.verbose:
            logging.exception("command failed")
        msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"gunmatch: error: {msg}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
