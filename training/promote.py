"""Gated promotion and rollback of a gallery's model.

``promote``: re-embed the gallery into a shadow with the candidate model, evaluate the live
gallery and the shadow on the same fixed query set, and switch only if no tracked metric
drops by more than the tolerance. The switch moves the service's state files (API keys,
audit log, feedback: anything that is not part of the gallery layout) into the shadow by
rename, so open handles stay valid, then swaps the directories. The running service keeps
serving the old model until it is told to reload (SIGHUP or POST /v1/admin/reload).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from index import CALIBRATION_FILE, Gallery
from index.files import swap_in
from matcher import Embedder, load_checkpoint
from training.evaluate import evaluate
from training.registry import Registry
from training.report import write_calibration, write_report
from training.shadow import build_shadow

log = logging.getLogger(__name__)

# Higher is better for each; threat metrics are tracked only when threat labels are set.
TRACKED = ("top1", "recall@5", "map@10", "threat.auc", "threat.tpr@fpr1%")
# Files a gallery build creates; everything else in the directory is service state.
GALLERY_ENTRIES = {
    "manifest.json",
    "gallery.sqlite",
    "gallery.sqlite-wal",
    "gallery.sqlite-shm",
    "index.faiss",
    "images",
    "thumbs",
    "model",
    ".lock",
    "gallery.lock",
    CALIBRATION_FILE,
}


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


def carry_state(old: Path, new: Path) -> list[str]:
    """Move the service's state entries (not gallery files) from ``old`` into ``new``."""
    moved = []
    for entry in sorted(old.iterdir()):
        if entry.name in GALLERY_ENTRIES or entry.name.startswith(".gallery"):
            continue
        dest = new / entry.name
        if dest.exists():
            continue
        os.replace(entry, dest)
        moved.append(entry.name)
    return moved


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
    shadow_dir = gallery_dir.with_name(f".{gallery_dir.name}.promote-{entry.model_id}")
    with Gallery.open(gallery_dir) as g:
        build_shadow(g, cand_emb, shadow_dir, progress).close()
    candidate = evaluate(shadow_dir, queries, cand_emb, threats, progress=progress)
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
        shutil.rmtree(shadow_dir, ignore_errors=True)
        registry.record({"action": "refused", **event})
        return gate
    # Keep the outgoing calibration so a rollback can restore it with its model.
    registry.keep_calibration(gallery_dir, current_id, gallery_dir / CALIBRATION_FILE)
    if threats:
        cal = write_calibration(
            candidate.metrics, shadow_dir / CALIBRATION_FILE, f"promote {queries}"
        )
        registry.keep_calibration(gallery_dir, entry.model_id, cal)
    moved = carry_state(gallery_dir, shadow_dir)
    swap_in(shadow_dir, gallery_dir)
    registry.record({"action": "promote", "state_moved": moved, **event})
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
    """
    gallery_dir = Path(gallery_dir).resolve()
    chain = registry.active_chain(gallery_dir)
    if len(chain) < 2:
        raise ValueError(f"nothing to roll back to: no earlier promotion of {gallery_dir}")
    target = chain[-2]
    emb = Embedder(registry.load(target), batch_size=batch_size, threads=threads)
    shadow_dir = gallery_dir.with_name(f".{gallery_dir.name}.rollback-{target}")
    with Gallery.open(gallery_dir) as g:
        current_id = g.model_id
        build_shadow(g, emb, shadow_dir, progress).close()
    kept = registry.calibration_path(gallery_dir, target)
    if kept.is_file():
        shutil.copyfile(kept, shadow_dir / CALIBRATION_FILE)
    moved = carry_state(gallery_dir, shadow_dir)
    swap_in(shadow_dir, gallery_dir)
    registry.record(
        {
            "action": "rollback",
            "calibration_restored": kept.is_file(),
            "gallery": str(gallery_dir),
            "model_id": target,
            "previous_model_id": current_id,
            "state_moved": moved,
        }
    )
    return target
