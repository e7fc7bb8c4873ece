"""`gunmatch train DATA --out MODEL_DIR` (labelled images) and `gunmatch train-xray` (generated)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from gunmatch.commands.common import UsageError, emit_json, out
from gunmatch.feedback import train_on_gallery
from gunmatch.settings import get_settings
from matcher.preprocess import MODALITIES
from matcher.threatmap import is_threatmap
from synth.styles import StyleSampler
from training.registry import Registry
from training.train import TrainConfig, photo_fit
from training.xray.finetune import XrayFinetuneConfig, finetune_xray
from training.xray.head import XrayHeadConfig, train_xray_head
from training.xray.threatmap import ThreatMapTrainConfig, train_threatmap


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `train` command."""
    p = sub.add_parser(
        "train",
        help="fine-tune a model on DATA/<label>/<image> and/or a gallery with its feedback",
    )
    p.add_argument("data", nargs="?", type=Path, help="folder with one sub-folder per label")
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    p.add_argument("--gallery", type=Path, help="also train on this gallery and its feedback")
    p.add_argument(
        "--feedback-db",
        type=Path,
        help="feedback SQLite (default: the gallery's own state, in PostgreSQL for a shared "
        "gallery, else STATE/state.sqlite)",
    )
    p.add_argument(
        "--state",
        type=Path,
        help="state directory of --gallery (feedback images; default: GUNMATCH_STATE_DIR, "
        "else the gallery directory)",
    )
    p.add_argument("--base", default="efficientnet_lite0", help="backbone name or model directory")
    p.add_argument("--modality", choices=MODALITIES, default="photo")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--loss", choices=("cosface", "arcface", "multi_similarity"), default=None)
    p.add_argument("--lr", type=float, default=None, help="learning rate of the unfrozen blocks")
    p.add_argument("--head-dim", type=int, default=None, help="add a linear projection head")
    p.add_argument("--input-size", type=int, default=None, help="model input size (px)")
    p.add_argument("--freeze-blocks", type=int, default=None, help="frozen backbone blocks")
    p.add_argument("--aug-passes", type=int, default=None, help="augmented views per image")
    p.add_argument("--val-fraction", type=float, default=None)
    p.add_argument("--patience", type=int, default=None, help="early-stopping patience (epochs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="CPU threads")
    p.add_argument("--register", type=Path, help="also add the model to this registry dir")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_train)

    x = sub.add_parser(
        "train-xray",
        help="train an X-ray screening model on generated parcels (no real data needed)",
    )
    x.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    x.add_argument("--parcels", type=int, default=None, help="generated training parcels")
    x.add_argument("--epochs", type=int, default=None)
    x.add_argument("--freeze-blocks", type=int, default=None, help="frozen backbone blocks")
    x.add_argument("--aug-passes", type=int, default=None, help="augmented views per crop")
    x.add_argument("--input-size", type=int, default=None, help="crop side fed to the model (px)")
    x.add_argument(
        "--method",
        choices=("finetune", "lda"),
        default="finetune",
        help="finetune the last blocks and a head (default), or fit a linear LDA head on "
        "frozen features (faster, weaker)",
    )
    x.add_argument("--dims", type=int, default=None, help="output dimension of the LDA head")
    x.add_argument("--threads", type=int, default=None, help="CPU threads")
    x.add_argument("--register", type=Path, help="also add the model to this registry dir")
    x.add_argument("--quiet", action="store_true", help="no progress bars")
    x.add_argument("--json", action="store_true", help="print the report as JSON")
    _style_flags(x)
    x.set_defaults(func=cmd_train_xray)

    m = sub.add_parser(
        "train-threatmap",
        help="train the X-ray threat map (where in a scan a part lies) on generated parcels",
    )
    m.add_argument("--out", type=Path, required=True, help="threat map directory to write")
    m.add_argument("--parcels", type=int, default=None, help="generated training parcels")
    m.add_argument("--val-parcels", type=int, default=None, help="held-out parcels")
    m.add_argument("--epochs", type=int, default=None)
    m.add_argument(
        "--long-side", type=int, default=None, help="scan's longer side for the map, px (960)"
    )
    m.add_argument("--threads", type=int, default=None, help="CPU threads")
    m.add_argument(
        "--init",
        type=Path,
        default=None,
        metavar="MAP",
        help="start from this threat map's heads (one map or an ensemble) and go on training "
        "them; its input size is kept",
    )
    m.add_argument("--lr", type=float, default=None, help="peak learning rate (0.002)")
    m.add_argument(
        "--clean-every",
        type=int,
        default=None,
        metavar="N",
        help="every N-th generated parcel is clean (3); 2 gives as many clean parcels as "
        "threat ones (more negatives in cluttered scenes)",
    )
    m.add_argument("--quiet", action="store_true", help="no progress bars")
    m.add_argument("--json", action="store_true", help="print the card as JSON")
    _style_flags(m)
    m.set_defaults(func=cmd_train_threatmap)


