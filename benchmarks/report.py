"""Write one named section of docs/benchmarks.md, leaving the other sections alone."""

from __future__ import annotations

import os
import platform
import re
import shlex
import subprocess
import time
from pathlib import Path

_REPO_DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
# From a checkout: its docs/benchmarks.md; from an installed wheel: docs/ under the cwd.
DOC = _REPO_DOC if _REPO_DOC.parent.is_dir() else Path("docs") / "benchmarks.md"
HEADER = "# Benchmarks\n\nEvery figure below was measured by the command shown with it.\n"


def machine() -> str:
    """A one-line description of the machine a figure was measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    try:
        import torch

        torch_v = torch.__version__
    except ImportError:  # pragma: no cover
        torch_v = "n/a"
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch_v}, "
        f"load average at start {load:.2f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


def begun() -> str:
    """The machine line of a long measurement, taken as it begins: its load average and time
    are the start's, and its commit is the code that ran (one made during the run is not)."""
    return f"{machine()}; commit {git_rev()}"


def git_rev() -> str:
    """Short commit id of the measured tree."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_section(name: str, body: str, doc: Path = DOC) -> Path:
    """Replace (or append) the section between BEGIN/END markers called ``name``."""
    doc.parent.mkdir(parents=True, exist_ok=True)
    text = doc.read_text() if doc.exists() else HEADER
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + f"\n\n{block}\n"
    doc.write_text(text)
    return doc


def command_line(module: str, argv: list[str] | None) -> str:
    """How a script run was invoked, for the section's Command line, quoted so it pastes."""
    return f".venv/bin/python -m {module} {shlex.join(argv or [])}".strip()


def publish(text: str, section: str, write: bool) -> None:
    """Print a script's section; with ``write``, also put it in docs/benchmarks.md."""
    print(text)  # noqa: T201
    if write:
        write_section(section, text)
