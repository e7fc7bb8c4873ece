"""The service's own state, next to (or apart from) the gallery: API keys, sign-in sessions
and the audit log.

All live in ``<state_dir>/state.sqlite`` (with ``index.feedback``'s table), or, for a gallery
kept in PostgreSQL, in its schema (``backend.py``: ``open_state`` picks); query images kept
for the audit trail go under ``<state_dir>/queries/``; the audit chain's secret lives outside
both (``secret.py``).
"""

from pathlib import Path

from gunmatch.state.audit import AuditLog, AuditRecord, VerifyReport
from gunmatch.state.backend import (
    STATE_DB,
    ServiceState,
    StateLocation,
    open_state,
    state_location,
)
from gunmatch.state.keys import (
    ROLES,
    ApiKey,
    DuplicateKeyError,
    KeyStore,
    LastAdminError,
    check_name,
    printable,
    role_allows,
)
from gunmatch.state.secret import AuditKeyring, AuditSecretError, load_keyring
from gunmatch.state.sessions import Session, SessionStore


def state_db_path(state_dir: str | Path) -> Path:
    """The SQLite file holding keys, audit log and feedback."""
    return Path(state_dir) / STATE_DB


__all__ = [
    "ROLES",
    "STATE_DB",
    "ApiKey",
    "AuditKeyring",
    "AuditLog",
    "AuditRecord",
    "AuditSecretError",
    "DuplicateKeyError",
    "KeyStore",
    "LastAdminError",
    "ServiceState",
    "Session",
    "SessionStore",
    "StateLocation",
    "VerifyReport",
    "check_name",
    "load_keyring",
    "open_state",
    "printable",
    "role_allows",
    "state_location",
    "state_db_path",
]
