"""The service's embedding queue with micro-batching: each request gets its own vectors."""

import asyncio
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from api.embedding import EmbeddingQueue, QueueFullError


class FakeEmbedder:
    """prepare(): a constant image per source value; embed_tensors(): records batch sizes."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.lock = threading.Lock()

    def prepare(self, source, modality):
        return torch.full((3, 4, 4), float(source))

    def embed_tensors(self, batch: torch.Tensor) -> np.ndarray:
        with self.lock:
            self.batches.append(len(batch))
        v = batch.mean(dim=(1, 2, 3)).numpy()[:, None]
        return np.hstack([v, np.ones_like(v)]).astype(np.float32)

    def embed(self, sources, modality):
        return self.embed_tensors(torch.stack([self.prepare(s, modality) for s in sources]))


def _run(queue, engine, values):
    async def main():
        return await asyncio.gather(*(queue.embed(engine, [v], "photo") for v in values))

    return asyncio.run(main())


@pytest.mark.parametrize("microbatch_ms", [0.0, 20.0])
def test_each_request_gets_its_own_vectors(microbatch_ms):
    emb = FakeEmbedder()
    engine = SimpleNamespace(embedder=emb)
    queue = EmbeddingQueue(workers=2, queue_size=16, microbatch_ms=microbatch_ms, max_batch=8)
    values = [float(i) for i in range(8)]
    try:
        out = _run(queue, engine, values)
    finally:
        queue.close()
    assert [float(o[0, 0]) for o in out] == values
    assert sum(emb.batches) == 8
    if microbatch_ms:
        assert max(emb.batches) > 1  # requests within the window shared a forward pass
    else:
        assert set(emb.batches) == {1}


def test_microbatched_queue_still_refuses_when_full():
    engine = SimpleNamespace(embedder=FakeEmbedder())
    queue = EmbeddingQueue(workers=1, queue_size=0, microbatch_ms=5.0)
    queue._admitted = queue.capacity
    try:
        with pytest.raises(QueueFullError):
            _run(queue, engine, [1.0])
    finally:
        queue.close()
