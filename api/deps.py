"""Dependencies handed to routes: the service container, the engine in use, the caller's key."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, Header, HTTPException, Request, UploadFile

from api.embedding import EmbeddingQueue
from api.errors import UploadTooLargeError
from api.metrics import Metrics
from api.runtime import EngineHolder, EngineSlot
from gunmatch.settings import Settings
from gunmatch.state import ApiKey, AuditLog, KeyStore, role_allows
from index.feedback import FeedbackStore
from matcher.images import CorruptImageError

SESSION_COOKIE = "gunmatch_key"


@dataclass
class Services:
    """Everything the lifespan opened; one per app."""

    settings: Settings
    state_dir: Path
    holder: EngineHolder
    keys: KeyStore
    audit: AuditLog
    feedback: FeedbackStore
    queue: EmbeddingQueue
    metrics: Metrics

    def close(self) -> None:
        """Release everything (lifespan shutdown)."""
        self.queue.close()
        self.holder.close()
        self.keys.close()
        self.audit.close()
        self.feedback.close()


def get_services(request: Request) -> Services:
    """The app's service container."""
    services = getattr(request.app.state, "services", None)
    if services is None:
        raise HTTPException(503, "the service is still starting", headers={"Retry-After": "2"})
    return services


def engine_slot(services: Services = Depends(get_services)) -> Iterator[EngineSlot]:
    """The engine for this request; kept open until the request ends even across a reload."""
    if not services.holder.ready:
        raise HTTPException(503, "the model is still loading", headers={"Retry-After": "2"})
    with services.holder.acquire() as slot:
        yield slot


def require(role: str) -> Callable[..., ApiKey]:
    """A dependency admitting keys with at least ``role`` (401 without a key, 403 below it)."""

    def check(
        request: Request,
        x_api_key: str | None = Header(None, alias="X-API-Key"),
        services: Services = Depends(get_services),
    ) -> ApiKey:
        secret = x_api_key or request.cookies.get(SESSION_COOKIE)
        if not secret:
            raise HTTPException(
                401,
                "missing API key: send it in the X-API-Key header or sign in",
                headers={"WWW-Authenticate": "ApiKey"},
            )
        key = services.keys.authenticate(secret)
        if key is None:
            raise HTTPException(
                401, "invalid or revoked API key", headers={"WWW-Authenticate": "ApiKey"}
            )
        if not role_allows(key.role, role):
            raise HTTPException(
                403, f"this needs the '{role}' role; key '{key.name}' has role '{key.role}'"
            )
        return key

    check.__name__ = f"require_{role}"
    return check


async def read_upload(file: UploadFile, limit: int) -> io.BytesIO:
    """The upload's bytes as a named stream (error messages name the file), within ``limit``."""
    name = file.filename or "upload"
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise UploadTooLargeError(
            f"{name}: larger than the upload limit of {limit / 1e6:.0f} MB ({limit} bytes)"
        )
    if not data:
        raise CorruptImageError(f"{name}: the uploaded file is empty")
    stream = io.BytesIO(data)
    stream.name = name
    return stream
