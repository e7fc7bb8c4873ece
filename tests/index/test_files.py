"""Switching a gallery directory: one atomic exchange, or two renames where unsupported."""

from __future__ import annotations

import threading

import pytest

from index import files
from index.files import exchange, swap_in


def _dirs(tmp_path):
    old, new = tmp_path / "gallery", tmp_path / ".gallery.shadow"
    old.mkdir()
    new.mkdir()
    (old / "manifest.json").write_text("old")
    (new / "manifest.json").write_text("new")
    return old, new


def test_exchange_swaps_two_directories(tmp_path):
    a, b = _dirs(tmp_path)
    if not exchange(a, b):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not supported on this file system")
    assert (a / "manifest.json").read_text() == "new"
    assert (b / "manifest.json").read_text() == "old"


def test_exchange_reports_a_missing_path(tmp_path):
    a, _ = _dirs(tmp_path)
    with pytest.raises(FileNotFoundError):
        exchange(a, tmp_path / "absent")


def test_swap_in_never_leaves_the_path_missing(tmp_path):
    target, shadow = _dirs(tmp_path)
    if not exchange(target, shadow):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not supported on this file system")
    exchange(target, shadow)  # back to the start
    missing = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            if not (target / "manifest.json").exists():
                missing.append(1)

    t = threading.Thread(target=watch)
    t.start()
    swap_in(shadow, target)
    stop.set()
    t.join()
    assert not missing
    assert (target / "manifest.json").read_text() == "new"
    assert not shadow.exists()


def test_swap_in_falls_back_to_two_renames(tmp_path, monkeypatch):
    target, shadow = _dirs(tmp_path)
    monkeypatch.setattr(files, "exchange", lambda a, b: False)
    swap_in(shadow, target)
    assert (target / "manifest.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gallery"]
