"""The FastAPI app: ``create_app(ServiceConfig)``; heavy things are opened in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.deps import Services
from api.embedding import EmbeddingQueue
from api.errors import install_error_handlers
from api.guard import RequestGuard, body_limit
from api.headers import SecurityHeadersMiddleware
from api.logs import install_redaction, remove_redaction
from api.metrics import Metrics, MetricsMiddleware
from api.routes import admin, audit, compare, feedback, gallery, health, keys, search, session, web
from api.runtime import EngineHolder, watch_reloads
from api.throttle import FailedAuthThrottle
from gunmatch.allocator import hand_back_freed_memory, hold_freed_memory
from gunmatch.service import Engine, open_engine
from gunmatch.settings import Settings, get_settings
from gunmatch.state import load_keyring, open_state
from gunmatch.state.secret import check_outside

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
PURGE_INTERVAL_S = 3600.0


@dataclass
class ServiceConfig:
    """What `gunmatch serve` (or a test) decides about one service instance."""

    gallery_dir: Path
    state_dir: Path | None = None
    settings: Settings = field(default_factory=get_settings)
    handle_sighup: bool = False
    # Hold the memory model passes free for the next pass and hand what is free back every
    # ``settings.memory_hand_back_s`` (gunmatch/allocator.py): the process-wide setting of
    # a process that is the service, not of one that merely runs the app (tests).
    manage_memory: bool = False
    opener: Callable[[Path], Engine] | None = None

    def open_engine(self, gallery_dir: Path) -> Engine:
        """Open the gallery with its own model, as configured."""
        if self.opener is not None:
            return self.opener(gallery_dir)
        s = self.settings
        return open_engine(
            gallery_dir,
            threads=s.threads,
            batch_size=s.batch_size,
            max_pixels=s.max_pixels,
            runtime=s.runtime,
        )


def _open_services(cfg: ServiceConfig, metrics: Metrics) -> Services:
    s = cfg.settings
    state_dir = Path(cfg.state_dir or s.state_dir or cfg.gallery_dir)
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_outside(s.audit_secret_file, cfg.gallery_dir, state_dir)
    keyring = load_keyring(s.audit_secret_file)
    screening = s.screening_config()
    holder = EngineHolder(cfg.gallery_dir, cfg.open_engine, s.calibration_file, screening)
    state = open_state(cfg.gallery_dir, state_dir, keyring)  # a shared gallery's: PostgreSQL
    try:
        stores = (state.keys, state.sessions, state.audit, state.feedback)
        # Read before the engine opens: a reload announced meanwhile is not missed.
        holder.seen_generation = state.reload_generation()
        holder.announce = state.request_reload if state.location.shared else None
        holder.start()
    except BaseException:
        state.close()
        raise
    engine = holder.current.engine
    metrics.set_model(engine.embedder.model_id)
    metrics.gallery_items.set(len(engine.gallery))
    queue = EmbeddingQueue(
        s.embed_workers, s.queue_size, s.microbatch_ms, s.batch_size, metrics.rejected.inc
    )
    throttle = FailedAuthThrottle(s.auth_fail_limit, s.auth_fail_window_s)
    return Services(s, state_dir, holder, *stores, queue, metrics, throttle, state=state)


async def _purge_loop(services: Services) -> None:
    """Drop kept query images past retention and long-dead sessions, now and then hourly."""
    while True:
        days = services.settings.audit_retention_days
        n = await asyncio.to_thread(services.audit.purge_images, days)
        if n:
            log.info("purged %d query images older than %d days", n, days)
        await asyncio.to_thread(services.sessions.purge_expired)
        await asyncio.sleep(PURGE_INTERVAL_S)


async def _hand_back_loop(interval_s: float) -> None:
    """Hand the memory freed since the last time back to the system every ``interval_s``."""
    while True:
        await asyncio.sleep(interval_s)
        await asyncio.to_thread(hand_back_freed_memory)


def memory_hand_back(cfg: ServiceConfig) -> asyncio.Task | None:
    """Hold freed memory and start handing it back periodically, where ``cfg`` asks for it
    and glibc's malloc is ours to set (``None`` otherwise: glibc's own way)."""
    interval = cfg.settings.memory_hand_back_s
    if not (cfg.manage_memory and interval > 0 and hold_freed_memory()):
        return None
    return asyncio.create_task(_hand_back_loop(interval))


def _install_sighup(services: Services) -> bool:
    """Reload on SIGHUP (only possible in the main thread of a Unix process)."""
    loop = asyncio.get_running_loop()

    def on_hup() -> None:
        log.warning("SIGHUP: reloading model and calibration")
        task = loop.create_task(services.holder.reload())
        task.add_done_callback(_after_reload(services))

    try:
        loop.add_signal_handler(signal.SIGHUP, on_hup)
    except (ValueError, RuntimeError, NotImplementedError, AttributeError):
        return False
    return True


def _after_reload(services: Services) -> Callable[[asyncio.Task], None]:
    def done(task: asyncio.Task) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("reload failed, still serving the previous model: %s", exc)
            return
        _reloaded(services)(task.result())

    return done


def _reloaded(services: Services) -> Callable:
    def update(slot) -> None:
        services.metrics.set_model(slot.engine.embedder.model_id)
        services.metrics.gallery_items.set(len(slot.engine.gallery))

    return update


def create_app(cfg: ServiceConfig) -> FastAPI:
    """The service app; nothing heavy happens until the lifespan starts."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await asyncio.to_thread(_open_services, cfg, metrics)
        app.state.services = services
        purge = asyncio.create_task(_purge_loop(services))
        watch = asyncio.create_task(
            watch_reloads(services.holder, services.state.reload_generation,
                          services.settings.reload_poll_s, _reloaded(services))
        ) if services.state.location.shared else None  # fmt: skip
        hand_back = memory_hand_back(cfg)
        hup = cfg.handle_sighup and _install_sighup(services)
        redaction = install_redaction()
        try:
            yield
        finally:
            remove_redaction(redaction)
            if hup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            for task in (purge, watch, hand_back):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            app.state.services = None
            await asyncio.to_thread(services.close)

    app = FastAPI(
        title="gunmatch",
        version="0.1.0",
        description="Compare images of firearm components against a reference gallery.",
        lifespan=lifespan,
        docs_url=None,  # served by routes/web.py from the package (no CDN)
        redoc_url=None,
    )
    app.state.services = None
    install_error_handlers(app)
    for module in (health, session, search, compare, gallery, feedback, keys, audit, admin, web):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    s = cfg.settings
    # Outermost last: headers on every response, metrics of every request (refusals too),
    # then the guard: key before body, every body capped while it streams in.
    app.add_middleware(RequestGuard, limit_for=lambda method, path: body_limit(method, path, s))
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(SecurityHeadersMiddleware)
    return app
