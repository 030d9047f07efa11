"""A searched trial's lineages are filed under one trial id per seed: `<Tune trial>-s<seed>`. The
one pair of functions that builds and reads it."""

from __future__ import annotations

from typing import Literal

SEED_MARK = "-s"


def seed_trial_id(tune_trial: str, seed: int | Literal["*"]) -> str:
    """The trial id a Tune trial's lineage of `seed` is filed under ('*': a glob of all its seeds')."""
    return f"{tune_trial}{SEED_MARK}{seed}"


def tune_trial_of(trial_id: str) -> str | None:
    """The Tune trial a seed's trial id belongs to; None for an id no Tune trial gave."""
    head, mark, seed = trial_id.rpartition(SEED_MARK)
    return head if mark and head and seed.isdigit() else None
