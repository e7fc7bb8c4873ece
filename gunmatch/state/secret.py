"""The audit chain's HMAC secrets: a 0600 file outside the gallery, one hex secret per line.

The last line signs new rows; earlier lines stay so that rows signed before a rotation can
still be verified. Each secret is known by its id (the first 16 hex digits of its SHA-256),
which rows and checkpoints record.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

SECRET_BYTES = 32


class AuditSecretError(ValueError):
    """The audit secret file is missing, unreadable, malformed or in the wrong place."""


def secret_id(secret: bytes) -> str:
    """A secret's public id (never the secret)."""
    return hashlib.sha256(secret).hexdigest()[:16]


@dataclass(frozen=True)
class AuditKeyring:
    """Every audit secret by id; ``current_id`` signs new rows."""

    secrets: dict[str, bytes]
    current_id: str

    @property
    def current(self) -> bytes:
        """The secret that signs new rows."""
        return self.secrets[self.current_id]

    def get(self, key_id: str) -> bytes | None:
        """The secret with that id, if this keyring holds it."""
        return self.secrets.get(key_id)


def _write_new(path: Path, text: str) -> None:
    """Create ``path`` (0600, parent 0700) with ``text``; fails if it already exists."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _parse(path: Path) -> AuditKeyring:
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    found: dict[str, bytes] = {}
    for ln in lines:
        try:
            raw = bytes.fromhex(ln)
        except ValueError:
            raise AuditSecretError(f"{path}: a line is not a hex secret") from None
        if len(raw) < 16:
            raise AuditSecretError(f"{path}: a secret is shorter than 16 bytes")
        found[secret_id(raw)] = raw
    if not lines:
        raise AuditSecretError(f"{path}: holds no secret")
    return AuditKeyring(found, secret_id(bytes.fromhex(lines[-1])))


def load_keyring(path: str | Path, create: bool = True) -> AuditKeyring:
    """The keyring at ``path``; created with one fresh secret (0600) when absent and ``create``."""
    path = Path(path).expanduser()
    if not path.exists():
        if not create:
            raise AuditSecretError(f"no audit secret at {path}")
        # Another process may create it first: then read theirs.
        with contextlib.suppress(FileExistsError):
            _write_new(path, secrets.token_hex(SECRET_BYTES) + "\n")
    if path.stat().st_mode & 0o077:
        raise AuditSecretError(
            f"{path} is readable by other users; run: chmod 600 {path}"
        )
    return _parse(path)


def rotate_secret(path: str | Path) -> AuditKeyring:
    """Append a fresh secret (it signs rows from now on); older ones stay for verification."""
    path = Path(path).expanduser()
    ring = load_keyring(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    with os.fdopen(fd, "a") as f:
        f.write(secrets.token_hex(SECRET_BYTES) + "\n")
        f.flush()
        os.fsync(f.fileno())
    new = _parse(path)
    if new.current_id == ring.current_id:
        raise AuditSecretError(f"{path}: rotation did not change the current secret")
    return new


def check_outside(path: str | Path, *dirs: str | Path) -> None:
    """Refuse a secret kept inside the gallery or state directory (copied along with them)."""
    p = Path(path).expanduser().resolve()
    for d in dirs:
        root = Path(d).expanduser().resolve()
        if p == root or root in p.parents:
            raise AuditSecretError(
                f"the audit secret {p} lies inside {root}; keep it elsewhere "
                "(GUNMATCH_AUDIT_SECRET_FILE)"
            )
