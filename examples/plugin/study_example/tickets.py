"""A strategy, a branch and an objective of one's own.

- `magnitude_increase` (Zhou et al., 2019, "Deconstructing lottery tickets"): keep the weights
  whose magnitude grew most in training, |w_trained| - |w_0|, rewound to θ_k.
- `magnitude_at_init` branch: the trunk's per-layer counts, kept by |θ0| (the weights that were
  largest at initialisation), from the trunk's restart weights: is training's information needed?
- `last_val_acc` objective: the validation accuracy of the last round seen (max)."""

from __future__ import annotations

from study.analysis.objectives import Objective
from study.engine.branches import Branch, BranchStep
from study.engine.strategies import PruneStep, Reset, Strategy


def _magnitude_increase(step: PruneStep):
    trained, init = step.state.trained, step.state.theta0
    assert trained is not None
    scores = {n: trained[n].abs() - init[n].abs() for n in step.plan.params}
    return step.keep_top(scores, step.state.mask)


def _magnitude_at_init(step: BranchStep):
    prune = step.prune
    scores = {n: prune.state.theta0[n].abs() for n in prune.plan.params}
    return prune.keep_top(scores, prune.state.mask)


MAGNITUDE_INCREASE = Strategy(
    "magnitude_increase",
    "keep the weights whose magnitude grew most in training (Zhou et al. 2019), rewound to θ_k",
    _magnitude_increase,
    Reset("theta_k"),
)
MAGNITUDE_AT_INIT = Branch(
    "magnitude_at_init",
    "the trunk's per-layer counts kept by |θ0|, from the trunk's restart weights",
    _magnitude_at_init,
    "trunk",
)
LAST_VAL_ACC = Objective(
    "last_val_acc",
    ("objective_last_val_acc",),
    ("max",),
    lambda points, p: (points[-1].val_acc,),
    lambda points, p: len(points) - 1,
)
