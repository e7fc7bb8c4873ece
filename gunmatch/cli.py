"""The one command, ``gunmatch``: subcommands map onto plain functions.

Exit codes: 0 success, 2 bad arguments, 1 other failure (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence

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
    "gunmatch.commands.bench",
)


class UsageError(Exception):
    """Bad arguments: exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = argparse.ArgumentParser(
        prog="gunmatch",
        description="Compare images of firearm components against a reference gallery.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is None:  # a command group not installed in this tree
            continue
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
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
