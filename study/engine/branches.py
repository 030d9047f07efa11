"""Branches: paired controls and sanity checks trained off a lineage's trunk (OpenLTH's branches),
one registry entry each.

At every pruning round the trunk picks its mask m_k and restart point; each branch of the spec
then trains once from the same round: its own mask (derived from the trunk's step) and its own
restart weights, on the trunk's data order and schedule. The trunk is never re-trained, and a
branch's row differs from the trunk's row of the same round only by what the branch changes,
so their difference is paired (one seed, one round, one data order).

- `random_reinit`: the trunk's mask, a fresh random initialisation (the LTH control; "re-init"
  of Frankle et al., 2021).
- `random_prune`: the trunk's mask shuffled within each layer (same per-layer counts, uniformly
  random places), from the trunk's restart weights ("layer-wise shuffle", Frankle et al., 2021).
- `inverted`: the trunk's scoring rule keeping its lowest-scoring weights instead of the highest,
  from the trunk's restart weights ("score inversion", Frankle et al., 2021).

Adding a branch is one `Branch(...)` in `BRANCHES` (and its tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import torch

from study.engine.pruning import Mask, shuffle_within_slots
from study.engine.seeding import derive_seed
from study.engine.strategies import STRATEGIES, PruneStep

if TYPE_CHECKING:
    from study.engine.spec import LineageSpec


@dataclass(frozen=True)
class BranchStep:
    """What a branch's mask rule sees: the trunk's prune step of this round (before the trunk
    trained it) and the mask the trunk chose."""

    prune: PruneStep
    trunk_mask: Mask


def same_mask(step: BranchStep) -> Mask:
    return step.trunk_mask


def shuffled_mask(step: BranchStep) -> Mask:
    g = torch.Generator().manual_seed(derive_seed(step.prune.spec.seed, "branch_shuffle", step.prune.round))
    return shuffle_within_slots(step.trunk_mask, step.prune.plan.slots, g)


def inverted_mask(step: BranchStep) -> Mask:
    return STRATEGIES[step.prune.spec.strategy].mask(replace(step.prune, invert=True))


@dataclass(frozen=True)
class Branch:
    """A branch: where its mask comes from, and whether its survivors restart from the trunk's
    restart weights (`trunk`) or a fresh initialisation seeded by (seed, round) (`fresh_init`)."""

    name: str
    summary: str
    mask: Callable[[BranchStep], Mask]
    weights: Literal["trunk", "fresh_init"]
    needs_scores: bool = False
    moves_survivors: bool = False  # its mask keeps weights the trunk's mask pruned

    def problem(self, spec: LineageSpec) -> str | None:
        """Why this branch cannot grow on the spec's trunk (one line), or None."""
        strategy = STRATEGIES[spec.strategy]
        if self.needs_scores and not strategy.scored:
            return (
                f"branch {self.name} inverts the trunk's scores, and strategy {spec.strategy} scores no "
                f"weights; drop {self.name} from branches or use a scoring strategy (imp, snip, grasp, synflow...)"
            )
        if self.moves_survivors and self.weights == "trunk" and strategy.reset.weights == "trained":
            return (
                f"branch {self.name} keeps weights the trunk pruned, and strategy {spec.strategy} restarts from "
                f"trained weights, which are 0 there; use it on a trunk that rewinds (imp, random_reinit, snip...)"
            )
        return None


BRANCHES: dict[str, Branch] = {
    b.name: b
    for b in (
        Branch("random_reinit", "the trunk's mask, survivors re-initialised at random", same_mask, "fresh_init"),
        Branch(
            "random_prune",
            "the trunk's mask shuffled within each layer, from the trunk's restart weights",
            shuffled_mask,
            "trunk",
            moves_survivors=True,
        ),
        Branch(
            "inverted",
            "the trunk's scores inverted (its lowest-scoring weights kept), from the trunk's restart weights",
            inverted_mask,
            "trunk",
            needs_scores=True,
        ),
    )
}


def branch_label(strategy: str, branch: str) -> str:
    """The strategy column of a branch's rows: `<trunk strategy>.<branch>` (imp.random_reinit)."""
    return f"{strategy}.{branch}"


def branch_lineage_id(trunk_lineage_id: str, branch: str) -> str:
    return f"{trunk_lineage_id}.{branch}"
