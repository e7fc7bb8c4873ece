"""Keep secrets out of the access log: query parameters that carry keys or tokens are redacted."""

from __future__ import annotations

import logging
import re

ACCESS_LOGGER = "uvicorn.access"
SECRET_PARAMS = ("api_key", "apikey", "key", "token", "session", "password", "secret")
_SECRET_QUERY = re.compile(
    r"(?i)([?&](?:" + "|".join(SECRET_PARAMS) + r"|x-api-key)=)[^&#\s]*"
)


def redact(text: str) -> str:
    """``text`` with the values of secret-carrying query parameters replaced by ``***``."""
    return _SECRET_QUERY.sub(r"\1***", text)


class RedactSecretsFilter(logging.Filter):
    """A filter for the access logger: redacts its arguments (uvicorn logs the full path)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def install_redaction() -> RedactSecretsFilter:
    """Attach the filter to uvicorn's access logger; returns it (to remove on shutdown)."""
    f = RedactSecretsFilter()
    logging.getLogger(ACCESS_LOGGER).addFilter(f)
    return f


def remove_redaction(f: RedactSecretsFilter) -> None:
    """Detach a filter ``install_redaction`` attached."""
    logging.getLogger(ACCESS_LOGGER).removeFilter(f)
