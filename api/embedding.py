"""Embedding off the event loop, behind a bounded queue: full queue -> QueueFullError (503).

This is the one place requests reach the model; a micro-batcher can replace ``EmbeddingQueue``
as long as it keeps ``embed`` / ``run`` / ``depth`` / ``close``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import numpy as np
import torch

from gunmatch.microbatch import MicroBatcher
from gunmatch.service import Engine
from matcher.images import ImageSource
from matcher.preprocess import check_modality

T = TypeVar("T")
# The queue whose reservation the current request holds (see EmbeddingQueue.reserve).
_HELD: ContextVar[EmbeddingQueue | None] = ContextVar("gunmatch_queue_held", default=None)


class QueueFullError(RuntimeError):
    """Too many embedding jobs waiting; the client should retry later."""

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__("the service is busy: too many images waiting to be processed")
        self.retry_after = retry_after


class EmbeddingQueue:
    """A thread pool with at most ``workers + queue_size`` jobs admitted at once.

    With ``microbatch_ms > 0`` images are decoded in the pool and their forward passes are
    coalesced by a MicroBatcher: requests arriving within that window share one batch.
    """

    def __init__(
        self,
        workers: int = 1,
        queue_size: int = 8,
        microbatch_ms: float = 0.0,
        max_batch: int = 32,
        on_reject: Callable[[], None] | None = None,
    ) -> None:
        self.workers = workers
        self.on_reject = on_reject
        self.capacity = workers + queue_size
        self.microbatch_ms = microbatch_ms
        self.max_batch = max_batch
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="embed")
        self._admitted = 0
        self._lock = threading.Lock()
        self._batcher: tuple[int, MicroBatcher] | None = None

    @contextmanager
    def _admit(self) -> Iterator[None]:
        if _HELD.get() is self:  # admitted already, as part of a reserved sequence
            yield
            return
        with self._lock:
            if self._admitted >= self.capacity:
                if self.on_reject is not None:
                    self.on_reject()
                raise QueueFullError()
            self._admitted += 1
        try:
            yield
        finally:
            with self._lock:
                self._admitted -= 1

    def _batcher_for(self, engine: Engine) -> MicroBatcher:
        """One batcher per embedder; a reloaded engine gets a fresh one."""
        with self._lock:
            key = id(engine.embedder)
            if self._batcher is None or self._batcher[0] != key:
                old = self._batcher
                batcher = MicroBatcher(
                    engine.embedder.embed_tensors, self.max_batch, self.microbatch_ms
                )
                self._batcher = (key, batcher)
                if old is not None:
                    old[1].close()
            return self._batcher[1]

    @contextmanager
    def reserve(self) -> Iterator[None]:
        """Admit the jobs this request runs inside the block as one: refused now, or never.

        A batch reserves once and runs its images one after another on that place, so it is
        answered whole or refused (503) before any image is searched or audited.
        """
        with self._admit():
            token = _HELD.set(self)
            try:
                yield
            finally:
                _HELD.reset(token)

    @property
    def depth(self) -> int:
        """Jobs admitted and not yet finished (running + waiting)."""
        return self._admitted

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU-heavy ``fn(*args)`` in the pool, or raise QueueFullError at once."""
        with self._admit():
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, lambda: fn(*args))

    async def embed(
        self, engine: Engine, sources: Sequence[ImageSource], modality: str
    ) -> np.ndarray:
        """Decode, preprocess and embed images -> (n, d) unit vectors."""
        mod = check_modality(modality)
        return await self.embed_batch(
            engine, lambda: torch.stack([engine.embedder.prepare(s, mod) for s in sources])
        )

    async def embed_batch(
        self, engine: Engine, make_batch: Callable[[], torch.Tensor]
    ) -> np.ndarray:
        """Embed the (n, 3, s, s) batch ``make_batch()`` builds (in the pool) -> (n, d)."""
        if self.microbatch_ms <= 0:
            return await self.run(lambda: engine.embedder.embed_tensors(make_batch()))
        with self._admit():
            loop = asyncio.get_running_loop()
            tensors = await loop.run_in_executor(self._pool, make_batch)
            return await self._batcher_for(engine).embed_async(tensors)

    def close(self) -> None:
        """Stop the workers (waits for running jobs)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._batcher is not None:
            self._batcher[1].close()
