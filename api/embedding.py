"""Embedding off the event loop, behind a bounded queue: full queue -> QueueFullError (503).

This is the one place requests reach the model; a micro-batcher can replace ``EmbeddingQueue``
as long as it keeps ``embed`` / ``run`` / ``depth`` / ``close``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from gunmatch.service import Engine
from matcher.images import ImageSource

T = TypeVar("T")


class QueueFullError(RuntimeError):
    """Too many embedding jobs waiting; the client should retry later."""

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__("the service is busy: too many images waiting to be processed")
        self.retry_after = retry_after


class EmbeddingQueue:
    """A thread pool with at most ``workers + queue_size`` jobs admitted at once."""

    def __init__(self, workers: int = 1, queue_size: int = 8) -> None:
        self.workers = workers
        self.capacity = workers + queue_size
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="embed")
        self._admitted = 0
        self._lock = threading.Lock()

    @property
    def depth(self) -> int:
        """Jobs admitted and not yet finished (running + waiting)."""
        return self._admitted

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU-heavy ``fn(*args)`` in the pool, or raise QueueFullError at once."""
        with self._lock:
            if self._admitted >= self.capacity:
                raise QueueFullError()
            self._admitted += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, lambda: fn(*args))
        finally:
            with self._lock:
                self._admitted -= 1

    async def embed(
        self, engine: Engine, sources: Sequence[ImageSource], modality: str
    ) -> np.ndarray:
        """Decode, preprocess and embed images -> (n, d) unit vectors."""
        return await self.run(engine.embedder.embed, list(sources), modality)

    def close(self) -> None:
        """Stop the workers (waits for running jobs)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
