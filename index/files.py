"""Crash-safe replacement: files written beside the target then renamed; directories swapped."""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def atomic_replace(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)``, fsync it and rename it over ``path`` (all or nothing)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    atomic_replace(path, lambda tmp: Path(tmp).write_bytes(data))


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2); False where that is unsupported."""
    fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if fn is None:
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def swap_in(shadow_dir: Path, target: Path) -> None:
    """Replace the directory ``target`` by ``shadow_dir``.

    One atomic exchange where the kernel and file system allow it, so a reader never finds
    the path missing; otherwise two renames with the old directory kept until the second is done.
    """
    if exchange(shadow_dir, target):
        shutil.rmtree(shadow_dir, ignore_errors=True)  # now holds the old directory
        return
    backup = target.with_name(f"{target.name}.old-{int(time.time())}")
    os.replace(target, backup)
    try:
        os.replace(shadow_dir, target)
    except BaseException:
        os.replace(backup, target)
        raise
    shutil.rmtree(backup, ignore_errors=True)
