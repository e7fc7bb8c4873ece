"""Gated promotion and rollback of a gallery's model.

``promote``: re-embed the gallery into a shadow with the candidate model, evaluate the live
gallery and the shadow on the same fixed query set, and switch only if no tracked metric
drops by more than the tolerance. An embedded gallery's shadow is a directory: the switch
moves the service's state files (API keys, audit log, feedback: anything that is not part of
the gallery layout) into it by rename, so open handles stay valid, then swaps the directories;
the running service keeps the old model until it is told to reload (SIGHUP or POST
/v1/admin/reload). A shared gallery's shadow lives in its database and a new Milvus collection
(``training.shared_shadow``); its state never moves, and the caller bumps the reload
generation so every replica reloads. The gate, the registry records and the calibrations are
the same for both.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from index import CALIBRATION_FILE, Gallery
from index.shadow import switch_in_place
from matcher import Embedder, load_checkpoint
from training.evaluate import evaluate
from training.registry import Registry
from training.report import write_calibration, write_report
from training.shadow import DirShadow
from training.shared_shadow import PgShadow

log = logging.getLogger(__name__)

# Higher is better for each; threat metrics are tracked only when threat labels are set.
TRACKED = ("top1", "recall@5", "map@10", "threat.auc", "threat.tpr@fpr1%")


def shadow_kind(gallery_dir: Path) -> type[DirShadow] | type[PgShadow]:
    """How ``gallery_dir``'s shadow is built and switched (refusing mixed backends early)."""
    with Gallery.open(gallery_dir) as g:
        shared = switch_in_place(g.manifest, gallery_dir)
    return PgShadow if shared else DirShadow


def build_shadow_for(
    gallery_dir: Path, embedder: Embedder, tag: str, progress: bool = True
) -> DirShadow | PgShadow:
    """The shadow of ``gallery_dir`` embedded by ``embedder``, on the gallery's own backend."""
    return shadow_kind(gallery_dir).build(gallery_dir, embedder, tag, progress)


@contextmanager
def discard_on_error(shadow: DirShadow | PgShadow) -> Iterator[None]:
    """Discard ``shadow`` if the block fails (Ctrl-C included), then let the error go on."""
    try:
        yield
    except BaseException:
        shadow.discard()
        raise


@dataclass
class Gate:
    """The comparison behind a promotion decision."""

    accepted: bool
    current: dict
    candidate: dict
    drops: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {
            "accepted": self.accepted,
            "current": self.current,
            "candidate": self.candidate,
            "drops": self.drops,
        }


def metric(metrics: dict, name: str) -> float | None:
    """A tracked metric by dotted name (None when absent)."""
    cur = metrics
    for part in name.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return None if cur is None else float(cur)


def compare(current: dict, candidate: dict, tolerance: float) -> Gate:
    """Accept unless some tracked metric of the candidate is below current - tolerance."""
    cur, cand, drops = {}, {}, []
    for name in TRACKED:
        a, b = metric(current, name), metric(candidate, name)
        if a is None or b is None:
            continue
        cur[name], cand[name] = a, b
        if b < a - tolerance:
            drops.append(f"{name} fell from {a:.4f} to {b:.4f} (tolerance {tolerance:.4f})")
    return Gate(not drops, cur, cand, drops)


def notify(url: str | None = None, pid: int | None = None, api_key: str | None = None) -> str:
    """Ask a running service to reload: POST to ``url`` and/or SIGHUP ``pid``."""
    done = []
    if pid:
        os.kill(pid, signal.SIGHUP)
        done.append(f"sent SIGHUP to pid {pid}")
    if url:
        req = urllib.request.Request(url, data=b"", method="POST")
        if api_key:
            req.add_header("X-API-Key", api_key)
        with urllib.request.urlopen(req, timeout=600) as resp:  # noqa: S310 - admin-given URL
            body = json.loads(resp.read() or b"{}")
        done.append(f"service reloaded model {body.get('model_id', '?')}")
    return "; ".join(done)


