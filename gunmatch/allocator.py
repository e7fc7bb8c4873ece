"""Keep the memory a process frees for its next model pass instead of handing it back.

glibc's malloc serves each block above its mmap threshold (128 KiB, raised by itself to at
most 32 MiB) with a fresh ``mmap`` and unmaps it when freed, and returns the free top of its
heap to the kernel past a trim threshold. A trunk pass over a 2-megapixel scan allocates and
frees hundreds of megabytes of activations, so each pass touched them as new pages: on 2
cores, 84,000 page faults and 0.24 s a cached scan, 0.15 s with freed memory kept for the
next pass, and an adapt run's peak resident memory rose 3% (benchmarks/notes/xray.md,
thirty-seventh session).

The price is that the heap keeps whatever it once held: a flat index grown one add at a time
from 2,000 to 11,000 vectors of 1,280 floats held 118 MB more instead of the vectors' 46,
since each larger copy of its storage leaves the smaller one freed but resident. A command
ends before that matters; the long-lived service (``gunmatch serve``) holds freed memory too
and hands what is free back every ``GUNMATCH_MEMORY_HAND_BACK_S`` (``hand_back_freed_memory``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
from collections.abc import Mapping

log = logging.getLogger(__name__)

# mallopt(3) parameters
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# Free memory at the heap's top kept for reuse before any is returned: a trunk pass over a
# 2-megapixel scan touched 330-440 MB of new pages.
KEPT_BYTES = 1 << 30
# glibc's own settings in the environment, which win over ours.
GLIBC_VARIABLES = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                   "MALLOC_TOP_PAD_")  # fmt: skip


def set_by_user(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment sets glibc's malloc itself (``MALLOC_*_`` or a
    ``glibc.malloc`` tunable)."""
    return any(v in environ for v in GLIBC_VARIABLES) or "glibc.malloc." in environ.get(
        "GLIBC_TUNABLES", ""
    )


def on_glibc() -> bool:
    """Whether this process runs on Linux with glibc, whose malloc ``mallopt`` sets."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def hold_freed_memory(kept_bytes: int = KEPT_BYTES) -> bool:
    """Serve every block from the heap and keep up to ``kept_bytes`` of its free top for
    reuse; True when done. Nothing changes outside glibc or where the environment sets
    glibc's malloc itself."""
    if not on_glibc() or set_by_user():
        return False
    try:
        libc = ctypes.CDLL(None)
        done = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, kept_bytes) == 1
    except (OSError, AttributeError):
        done = False
    if not done:
        log.warning("could not set glibc's malloc to keep freed memory; model passes run slower")
    return done


def hand_back_freed_memory() -> bool:
    """Return the free pages of every malloc arena to the kernel (``malloc_trim(0)``); True
    when any were. The next model pass touches the ones it needs as new pages again."""
    if not on_glibc():
        return False
    try:
        return ctypes.CDLL(None).malloc_trim(0) == 1
    except (OSError, AttributeError):
        return False
