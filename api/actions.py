"""What one request does, between its route and the service functions: embed, search, audit.

Routes stay thin (validate, call one of these, shape the response); these keep blocking work
off the event loop (the model through the bounded ``EmbeddingQueue``, SQLite and files through
the thread pool) and write the audit row only after the work succeeded.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from dataclasses import dataclass, replace

from fastapi.concurrency import run_in_threadpool

from api.deps import Services
from api.errors import ConflictError
from api.runtime import EngineSlot
from gunmatch.decision import compare_verdict
from gunmatch.references import ReferenceMeta, add_reference, image_ext, item_similarity
from gunmatch.search import (
    SearchOptions,
    SearchOutcome,
    audit_search,
    decode_query,
    finish_search,
    new_query_id,
    query_tensor,
)
from gunmatch.state import ApiKey
from index import Filters, Match
from index.feedback import Feedback
from matcher.preprocess import check_modality

FEEDBACK_DIR = "feedback"


def query_modality(services: Services, slot: EngineSlot, modality: str | None) -> str:
    """The modality a request works in: the gallery's, or one it names that the gallery holds.

    Another modality than the gallery's is refused (422) unless the gallery is declared mixed
    (GUNMATCH_MIXED_MODALITY): its vectors would be compared with the wrong kind of image.
    """
    own = slot.engine.gallery.modality
    chosen = check_modality(modality or own)
    if chosen != own and not services.settings.mixed_modality:
        raise ValueError(
            f"modality {chosen!r} does not match this {own} gallery "
            "(declare the gallery mixed with GUNMATCH_MIXED_MODALITY=1 to allow it)"
        )
    return chosen


@dataclass
class Answer:
    """A search that is done but not yet audited (a batch audits only what it delivers)."""

    query_id: str
    name: str
    data: bytes
    outcome: SearchOutcome
    k: int
    start: float


async def run_search(
    services: Services,
    slot: EngineSlot,
    image: io.BytesIO,
    k: int,
    modality: str | None,
    filters: Filters,
    regions: bool | None = False,
) -> Answer:
    """Search and decide one uploaded image (``gunmatch.search``), without auditing it yet.

    The image is decoded once; its forward pass goes through the bounded embedding queue
    (shared with other requests), the rest runs in the same queue off the event loop.
    ``regions=None`` screens regions for X-ray queries only.
    """
    start = time.perf_counter()
    engine = slot.engine
    modality = query_modality(services, slot, modality)
    name = getattr(image, "name", "")
    opts = SearchOptions(k, modality, filters, regions, services.holder.screening)
    query = await services.queue.run(decode_query, engine, name, image, modality)
    vec = await services.queue.embed_batch(engine, lambda: query_tensor(engine, query)[None])
    # Region screening runs the model again: through the queue; a plain search does not.
    run = services.queue.run if opts.use_regions(query.modality) else run_in_threadpool
    outcome = await run(finish_search, engine, query, vec[0], opts, slot.judge)
    return Answer(new_query_id(), name, image.getvalue(), outcome, k, start)


async def deliver(services: Services, key: ApiKey, answer: Answer) -> dict:
    """Audit a finished search (keeping its image) and shape it as SearchOut."""
    data, outcome = answer.data, answer.outcome
    sha, history = await run_in_threadpool(
        audit_search, services.audit, key.name, answer.query_id, data, image_ext(data), outcome,
        answer.k,
    )  # fmt: skip
    return {
        "query_id": answer.query_id,
        "filename": answer.name,
        "sha256": sha,
        "model_id": outcome.model_id,
        "modality": outcome.modality,
        "elapsed_ms": round((time.perf_counter() - answer.start) * 1000.0, 2),
        "matches": outcome.matches_dicts(),
        "decision": outcome.decision.to_dict(),
        "history": history,
        "regions": outcome.regions_dicts(),
    }


async def search_one(
    services: Services,
    slot: EngineSlot,
    key: ApiKey,
    image: io.BytesIO,
    k: int,
    modality: str | None,
    filters: Filters,
    regions: bool | None = False,
) -> dict:
    """Search, decide and audit one uploaded image; the SearchOut shape."""
    answer = await run_search(services, slot, image, k, modality, filters, regions)
    return await deliver(services, key, answer)


async def compare(
    services: Services,
    slot: EngineSlot,
    key: ApiKey,
    image_a: io.BytesIO,
    image_b: io.BytesIO | None,
    item_id: str | None,
    modality: str | None,
) -> dict:
    """Similarity of two images, or of an image and a gallery item, with a verdict."""
    engine = slot.engine
    modality = query_modality(services, slot, modality)
    sources = [image_a] + ([image_b] if image_b is not None else [])
    if item_id:  # fail fast (404) before spending model time
        await run_in_threadpool(engine.gallery.get, item_id)
    vecs = await services.queue.embed(engine, sources, modality)
    item_out = None
    if image_b is not None:
        similarity = float(vecs[0] @ vecs[1])
        other = {"image_b_sha256": _sha(image_b.getvalue())}
    else:
        similarity, item = await run_in_threadpool(item_similarity, engine, vecs[0], item_id)
        item_out = Match(rank=1, item=item, score=similarity).to_dict()
        other = {"item_id": item.item_id}
    cal = slot.calibration
    verdict = compare_verdict(similarity, cal)
    query_id = new_query_id()

    def record() -> None:
        data = image_a.getvalue()
        sha, rel = services.audit.store_image(data, image_ext(data))
        services.audit.append(
            "compare",
            key.name,
            query_id,
            sha,
            rel,
            engine.embedder.model_id,
            verdict,
            {"similarity": round(similarity, 4), "modality": modality, **other},
        )

    await run_in_threadpool(record)
    return {
        "query_id": query_id,
        "similarity": round(similarity, 4),
        "verdict": verdict,
        "alert_threshold": cal.alert_threshold,
        "review_threshold": cal.review_threshold,
        "calibrated": cal.calibrated,
        "model_id": engine.embedder.model_id,
        "item": item_out,
    }


def _copy_private(src, dst) -> None:
    """Copy a kept query image, readable by the service's user only (0600)."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(src.read_bytes())


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def add_item(
    services: Services, slot: EngineSlot, key: ApiKey, image: io.BytesIO, meta: ReferenceMeta
) -> tuple[str, bool]:
    """Add one uploaded reference (audited); returns (item_id, added)."""
    if meta.modality is not None:
        meta = replace(meta, modality=query_modality(services, slot, meta.modality))
    data = image.getvalue()
    item_id, added = await services.queue.run(
        add_reference, slot.engine, data, meta, key.name, getattr(image, "name", "upload")
    )
    await run_in_threadpool(
        services.audit.append,
        "gallery.add",
        key.name,
        "",
        _sha(data),
        "",
        slot.engine.embedder.model_id,
        "added" if added else "exists",
        {"item_id": item_id, "label": meta.label, "category": meta.category},
    )
    services.metrics.gallery_items.set(len(slot.engine.gallery))
    return item_id, added