def promote(
    registry: Registry,
    model: str | Path,
    gallery_dir: str | Path,
    queries: str | Path | None = None,
    threat_labels: list[str] | None = None,
    tolerance: float | None = None,
    threads: int | None = None,
    batch_size: int = 32,
    report_dir: str | Path | None = None,
    progress: bool = True,
) -> Gate:
    """Gate ``model`` against the gallery's current model; switch the gallery when it passes."""
    gallery_dir = Path(gallery_dir).resolve()
    kind = shadow_kind(gallery_dir)  # a gallery that cannot be switched is refused first
    fixed = registry.eval_set() or {}
    queries = queries or fixed.get("queries")
    if not queries:
        raise ValueError("no evaluation set: give --eval-queries DIR (recorded for later runs)")
    threats = threat_labels if threat_labels is not None else fixed.get("threat_labels", [])
    tol = tolerance if tolerance is not None else fixed.get("tolerance", 0.01)
    if not fixed:
        registry.set_eval_set(
            {"queries": str(Path(queries).resolve()), "threat_labels": threats, "tolerance": tol}
        )
    entry = registry.resolve(model)
    with Gallery.open(gallery_dir) as g:
        current_id = g.model_id
        current_model = load_checkpoint(g.model_dir)
    if entry.model_id == current_id:
        raise ValueError(f"{gallery_dir} already uses model {current_id}")
    registry.add(g.model_dir)  # keep the outgoing model so rollback can restore it
    cur_emb = Embedder(current_model, batch_size=batch_size, threads=threads)
    current = evaluate(gallery_dir, queries, cur_emb, threats, progress=progress)

    cand_emb = Embedder(registry.load(entry.model_id), batch_size=batch_size, threads=threads)
    shadow = kind.build(gallery_dir, cand_emb, f"promote-{entry.model_id}", progress)
    with discard_on_error(shadow):
        candidate = shadow.evaluate(queries, cand_emb, threats, progress)
    gate = compare(current.metrics, candidate.metrics, tol)
    if report_dir:
        write_report(current, Path(report_dir) / "current", plots=False)
        write_report(candidate, Path(report_dir) / "candidate", plots=False)
    event = {
        "gallery": str(gallery_dir),
        "model_id": entry.model_id,
        "previous_model_id": current_id,
        "gate": gate.to_dict(),
    }
    if not gate.accepted:
        shadow.discard()
        registry.record({"action": "refused", **event})
        return gate
    with discard_on_error(shadow):
        # Keep the outgoing calibration so a rollback can restore it with its model.
        registry.keep_calibration(gallery_dir, current_id, gallery_dir / CALIBRATION_FILE)
        if threats:
            cal = write_calibration(
                candidate.metrics, shadow.calibration_file, f"promote {queries}"
            )
            registry.keep_calibration(gallery_dir, entry.model_id, cal)
    switched = shadow.switch()  # cleans up after itself where it fails
    registry.record({"action": "promote", **switched, **event})
    return gate


def rollback(
    registry: Registry,
    gallery_dir: str | Path,
    threads: int | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> str:
    """Re-embed the gallery with the model promoted before the current one; returns its id.

    The calibration the gallery had under that model comes back with it (none if it had none).
    A shared gallery re-embeds only the items added since that model was switched out.
    """
    gallery_dir = Path(gallery_dir).resolve()
    kind = shadow_kind(gallery_dir)
    chain = registry.active_chain(gallery_dir)
    if len(chain) < 2:
        raise ValueError(f"nothing to roll back to: no earlier promotion of {gallery_dir}")
    target = chain[-2]
    emb = Embedder(registry.load(target), batch_size=batch_size, threads=threads)
    with Gallery.open(gallery_dir) as g:
        current_id = g.model_id
    shadow = kind.build(gallery_dir, emb, f"rollback-{target}", progress)
    with discard_on_error(shadow):
        kept = registry.calibration_path(gallery_dir, target)
        if kept.is_file():
            shutil.copyfile(kept, shadow.calibration_file)
    switched = shadow.switch()
    registry.record(
        {
            "action": "rollback",
            "calibration_restored": kept.is_file(),
            "gallery": str(gallery_dir),
            "model_id": target,
            "previous_model_id": current_id,
            **switched,
        }
    )
    return target
