"""The service's own state, next to (or apart from) the gallery: API keys and the audit log.

Both live in ``<state_dir>/state.sqlite`` (with ``index.feedback``'s table); query images kept
for the audit trail go under ``<state_dir>/queries/``.
"""

from pathlib import Path

from gunmatch.state.audit import AuditLog, AuditRecord, VerifyReport
from gunmatch.state.keys import ROLES, ApiKey, KeyStore, role_allows

STATE_DB = "state.sqlite"


def state_db_path(state_dir: str | Path) -> Path:
    """The SQLite file holding keys, audit log and feedback."""
    return Path(state_dir) / STATE_DB


__all__ = [
    "ROLES",
    "STATE_DB",
    "ApiKey",
    "AuditLog",
    "AuditRecord",
    "KeyStore",
    "VerifyReport",
    "role_allows",
    "state_db_path",
]
