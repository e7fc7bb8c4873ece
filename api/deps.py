"""Dependencies handed to routes: the service container, the engine in use, the caller's key."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Depends, HTTPException, Request, Security, UploadFile
from fastapi.security import APIKeyCookie, APIKeyHeader

from api.auth import (
    API_KEY_HEADER,
    PRINCIPAL_SCOPE_KEY,
    SESSION_COOKIE,
    Principal,
    authenticate,
    check_csrf,
    client_of,
)
from api.embedding import EmbeddingQueue
from api.errors import UploadTooLargeError
from api.metrics import Metrics
from api.runtime import EngineHolder, EngineSlot
from api.throttle import FailedAuthThrottle
from gunmatch.adapt import AdaptJob
from gunmatch.settings import Settings
from gunmatch.state import ApiKey, AuditLog, KeyStore, ServiceState, SessionStore, role_allows
from index.feedback import FeedbackStore
from matcher.images import CorruptImageError

# Declared in OpenAPI as the two security schemes (either one authenticates).
KEY_SCHEME = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, scheme_name="ApiKey")
COOKIE_SCHEME = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, scheme_name="Session")


@dataclass
class Services:
    """Everything the lifespan opened; one per app."""

    settings: Settings
    state_dir: Path
    holder: EngineHolder
    keys: KeyStore
    sessions: SessionStore
    audit: AuditLog
    feedback: FeedbackStore
    queue: EmbeddingQueue
    metrics: Metrics
    throttle: FailedAuthThrottle
    adapt: AdaptJob = field(default_factory=AdaptJob)
    state: ServiceState | None = None  # opened the four stores above; closes them

    def close(self) -> None:
        """Release everything (lifespan shutdown). A running adaptation is not waited for:
        it installs its map atomically or not at all."""
        self.queue.close()
        self.holder.close()
        if self.state is not None:
            self.state.close()
            return
        for store in (self.keys, self.sessions, self.audit, self.feedback):
            store.close()


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
    """A dependency admitting keys with at least ``role`` (401 without a key, 403 below it,
    429 after too many failures, 403 for a cross-site write signed in only by cookie)."""

    def check(
        request: Request,
        api_key: str | None = Security(KEY_SCHEME),
        token: str | None = Security(COOKIE_SCHEME),
        services: Services = Depends(get_services),
    ) -> ApiKey:
        principal: Principal | None = request.scope.get(PRINCIPAL_SCOPE_KEY)
        if principal is None:  # no body, so the request guard did not look
            principal = authenticate(
                services.keys, services.sessions, services.throttle,
                api_key, token, client_of(request.scope),
            )  # fmt: skip
        check_csrf(request.scope, request.headers, principal, services.settings.allowed_origins)
        key = principal.key
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
