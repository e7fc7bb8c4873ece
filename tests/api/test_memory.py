"""The service holds the memory its model passes free and hands it back now and then
(api.app.memory_hand_back)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from api import app as service
from api.app import ServiceConfig
from gunmatch.settings import Settings


def config(manage: bool, every_s: float) -> ServiceConfig:
    # model_copy skips validation: intervals below the settings' 1 s keep the tests short
    settings = Settings().model_copy(update={"memory_hand_back_s": every_s})
    return ServiceConfig(Path("unused"), settings=settings, manage_memory=manage)


def run_for(cfg: ServiceConfig, seconds: float) -> bool:
    """Start what the lifespan starts, wait, cancel; whether a task ran."""

    async def go() -> bool:
        task = service.memory_hand_back(cfg)
        await asyncio.sleep(seconds)
        if task is None:
            return False
        task.cancel()
        return True

    return asyncio.run(go())


def test_the_service_hands_held_memory_back_periodically(monkeypatch):
    held, handed = [], []
    monkeypatch.setattr(service, "hold_freed_memory", lambda: held.append(1) or True)
    monkeypatch.setattr(service, "hand_back_freed_memory", lambda: handed.append(1) or True)
    assert run_for(config(True, 0.05), 0.5)
    assert held == [1] and len(handed) >= 3


def test_memory_left_to_glibc_where_not_asked_or_not_ours(monkeypatch):
    held, handed = [], []
    monkeypatch.setattr(service, "hand_back_freed_memory", lambda: handed.append(1) or True)
    monkeypatch.setattr(service, "hold_freed_memory", lambda: held.append(1) or True)
    assert not run_for(config(False, 0.05), 0.2)  # an app in a test, not `gunmatch serve`
    assert not run_for(config(True, 0.0), 0.2)  # GUNMATCH_MEMORY_HAND_BACK_S=0
    assert held == []
    # the environment sets glibc's malloc itself: not held, so nothing to hand back
    monkeypatch.setattr(service, "hold_freed_memory", lambda: held.append(1) and False)
    assert not run_for(config(True, 0.05), 0.2)
    assert held == [1] and handed == []


def test_the_interval_is_off_or_at_least_a_second():
    assert Settings(memory_hand_back_s=0).memory_hand_back_s == 0
    assert Settings(memory_hand_back_s=1).memory_hand_back_s == 1
    for bad in (0.01, -1):
        with pytest.raises(ValidationError):
            Settings(memory_hand_back_s=bad)
