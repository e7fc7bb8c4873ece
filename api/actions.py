"""What one request does, between its route and the service functions: embed, search, audit.

Routes stay thin (validate, call one of these, shape the response); these keep blocking work
off the event loop (the model through the bounded ``EmbeddingQueue``, SQLite and files through
the thread pool) and write the audit row only after the work succeeded.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import shutil
import time
from typing import Any

from fastapi.concurrency import run_in_threadpool

from api.deps import Services
from api.errors import ConflictError, ScreeningUnavailableError
from api.runtime import EngineSlot
from gunmatch.decision import compare_verdict, decide_score, most_severe
from gunmatch.references import (
    ReferenceMeta,
    add_reference,
    image_ext,
    item_similarity,
    new_query_id,
    search_vector,
)
from gunmatch.settings import Settings
from gunmatch.state import ApiKey
from index import Filters
from index.feedback import Feedback
from matcher.preprocess import check_modality

HISTORY_LIMIT = 5
FEEDBACK_DIR = "feedback"


def screening_available() -> bool:
    """True when region screening (gunmatch.screening) is installed."""
    return importlib.util.find_spec("gunmatch.screening") is not None


def screening_config(settings: Settings) -> Any:
    """The service's ``ScreeningConfig`` from its settings; None without region screening."""
    if not screening_available():
        return None
    screening = importlib.import_module("gunmatch.screening")
    return screening.ScreeningConfig(
        score_mode=settings.screen_score_mode,
        score_k=settings.screen_score_k,
        map_weight=settings.screen_map_weight,
    )


def _history(services: Services, sha: str) -> list[dict]:
    rows = services.audit.list(limit=HISTORY_LIMIT, sha256=sha, action="search")
    return [
        {"ts": r.ts, "query_id": r.query_id, "key_name": r.key_name, "decision": r.decision}
        for r in rows
    ]


def _region_decision(region: dict) -> str:
    d = region.get("decision")
    return d.get("decision", "clear") if isinstance(d, dict) else str(d or "clear")


def _best_matches(whole: list[dict], regional: list[dict], k: int) -> list[dict]:
    """Each item's best match over the whole-image and region matches, top k, re-ranked."""
    best: dict[str, dict] = {}
    for m in [*whole, *regional]:
        if m["item_id"] not in best or m["score"] > best[m["item_id"]]["score"]:
            best[m["item_id"]] = m
    ordered = sorted(best.values(), key=lambda m: (-m["score"], m["item_id"]))[:k]
    return [{**m, "rank": i + 1} for i, m in enumerate(ordered)]


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
    """Embed, search, decide, audit one uploaded image; returns the SearchOut shape.

    ``regions=None`` screens regions for X-ray queries only; then ``matches`` holds each
    reference's best score over the whole image and every region.
    """
    start = time.perf_counter()
    engine = slot.engine
    modality = check_modality(modality or engine.gallery.modality)
    if regions is None:
        regions = modality == "xray" and screening_available()
    if regions and not screening_available():
        raise ScreeningUnavailableError(
            "region screening is not available in this build (gunmatch.screening missing)"
        )
    data = image.getvalue()
    vec = await services.queue.embed(engine, [image], modality)
    outcome = await run_in_threadpool(search_vector, engine, vec[0], k, slot.calibration, filters)
    decision = outcome.decision.to_dict()
    region_list = None
    if regions:
        screening = importlib.import_module("gunmatch.screening")
        # Thresholds measured on cleared scans with these settings, when the gallery has them.
        cal = slot.screening_calibration or slot.calibration
        screened = await services.queue.run(
            lambda: screening.screen_image(
                engine, io.BytesIO(data), k, filters,
                decision_fn=lambda score: decide_score(score, cal)[0],
                config=services.holder.screening,
            )
        )  # fmt: skip
        screened_dict = screened.to_dict()
        region_list = screened_dict.get("regions", [])
        outcome.matches = _best_matches(outcome.matches, screened_dict.get("matches", []), k)
        worst = most_severe([decision["decision"], *map(_region_decision, region_list)])
        decision["decision"] = worst
    query_id = new_query_id()

    def record() -> tuple[str, list[dict]]:
        sha, rel = services.audit.store_image(data, image_ext(data))
        history = _history(services, sha)
        services.audit.append(
            "search",
            key.name,
            query_id,
            sha,
            rel,
            engine.embedder.model_id,
            decision["decision"],
            {
                "filename": getattr(image, "name", ""),
                "k": k,
                "modality": modality,
                "matches": [[m["item_id"], m["score"]] for m in outcome.matches],
                "decision": decision,
                "regions": len(region_list) if region_list is not None else None,
            },
        )
        return sha, history

    sha, history = await run_in_threadpool(record)
    return {
        "query_id": query_id,
        "filename": getattr(image, "name", ""),
        "sha256": sha,
        "model_id": engine.embedder.model_id,
        "modality": modality,
        "elapsed_ms": round((time.perf_counter() - start) * 1000.0, 2),
        "matches": outcome.matches,
        "decision": decision,
        "history": history,
        "regions": region_list,
    }


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
    modality = check_modality(modality or engine.gallery.modality)
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
        item_out = {
            "rank": 1,
            "item_id": item.item_id,
            "label": item.label,
            "category": item.category,
            "make_model": item.make_model,
            "calibre": item.calibre,
            "threat": item.threat,
            "score": round(similarity, 4),
        }
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


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def add_item(
    services: Services, slot: EngineSlot, key: ApiKey, image: io.BytesIO, meta: ReferenceMeta
) -> tuple[str, bool]:
    """Add one uploaded reference (audited); returns (item_id, added)."""
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
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            await run_in_threadpool(shutil.copyfile, src, dst)
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
