"""glibc's malloc set to keep freed memory for the next model pass, and handing it back
(gunmatch.allocator)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gunmatch import allocator, cli

GLIBC = allocator.on_glibc()

# Allocates and frees a 64 MB array ten times, as a trunk pass does its activations, and
# prints the page faults of the last eight rounds and what hold_freed_memory returned.
ROUNDS = """
import json, resource, sys
import numpy as np
from gunmatch.allocator import hold_freed_memory
held = hold_freed_memory() if sys.argv[1] == "hold" else None
for i in range(10):
    if i == 2:
        start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.ones(16 * 1024 * 1024, dtype=np.float32)
    del a
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start
print(json.dumps({"held": held, "faults": faults}))
"""


def rounds(mode: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not allocator.set_by_user({k: v})}
    clean["NUMPY_MADVISE_HUGEPAGE"] = "0"  # 4 KiB pages, so that the count is the pages touched
    out = subprocess.run(
        [sys.executable, "-c", ROUNDS, mode], env={**clean, **env}, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


@pytest.mark.skipif(not GLIBC, reason="the setting is glibc's; elsewhere it does nothing")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    held, system = rounds("hold"), rounds("system")
    assert held["held"] is True
    # 8 rounds of 64 MB touched anew: 16,384 pages each with 4 KiB pages
    assert system["faults"] > 8 * 4096
    assert held["faults"] < system["faults"] / 20


@pytest.mark.skipif(not GLIBC, reason="the setting is glibc's; elsewhere it does nothing")
def test_glibcs_own_settings_win():
    user = rounds("hold", MALLOC_MMAP_MAX_="65536")
    assert user["held"] is False
    assert user["faults"] > 8 * 4096


def test_what_counts_as_the_users_own_setting():
    assert allocator.set_by_user({"MALLOC_TRIM_THRESHOLD_": "0"})
    assert allocator.set_by_user({"GLIBC_TUNABLES": "glibc.malloc.mmap_max=0"})
    assert not allocator.set_by_user({"GLIBC_TUNABLES": "glibc.rtld.nns=2", "PATH": "/bin"})
    assert not allocator.set_by_user({"MALLOC_ARENA_MAX": "2"})


def test_every_command_holds_freed_memory(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(cli, "hold_freed_memory", lambda: calls.append(True) or True)
    assert cli.main(["model", "list"]) == 0
    assert calls == [True]


def test_the_service_sets_its_memory_itself(monkeypatch, tmp_path):
    from gunmatch.commands import serve

    calls, configs = [], []
    (tmp_path / "manifest.json").write_text("{}")
    monkeypatch.setattr(cli, "hold_freed_memory", lambda: calls.append(True) or True)
    monkeypatch.setattr(serve, "create_app", lambda cfg: configs.append(cfg))
    monkeypatch.setattr(serve.uvicorn, "run", lambda app, **kw: None)
    assert cli.main(["serve", "--gallery", str(tmp_path), "--port", "8765"]) == 0
    # not held for good by cli.main: the service holds it and hands it back (api.app)
    assert calls == [] and len(configs) == 1 and configs[0].manage_memory


# Holds freed memory, frees a 64 MB array and prints how much resident memory
# hand_back_freed_memory then returned.
HAND_BACK = """
import json, os
import numpy as np
from gunmatch.allocator import hand_back_freed_memory, hold_freed_memory

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

held = hold_freed_memory()
a = np.ones(16 * 1024 * 1024, dtype=np.float32)
b = np.ones(1024, dtype=np.float32)  # above it on the heap: not the heap's free top
del a
before = rss()
done = hand_back_freed_memory()
print(json.dumps({"held": held, "done": done, "returned": before - rss()}))
"""


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's; elsewhere it does nothing")
def test_freed_memory_held_is_handed_back():
    clean = {k: v for k, v in os.environ.items() if not allocator.set_by_user({k: v})}
    out = subprocess.run(
        [sys.executable, "-c", HAND_BACK], env=clean, capture_output=True, text=True, check=True
    )
    res = json.loads(out.stdout)
    assert res["held"] is True and res["done"] is True
    assert res["returned"] > 48 * 1024 * 1024