async def record_feedback(
    services: Services,
    slot: EngineSlot,
    key: ApiKey,
    query_id: str,
    item_id: str,
    verdict: str,
    correct_label: str | None,
    reference: ReferenceMeta | None,
) -> Feedback:
    """Store a judgement of an earlier query; optionally add the query as a reference."""
    rec = await run_in_threadpool(services.audit.by_query, query_id)
    if rec is None or rec.action not in ("search", "compare"):
        raise KeyError(f"no search or comparison with query_id {query_id!r}")
    if item_id:
        await run_in_threadpool(slot.engine.gallery.get, item_id)
    src = services.audit.image_path(rec)
    rel = ""
    if src is not None:
        rel = f"{FEEDBACK_DIR}/{src.name}"
        dst = services.state_dir / rel
        dst.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not dst.exists():
            await run_in_threadpool(_copy_private, src, dst)
    added_id = None
    if reference is not None:
        if src is None:
            raise ConflictError(
                f"the image of {query_id} is no longer kept (audit retention); "
                "upload it as a new reference instead"
            )
        stream = io.BytesIO(src.read_bytes())
        stream.name = src.name
        added_id, _ = await add_item(services, slot, key, stream, reference)
    fb = await run_in_threadpool(
        services.feedback.add,
        key.name,
        query_id,
        rec.image_sha256,
        rel,
        item_id,
        verdict,
        correct_label,
        added_id,
    )
    await run_in_threadpool(
        services.audit.append,
        "feedback",
        key.name,
        query_id,
        rec.image_sha256,
        "",
        slot.engine.embedder.model_id,
        verdict,
        {"feedback_id": fb.id, "item_id": item_id, "added_item_id": added_id},
    )
    return fb


def item_dict(item) -> dict:
    """An Item as ItemOut's shape."""
    d = item.to_dict()
    d["thumbnail_url"] = f"/v1/gallery/items/{item.item_id}/thumbnail" if item.thumb_file else ""
    return d
