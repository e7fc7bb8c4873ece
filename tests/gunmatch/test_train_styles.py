"""Domain randomisation flags of `gunmatch train-threatmap` / `train-xray`."""

from __future__ import annotations

import argparse

import pytest

from gunmatch.cli import main
from gunmatch.commands import train as train_cmd
from gunmatch.commands.common import UsageError
from synth.styles import StyleSampler


def _ns(**kw) -> argparse.Namespace:
    flags = {
        "styles": False,
        "hold_out": None,
        "long_guns": None,
        "default_share": None,
        "confusers": None,
    }
    return argparse.Namespace(**{**flags, **kw})


def test_style_sampler_from_flags():
    assert train_cmd.style_sampler(_ns()) is None
    got = train_cmd.style_sampler(
        _ns(styles=True, hold_out=["tools", "noisy-lowres"], long_guns=0.25)
    )
    assert got == StyleSampler(("noisy-lowres", "tools"), long_guns=0.25)
    with pytest.raises(UsageError, match="need --styles"):
        train_cmd.style_sampler(_ns(hold_out=["tools"]))
    with pytest.raises(UsageError, match="unknown style families"):
        train_cmd.style_sampler(_ns(styles=True, hold_out=["polaroid"]))
    with pytest.raises(UsageError, match="share"):
        train_cmd.style_sampler(_ns(styles=True, long_guns=2.0))
    mixed = train_cmd.style_sampler(_ns(styles=True, default_share=0.33))
    assert mixed == StyleSampler(default_share=0.33)
    with pytest.raises(UsageError, match="need --styles"):
        train_cmd.style_sampler(_ns(default_share=0.33))
    with pytest.raises(UsageError, match="default_share"):
        train_cmd.style_sampler(_ns(styles=True, default_share=1.5))
    hard = train_cmd.style_sampler(_ns(styles=True, confusers=0.5))
    assert hard == StyleSampler(confusers=0.5)
    # --confusers alone: today's parcels, a share of the clean ones holding one.
    today = train_cmd.style_sampler(_ns(confusers=0.5))
    assert today == StyleSampler.today(0.5) and today.confusers == 0.5
    assert today.looks() == ["default"] and today.scenes() == ["classic"]
    assert all(today.for_seed(s).is_default for s in range(20))
    with pytest.raises(UsageError, match="share"):
        train_cmd.style_sampler(_ns(styles=True, confusers=-0.1))
    with pytest.raises(UsageError, match="share"):
        train_cmd.style_sampler(_ns(confusers=1.5))


def test_train_threatmap_passes_the_sampler(tmp_path, monkeypatch):
    seen = []

    def fake_train(cfg, out, progress=True):
        seen.append(cfg)
        return {
            "parcels": 1,
            "total_s": 0.0,
            "best_epoch": 1,
            "val": {"auc": 1.0, "det_max_clean": 1.0, "det_5": 1.0},
        }

    monkeypatch.setattr(train_cmd, "train_threatmap", fake_train)
    assert main(["train-threatmap", "--out", str(tmp_path), "--quiet"]) == 0
    assert (
        main(
            [
                "train-threatmap",
                "--out",
                str(tmp_path),
                "--quiet",
                "--styles",
                "--hold-out",
                "dense",
            ]
        )
        == 0
    )
    assert seen[0].styles is None
    assert seen[1].styles == StyleSampler(("dense",))
    with pytest.raises(SystemExit) as exc:
        main(["train-threatmap", "--out", str(tmp_path), "--hold-out", "dense"])
    assert exc.value.code == 2


def test_train_threatmap_takes_the_share_of_clean_parcels(tmp_path, monkeypatch):
    seen = []

    def fake_train(cfg, out, progress=True):
        seen.append(cfg)
        val = {"auc": 1.0, "det_max_clean": 1.0, "det_5": 1.0}
        return {"parcels": 1, "total_s": 0.0, "best_epoch": 1, "val": val}

    monkeypatch.setattr(train_cmd, "train_threatmap", fake_train)
    out = ["train-threatmap", "--out", str(tmp_path), "--quiet"]
    assert main([*out, "--clean-every", "2", "--parcels", "2", "--val-parcels", "2"]) == 0
    assert seen[0].clean_every == 2 and seen[0].parcels == 2
    assert main(out) == 0 and seen[1].clean_every == 3  # the default, unchanged
    for bad in (["--clean-every", "1"], ["--clean-every", "4", "--parcels", "3"]):
        with pytest.raises(SystemExit) as exc:
            main([*out, *bad])
        assert exc.value.code == 2
    assert len(seen) == 2
