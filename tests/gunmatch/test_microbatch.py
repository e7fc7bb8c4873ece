"""Micro-batching: concurrent requests share forward passes and each gets its own rows back."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
import torch

from gunmatch.microbatch import MicroBatcher


class Recorder:
    """A fake model: row i -> [sum of its pixels, batch size]; records batch sizes."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        with self.lock:
            self.sizes.append(len(x))
        sums = x.flatten(1).sum(1).numpy()
        return np.stack([sums, np.full(len(x), len(x), np.float32)], axis=1)


def tensors(i: int, n: int = 1) -> torch.Tensor:
    return torch.full((n, 3, 4, 4), float(i))


def test_concurrent_requests_share_a_pass_and_get_their_own_result():
    fn = Recorder()
    results: dict[int, np.ndarray] = {}
    start = threading.Barrier(8)
    with MicroBatcher(fn, max_batch=32, max_wait_ms=200) as mb:

        def client(i: int) -> None:
            start.wait()
            results[i] = mb.embed(tensors(i, n=1 + i % 3), timeout=30)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for i, out in results.items():
        n = 1 + i % 3
        assert out.shape == (n, 2)
        np.testing.assert_allclose(out[:, 0], i * 48.0)  # its own images, in order
    assert sum(fn.sizes) == sum(1 + i % 3 for i in range(8))
    assert max(fn.sizes) > 3  # some requests shared one forward pass
    assert mb.stats.requests == 8 and mb.stats.batches == len(fn.sizes)


def test_max_batch_is_respected():
    fn = Recorder()
    with MicroBatcher(fn, max_batch=4, max_wait_ms=50) as mb:
        futures = [mb.submit(tensors(i, 2)) for i in range(6)]
        outs = [f.result(timeout=30) for f in futures]
    assert max(fn.sizes) <= 4
    assert [o[0, 0] for o in outs] == [i * 48.0 for i in range(6)]


def test_different_input_sizes_are_not_mixed():
    fn = Recorder()
    with MicroBatcher(fn, max_wait_ms=50) as mb:
        a = mb.submit(torch.ones(1, 3, 4, 4))
        b = mb.submit(torch.ones(2, 3, 5, 5))
        assert a.result(30)[0, 0] == 48.0 and b.result(30)[0, 0] == 75.0
    assert sorted(fn.sizes) == [1, 2]


def test_a_failure_reaches_every_caller_of_that_batch_only():
    calls = []

    def flaky(x: torch.Tensor) -> np.ndarray:
        calls.append(len(x))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return np.zeros((len(x), 1), np.float32)

    with MicroBatcher(flaky, max_wait_ms=100) as mb:
        f1, f2 = mb.submit(tensors(1)), mb.submit(tensors(2))
        for f in (f1, f2):
            with pytest.raises(RuntimeError, match="boom"):
                f.result(30)
        assert mb.embed(tensors(3), timeout=30).shape == (1, 1)


def test_close_finishes_queued_work_then_refuses():
    fn = Recorder()
    mb = MicroBatcher(fn, max_batch=1, max_wait_ms=0)
    futures = [mb.submit(tensors(i)) for i in range(5)]
    mb.close()
    assert all(f.done() for f in futures) and len(fn.sizes) == 5
    with pytest.raises(RuntimeError, match="closed"):
        mb.submit(tensors(0))


def test_async_and_bad_input():
    fn = Recorder()
    with MicroBatcher(fn, max_wait_ms=20) as mb:

        async def both():
            return await asyncio.gather(mb.embed_async(tensors(1)), mb.embed_async(tensors(2)))

        a, b = asyncio.run(both())
        assert a[0, 0] == 48.0 and b[0, 0] == 96.0
        with pytest.raises(ValueError):
            mb.submit(torch.ones(3, 4, 4))
    with pytest.raises(ValueError):
        MicroBatcher(fn, max_batch=0)
