"""Training on a gallery with its analysts' feedback, wherever the gallery's state keeps it.

A shared gallery keeps feedback in its PostgreSQL schema, an embedded one in
``<state_dir>/state.sqlite``; either way the query images are files under the state
directory. ``training`` cannot open the service state (it sits below this package), so this
reads the rows here and hands them down as a ``training.feedback.FeedbackSet``.
"""

from __future__ import annotations

from pathlib import Path

from gunmatch.state import STATE_DB, open_state, state_location
from training.feedback import FeedbackSet, read_feedback_db
from training.train import TrainConfig, TrainReport, train


def gallery_feedback(
    gallery_dir: str | Path,
    state_dir: str | Path | None = None,
    feedback_db: str | Path | None = None,
) -> FeedbackSet:
    """The feedback of the gallery at ``gallery_dir``: from ``feedback_db`` (a state SQLite
    file) when given, else from the gallery's own state (PostgreSQL for a shared gallery,
    ``<state_dir or gallery_dir>/state.sqlite`` otherwise; none if that file is absent)."""
    if feedback_db:
        return read_feedback_db(feedback_db)
    location = state_location(gallery_dir, state_dir)
    if not location.shared and not (location.state_dir / STATE_DB).is_file():
        return FeedbackSet([], location.state_dir)  # never made a state file just to read it
    state = open_state(gallery_dir, state_dir)
    try:
        return FeedbackSet(state.feedback.list(), state.location.state_dir)
    finally:
        state.close()


def train_on_gallery(cfg: TrainConfig, state_dir: str | Path | None = None) -> TrainReport:
    """``training.train.train`` with the feedback of ``cfg.gallery`` (if any) read from its
    state; ``cfg.feedback_db`` still overrides where it comes from."""
    feedback = None
    if cfg.gallery:
        feedback = gallery_feedback(cfg.gallery, state_dir, cfg.feedback_db)
    return train(cfg, feedback)
