"""Model registry: trained checkpoints by id, and the promotion history of a gallery.

Layout of a registry directory::

    REG/models/<model_id>/   checkpoint (meta.json, weights.pt, training.json if trained here)
    REG/registry.json        {"eval_set": {...}, "history": [{"action", "model_id", ...}, ...]}
    REG/calibrations/<gallery key>/<model_id>.json   a gallery's calibration under each model

A model's card (base, data hash, config, metrics) lives in its ``meta.json``. Promotion
and rollback are recorded in ``history``; the fixed evaluation set used to gate promotion is
recorded on first use so later promotions are compared on the same queries.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from index.files import atomic_write
from matcher import save_checkpoint
from matcher.model import load_checkpoint, load_model

REGISTRY_FILE = "registry.json"


@dataclass
class ModelEntry:
    """One registered model."""

    model_id: str
    path: Path
    meta: dict

    @property
    def card(self) -> dict:
        """The model card recorded at training time."""
        return self.meta.get("card", {})

    def summary(self) -> dict:
        """A one-line view for listings."""
        card = self.card
        return {
            "model_id": self.model_id,
            "created_at": self.meta.get("created_at", ""),
            "base": card.get("base", ""),
            "samples": card.get("samples"),
            "val_top1": (card.get("metrics") or {}).get("val_top1"),
            "path": str(self.path),
        }


class Registry:
    """A directory of models plus a JSON history; safe to read while another process writes."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.models_dir = self.root / "models"

    def _state(self) -> dict:
        path = self.root / REGISTRY_FILE
        if not path.is_file():
            return {"history": [], "eval_set": None}
        return json.loads(path.read_text())

    def _save(self, state: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write(self.root / REGISTRY_FILE, json.dumps(state, indent=2).encode())

    def add(self, model_dir: str | Path) -> ModelEntry:
        """Copy a checkpoint directory (or a bundled backbone's record) into the registry."""
        model = load_model(model_dir)
        dest = self.models_dir / model.model_id
        if not (dest / "meta.json").is_file():
            self.models_dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=self.models_dir, prefix=".add-"))
            src = Path(model_dir)
            if (src / "meta.json").is_file():
                shutil.copytree(src, tmp, dirs_exist_ok=True)
            else:
                save_checkpoint(model, tmp, model.card)
            os.replace(tmp, dest)
        return self.get(model.model_id)

    def get(self, model_id: str) -> ModelEntry:
        """The entry for an id (a unique prefix is enough)."""
        matches = [p for p in self._model_dirs() if p.name.startswith(model_id)]
        if not matches:
            raise KeyError(f"no model {model_id!r} in registry {self.root}")
        if len(matches) > 1 and not any(p.name == model_id for p in matches):
            raise KeyError(f"model id prefix {model_id!r} is ambiguous in {self.root}")
        path = next((p for p in matches if p.name == model_id), matches[0])
        return ModelEntry(path.name, path, json.loads((path / "meta.json").read_text()))

    def resolve(self, spec: str | Path) -> ModelEntry:
        """A registry id/prefix, a checkpoint dir or a bundled name (registered on the way)."""
        spec_s = str(spec)
        if not Path(spec_s).exists():
            try:
                return self.get(spec_s)
            except KeyError:
                pass
        return self.add(spec_s)

    def list(self) -> list[ModelEntry]:
        """All models, oldest first."""
        entries = [self.get(p.name) for p in self._model_dirs()]
        return sorted(entries, key=lambda e: e.meta.get("created_at", ""))

    def _model_dirs(self) -> list[Path]:
        if not self.models_dir.is_dir():
            return []
        return sorted(p for p in self.models_dir.iterdir() if (p / "meta.json").is_file())

    def history(self) -> list[dict]:
        """Promotions, refusals and rollbacks, oldest first."""
        return self._state()["history"]

    def record(self, event: dict) -> None:
        """Append one event to the history."""
        state = self._state()
        state["history"].append({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **event})
        self._save(state)

    def eval_set(self) -> dict | None:
        """The fixed evaluation set recorded for gated promotion."""
        return self._state().get("eval_set")

    def set_eval_set(self, eval_set: dict) -> None:
        """Record the evaluation set (queries folder, threat labels, tolerance)."""
        state = self._state()
        state["eval_set"] = eval_set
        self._save(state)

    def active_chain(self, gallery: str | Path) -> list[str]:
        """Model ids promoted on ``gallery``, oldest first, with rolled-back ones removed."""
        chain: list[str] = []
        key = str(Path(gallery).resolve())
        for ev in self.history():
            if ev.get("gallery") != key:
                continue
            if ev["action"] == "promote":
                if ev.get("previous_model_id") and not chain:
                    chain.append(ev["previous_model_id"])
                chain.append(ev["model_id"])
            elif ev["action"] == "rollback" and chain:
                chain.pop()
        return chain

    def calibration_path(self, gallery: str | Path, model_id: str) -> Path:
        """Where the calibration of ``gallery`` under ``model_id`` is kept (may not exist)."""
        key = hashlib.sha256(str(Path(gallery).resolve()).encode()).hexdigest()[:16]
        return self.root / "calibrations" / key / f"{model_id}.json"

    def keep_calibration(self, gallery: str | Path, model_id: str, source: Path) -> bool:
        """Copy a gallery's calibration file for ``model_id`` (False when it has none)."""
        if not source.is_file():
            return False
        dest = self.calibration_path(gallery, model_id)
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(dest, source.read_bytes())
        return True

    def load(self, model_id: str):
        """The EmbeddingModel of a registered id."""
        return load_checkpoint(self.get(model_id).path)
