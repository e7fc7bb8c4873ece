"""The engine the service is using, swapped on reload while requests in flight keep theirs.

Replicas of a shared gallery watch a reload generation in its database (``watch_reloads``):
a reload of any one of them (admin route, SIGHUP, adaptation, ``gunmatch model reload``)
bumps it, and every other replica reloads within one poll interval.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gunmatch.decision import Calibration, calibration_path, load_calibration
from gunmatch.search import Judge, load_judge
from gunmatch.service import Engine
from screening.screen import ScreeningConfig

log = logging.getLogger(__name__)


@dataclass
class EngineSlot:
    """One opened engine, the thresholds it decides on, and how many requests are using it.

    ``judge`` holds the gallery's calibration and, when they fit the service's screening
    settings, the thresholds measured on cleared scans (``gunmatch gallery
    calibrate-screening``); both are read once, when the engine opens.
    """

    engine: Engine
    judge: Judge
    users: int = 0
    retired: bool = False
    generation: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def calibration(self) -> Calibration:
        """The gallery's calibration (whole-image decisions, comparisons)."""
        return self.judge.calibration

    def release(self) -> None:
        """One user is done; close the engine if it was retired and is now unused."""
        with self._lock:
            self.users -= 1
            close = self.retired and self.users == 0
        if close:
            self.engine.close()


class EngineHolder:
    """Hands out the current engine; ``reload`` opens a new one in the background and swaps."""

    def __init__(
        self,
        gallery_dir: Path,
        opener: Callable[[Path], Engine],
        calibration_file: Path | None = None,
        screening: ScreeningConfig | None = None,
    ) -> None:
        """``screening``: the service's region screening settings."""
        self.gallery_dir = Path(gallery_dir)
        self.opener = opener
        self._calibration_file = calibration_file
        self.screening = screening or ScreeningConfig()
        self._lock = threading.Lock()
        self._reload_lock = asyncio.Lock()
        self._slot: EngineSlot | None = None
        self.reloads = 0
        # A shared gallery's reload generation: ``announce`` bumps it (returns the new
        # value), ``seen_generation`` is the one this process has loaded.
        self.announce: Callable[[], int | None] | None = None
        self.seen_generation: int | None = None

    def _open_slot(self) -> EngineSlot:
        engine = self.opener(self.gallery_dir)
        path = calibration_path(self.gallery_dir, self._calibration_file)
        cal = load_calibration(path, engine.embedder.model_id)
        return EngineSlot(engine, load_judge(engine, self.screening, cal))

    def start(self) -> None:
        """Open the first engine (blocking; called from the lifespan)."""
        self._slot = self._open_slot()

    @property
    def ready(self) -> bool:
        """An engine is open."""
        return self._slot is not None

    @property
    def current(self) -> EngineSlot:
        """The slot new requests get."""
        if self._slot is None:
            raise RuntimeError("the service is still starting")
        return self._slot

    @contextmanager
    def acquire(self) -> Iterator[EngineSlot]:
        """Use the current engine for one request; a swap meanwhile does not close it."""
        with self._lock:
            slot = self.current
            with slot._lock:
                slot.users += 1
        try:
            yield slot
        finally:
            slot.release()

    async def reload(self, announce: bool = True) -> EngineSlot:
        """Open the gallery's (possibly new) model off the loop, then swap it in; with
        ``announce``, tell the other replicas of a shared gallery to do the same."""
        slot = await self._reload()
        if announce and self.announce is not None:
            try:
                self.seen_generation = await asyncio.to_thread(self.announce)
            except Exception as exc:  # reloaded here; the others keep their engine
                log.error("reloaded, but could not tell the other replicas: %s", exc)
        return slot

    async def _reload(self) -> EngineSlot:
        async with self._reload_lock:
            new = await asyncio.to_thread(self._open_slot)
            with self._lock:
                old, self._slot = self._slot, new
                self.reloads += 1
                new.generation = self.reloads
            if old is not None:
                with old._lock:
                    old.retired = True
                    idle = old.users == 0
                if idle:
                    old.engine.close()
            log.info("reloaded engine: model %s", new.engine.embedder.model_id)
            return new

    def close(self) -> None:
        """Close the current engine."""
        with self._lock:
            slot, self._slot = self._slot, None
        if slot is not None:
            slot.engine.close()


async def watch_reloads(
    holder: EngineHolder,
    read_generation: Callable[[], int | None],
    interval_s: float,
    on_reload: Callable[[EngineSlot], None],
) -> None:
    """Reload whenever the shared reload generation moves past the one ``holder`` loaded
    (checked every ``interval_s``); a failed check or reload keeps the engine in use."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            gen = await asyncio.to_thread(read_generation)
        except Exception as exc:  # the database may be failing over; try again next tick
            log.warning("cannot read the reload generation: %s", exc)
            continue
        if gen is None or gen == holder.seen_generation:
            continue
        holder.seen_generation = gen
        log.warning("reload generation %s: another replica reloaded, reloading too", gen)
        try:
            on_reload(await holder.reload(announce=False))
        except Exception as exc:
            log.error("reload failed, still serving the previous model: %s", exc)