def _style_flags(p: argparse.ArgumentParser) -> None:
    """Domain randomisation flags of the generated-data trainers (synth.styles)."""
    p.add_argument(
        "--styles",
        action="store_true",
        help="render each generated parcel in a scanner style drawn for it (looks x scenes)",
    )
    p.add_argument(
        "--hold-out",
        nargs="+",
        metavar="FAMILY",
        help="with --styles: looks or scenes never drawn (leave-one-style-out)",
    )
    p.add_argument(
        "--long-guns",
        type=float,
        default=None,
        help="with --styles: share of threat parcels (outside the classic scene) holding a "
        "whole rifle or shotgun",
    )
    p.add_argument(
        "--default-share",
        type=float,
        default=None,
        help="with --styles: share of parcels rendered as the default generator's, unstyled",
    )
    p.add_argument(
        "--confusers",
        type=float,
        default=None,
        help="share of clean parcels (any scene; without --styles, today's parcels) holding "
        "a shuriken or razor blade, prohibited but not firearm parts (hard negatives)",
    )


def style_sampler(args: argparse.Namespace) -> StyleSampler | None:
    """The trainers' style sampler from the flags: None without --styles, or today's parcels
    only with --confusers alone."""
    styled_only = args.hold_out or args.long_guns is not None or args.default_share is not None
    if styled_only and not args.styles:
        raise UsageError("--hold-out, --long-guns and --default-share need --styles")
    try:
        if not args.styles:
            return None if args.confusers is None else StyleSampler.today(args.confusers)
        return StyleSampler(
            tuple(args.hold_out or ()),
            long_guns=args.long_guns or 0.0,
            default_share=args.default_share or 0.0,
            confusers=args.confusers or 0.0,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def cmd_train(args: argparse.Namespace) -> int:
    """Run training and print where the checkpoint went."""
    if args.data is None and args.gallery is None:
        raise UsageError("give DATA (a folder of label sub-folders) and/or --gallery DIR")
    if args.data is not None and not args.data.is_dir():
        raise UsageError(f"{args.data} is not a directory")
    if args.gallery is not None and not (args.gallery / "manifest.json").is_file():
        raise UsageError(f"{args.gallery} is not a gallery (no manifest.json)")
    if args.epochs is not None and args.epochs < 1:
        raise UsageError("--epochs must be >= 1")
    fit_changes = {
        k: v
        for k, v in {
            "epochs": args.epochs,
            "loss": args.loss,
            "lr": args.lr,
            "patience": args.patience,
            "seed": args.seed,
        }.items()
        if v is not None
    }
    cfg = TrainConfig(
        out=str(args.out),
        data=str(args.data) if args.data else None,
        gallery=str(args.gallery) if args.gallery else None,
        feedback_db=str(args.feedback_db) if args.feedback_db else None,
        base=args.base,
        modality=args.modality,
        threads=args.threads,
        progress=not args.quiet,
        fit=photo_fit(**fit_changes),
        # --epochs is taken as given; without it the schedule counts optimiser steps.
        **({"min_steps": 0} if args.epochs is not None else {}),
    )
    for name in ("head_dim", "input_size", "freeze_blocks", "aug_passes", "val_fraction"):
        if getattr(args, name) is not None:
            cfg = replace(cfg, **{name: getattr(args, name)})
    state = (args.state or get_settings().state_dir) if args.gallery else None
    report = train_on_gallery(cfg, state)
    if args.register:
        Registry(args.register).add(report.model_dir)
    if args.json:
        emit_json(report.to_dict())
        return 0
    fit = report.fit
    out(
        f"trained model {report.model_id} on {report.train_samples} images "
        f"({report.val_samples} held out, {len(report.labels)} labels) in "
        f"{report.seconds['total']:.0f} s; best epoch {fit['best_epoch']}, "
        f"validation top-1 {fit['best_val_top1']:.3f}; saved to {report.model_dir}"
    )
    return 0


def cmd_train_xray(args: argparse.Namespace) -> int:
    """Train an X-ray model on generated crops (training.xray) and say where it went."""
    for name in ("parcels", "epochs", "freeze_blocks", "threads", "aug_passes", "input_size"):
        value = getattr(args, name)
        least = 0 if name == "freeze_blocks" else 1
        if value is not None and value < least:
            raise UsageError(f"--{name.replace('_', '-')} must be at least {least}")
    if args.method == "lda":
        report = _train_xray_lda(args)
    else:
        report = finetune_xray(_finetune_config(args), args.out, progress=not args.quiet)
    if args.register:
        Registry(args.register).add(args.out)
    if args.json:
        emit_json(report)
        return 0
    fit = report.get("fit") or {}
    quality = (
        f"validation top-1 {fit['best_val_top1']:.3f} at epoch {fit['best_epoch']}; " if fit else ""
    )
    seconds = report["seconds"]
    total = seconds["total"] if isinstance(seconds, dict) else seconds
    samples = report.get("train_samples", report.get("samples"))
    out(
        f"trained X-ray model {report['model_id']} on {samples} generated crops "
        f"in {total:.0f} s; {quality}saved to {args.out}. Build an X-ray gallery with it: "
        f"gunmatch gallery build REFS --gallery DIR --modality xray --model {args.out}"
    )
    return 0


def _finetune_config(args: argparse.Namespace) -> XrayFinetuneConfig:
    cfg = XrayFinetuneConfig()
    crops = {
        k: getattr(args, k)
        for k in ("parcels", "threads", "input_size")
        if getattr(args, k) is not None
    }
    cfg = replace(cfg, crops=replace(cfg.crops, **crops, styles=style_sampler(args)))
    if args.epochs is not None:
        cfg = replace(cfg, fit=replace(cfg.fit, epochs=args.epochs))
    if args.freeze_blocks is not None:
        cfg = replace(cfg, freeze_blocks=args.freeze_blocks)
    if args.aug_passes is not None:
        cfg = replace(cfg, aug_passes=args.aug_passes)
    return cfg


def _train_xray_lda(args: argparse.Namespace) -> dict:
    if args.dims is not None and args.dims < 1:
        raise UsageError("--dims must be at least 1")
    changes = {
        k: getattr(args, k)
        for k in ("parcels", "threads", "input_size", "dims")
        if getattr(args, k) is not None
    }
    return train_xray_head(XrayHeadConfig(**changes, styles=style_sampler(args)), args.out)


def cmd_train_threatmap(args: argparse.Namespace) -> int:
    """Train a threat map on generated parcels (training.xray.threatmap)."""
    cfg = ThreatMapTrainConfig()
    changes = {}
    if args.clean_every is not None:
        if args.clean_every < 2:
            raise UsageError("--clean-every must be at least 2 (some parcels must carry a part)")
        cfg = replace(cfg, clean_every=args.clean_every)
        changes["clean_every"] = args.clean_every
    for name in ("parcels", "val_parcels", "epochs", "threads"):
        value = getattr(args, name)
        if value is None:
            continue
        least = cfg.clean_every if name.endswith("parcels") else 1
        if value < least:
            raise UsageError(f"--{name.replace('_', '-')} must be at least {least}")
        changes[name] = value
    if args.long_side is not None:
        if not 64 <= args.long_side <= 4096:
            raise UsageError("--long-side must be between 64 and 4096")
        if args.init is not None:
            raise UsageError("--long-side comes from the --init map; give one or the other")
        changes["map"] = replace(cfg.map, long_side=args.long_side)
    if args.lr is not None:
        if not 0 < args.lr <= 1:
            raise UsageError("--lr must be in (0, 1]")
        changes["lr"] = args.lr
    if args.init is not None:
        if not is_threatmap(args.init):
            raise UsageError(f"--init {args.init} is not a threat map (gunmatch model list)")
        changes["init"] = str(args.init)
    changes["styles"] = style_sampler(args)
    card = train_threatmap(replace(cfg, **changes), args.out, progress=not args.quiet)
    if args.json:
        emit_json(card)
        return 0
    val = card["val"]
    out(
        f"trained a threat map on {card['parcels']} generated parcels in {card['total_s']:.0f} s; "
        f"held-out AUC {val['auc']:.3f}, detection above the highest clean parcel "
        f"{val['det_max_clean']:.3f} (epoch {card['best_epoch']}); saved to {args.out}. "
        f"Give it to an X-ray gallery: gunmatch gallery threatmap {args.out} --gallery DIR"
    )
    return 0
