"""Micro-batching: concurrent embedding requests arriving within a few ms share one forward pass.

A busy hub sends many single-image requests; one batch of 8 costs far less than 8 batches of
one. ``MicroBatcher`` runs one worker thread: it takes the first waiting request, gathers any
others that arrive within ``max_wait_ms`` (up to ``max_batch`` images), runs ``fn`` once on the
concatenation and hands each caller back exactly its own rows.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import torch

log = logging.getLogger(__name__)

BatchFn = Callable[[torch.Tensor], np.ndarray]


@dataclass
class _Request:
    tensors: torch.Tensor
    future: Future = field(default_factory=Future)


@dataclass
class BatchStats:
    """Counters for monitoring and tests."""

    requests: int = 0
    batches: int = 0
    images: int = 0
    largest: int = 0


class MicroBatcher:
    """Coalesce concurrent ``embed`` calls into shared calls of ``fn`` (n, 3, s, s) -> (n, d)."""

    def __init__(self, fn: BatchFn, max_batch: int = 32, max_wait_ms: float = 3.0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1e3
        self.stats = BatchStats()
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._closed = False
        self._worker = threading.Thread(target=self._loop, name="microbatch", daemon=True)
        self._worker.start()

    def submit(self, tensors: torch.Tensor) -> Future:
        """Queue (n, 3, s, s) tensors; the future resolves to their (n, d) vectors."""
        if self._closed:
            raise RuntimeError("the micro-batcher is closed")
        if tensors.ndim != 4 or len(tensors) == 0:
            raise ValueError(f"expected a non-empty (n, 3, s, s) batch, got {tuple(tensors.shape)}")
        req = _Request(tensors)
        self._queue.put(req)
        return req.future

    def embed(self, tensors: torch.Tensor, timeout: float | None = None) -> np.ndarray:
        """Blocking submit."""
        return self.submit(tensors).result(timeout)

    async def embed_async(self, tensors: torch.Tensor) -> np.ndarray:
        """Awaitable submit (for the HTTP service's event loop)."""
        return await asyncio.wrap_future(self.submit(tensors))

    def close(self) -> None:
        """Finish queued requests, then stop the worker."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._worker.join()

    def __enter__(self) -> MicroBatcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- worker ---------------------------------------------------------------------------
    def _loop(self) -> None:
        carry: _Request | None = None
        while True:
            first = carry or self._queue.get()
            carry = None
            if first is None:
                return
            group, n = [first], len(first.tensors)
            deadline = time.monotonic() + self.max_wait
            stop = False
            while n < self.max_batch:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                if nxt.tensors.shape[1:] != first.tensors.shape[1:] or n + len(nxt.tensors) > (
                    self.max_batch
                ):
                    carry = nxt  # different input size or too big: next batch
                    break
                group.append(nxt)
                n += len(nxt.tensors)
            self._run(group, n)
            if stop:
                if carry is not None:
                    self._run([carry], len(carry.tensors))
                self._drain()
                return

    def _drain(self) -> None:
        while True:
            try:
                req = self._queue.get_nowait()
            except queue.Empty:
                return
            if req is not None:
                self._run([req], len(req.tensors))

    def _run(self, group: list[_Request], n: int) -> None:
        live = [r for r in group if r.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            batch = live[0].tensors if len(live) == 1 else torch.cat([r.tensors for r in live])
            out = np.asarray(self.fn(batch))
            if len(out) != len(batch):
                raise RuntimeError(f"batch function returned {len(out)} rows for {len(batch)}")
        except Exception as exc:  # every caller in the batch sees the failure
            log.warning("micro-batch of %d images failed: %s", len(live), exc)
            for r in live:
                r.future.set_exception(exc)
            return
        self.stats.requests += len(live)
        self.stats.batches += 1
        self.stats.images += len(batch)
        self.stats.largest = max(self.stats.largest, len(batch))
        start = 0
        for r in live:
            stop = start + len(r.tensors)
            r.future.set_result(out[start:stop].copy())
            start = stop
