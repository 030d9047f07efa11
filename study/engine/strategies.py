"""Ticket-finding strategies (DESIGN §4), one registry entry each.

A strategy is three small parts: a mask rule (where a pruning round's mask comes from: JaxPruner's
"scoring method"), a reset rule (what the surviving weights restart from, and at which iteration
and learning rate: OpenLTH's branch), and what it requires of a spec. The lineage asks the entry;
nothing else compares strategy names. Adding a strategy is one `Strategy(...)` in `STRATEGIES`
(and its tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import torch
from torch import nn

from study.engine.pruning import Mask, dense_mask, keep_top, magnitude_scores, random_scores
from study.engine.pruning_at_init import grasp_scores, snip_scores, synflow_mask
from study.engine.seeding import derive_seed
from study.engine.state import LineageState, StateDict
from study.engine.task import Task
from study.engine.train import final_lr
from study.errors import SpecError

if TYPE_CHECKING:
    from study.engine.plan import LineagePlan
    from study.engine.spec import LineageSpec


@dataclass(frozen=True)
class PruneStep:
    """What a mask rule sees when it picks round `round`'s mask. `model` is scratch: a rule may
    load any weights into it. With `invert` a scored rule keeps its lowest-scoring weights
    instead (the score-inversion sanity check, Frankle et al. 2021)."""

    spec: LineageSpec
    plan: LineagePlan
    round: int
    state: LineageState
    model: nn.Module
    task: Task
    invert: bool = False

    def keep_top(self, scores: dict[str, torch.Tensor], within: Mask) -> Mask:
        """Keep this round's planned count of the highest-scoring weights of each group in `within`."""
        if self.invert:
            scores = {n: -s for n, s in scores.items()}
        return keep_top(scores, within, self.plan.slots, self.plan.groups, self.plan.keep(self.round))


class MaskRule(Protocol):
    def __call__(self, step: PruneStep) -> Mask: ...


@dataclass(frozen=True)
class Magnitude:
    """The largest-magnitude surviving weights of `source` (trained weights, or the IMP track's)."""

    source: Literal["trained", "imp_trained"] = "trained"

    def __call__(self, step: PruneStep) -> Mask:
        step.model.load_state_dict(_held(step.state, self.source))
        return step.keep_top(magnitude_scores(step.model, step.plan.params), step.state.mask)


def random_within_mask(step: PruneStep) -> Mask:
    """Uniformly random surviving weights (per-layer counts as IMP's), from a generator seeded by
    (seed, round)."""
    g = torch.Generator().manual_seed(derive_seed(step.spec.seed, "random_prune", step.round))
    return step.keep_top(random_scores(step.state.mask, g), step.state.mask)


@dataclass(frozen=True)
class AtInit:
    """A pruning-at-init score of θ0, ranked over all weights (each round re-prunes θ0 to the
    round's sparsity)."""

    scores: Callable[[nn.Module, Task, list[str]], dict[str, torch.Tensor]]

    def __call__(self, step: PruneStep) -> Mask:
        step.model.load_state_dict(step.state.theta0)
        return step.keep_top(
            self.scores(step.model, step.task, step.plan.params), dense_mask(step.model, step.plan.params)
        )


def synflow_at_init(step: PruneStep) -> Mask:
    """SynFlow's iterative data-free pruning of θ0 to the round's sparsity."""
    step.model.load_state_dict(step.state.theta0)
    plan = step.plan
    return synflow_mask(
        step.model,
        step.task,
        plan.params,
        dense_mask(step.model, plan.params),
        plan.slots,
        plan.groups,
        plan.keep(step.round),
        invert=step.invert,
    )


@dataclass(frozen=True)
class RoundStart:
    """Where a pruning round starts: the weights its survivors are reset to, the global
    iteration training resumes at, and the learning rate by iteration (None: the schedule's)."""

    weights: StateDict
    iteration: int
    lr_fn: Callable[[int], float] | None = None


ResetWeights = Literal["theta_k", "trained", "fresh_init", "theta0"]


@dataclass(frozen=True)
class Reset:
    """What a pruning round's surviving weights restart from: `theta_k` (the dense round's
    weights at the rewind iteration k), `trained` (the last round's trained weights),
    `fresh_init` (a new random initialisation) or `theta0`. Training resumes at iteration k on the
    schedule's learning rate, or, with `final_lr`, at the schedule's last rate throughout.
    Restarting from θ0 or at the final rate has no iteration to rewind to: such a strategy
    requires k = 0 (`Strategy.no_rewind`)."""

    weights: ResetWeights
    final_lr: bool = False

    @property
    def rewinds(self) -> bool:
        return self.weights != "theta0" and not self.final_lr

    def start(self, spec: LineageSpec, state: LineageState, fresh_init: Callable[[], StateDict]) -> RoundStart:
        weights = fresh_init() if self.weights == "fresh_init" else _held(state, self.weights)
        if self.final_lr:
            lr = final_lr(spec.train)
            return RoundStart(weights, spec.rewind_iteration, lambda it: lr)
        return RoundStart(weights, spec.rewind_iteration)


def _held(state: LineageState, name: str) -> StateDict:
    weights = getattr(state, name)
    assert weights is not None, f"the lineage holds no {name} yet"
    return weights


Requirement = Callable[["LineageSpec"], "str | None"]  # the one-line error a spec breaks, or None


@dataclass(frozen=True)
class LayerwiseOnly:
    """The strategy keeps per-layer sparsity: global pruning is refused."""

    why: str

    def __call__(self, spec: LineageSpec) -> str | None:
        if spec.prune.scope == "layerwise":
            return None
        return f"strategy {spec.strategy} {self.why} and needs prune.scope: layerwise"


@dataclass(frozen=True)
class PruningRounds:
    """The strategy needs at least one pruning round."""

    why: str

    def __call__(self, spec: LineageSpec) -> str | None:
        return None if spec.rounds != 0 else f"strategy {spec.strategy} needs rounds >= 1 ({self.why})"


@dataclass(frozen=True)
class Strategy:
    """A ticket-finding strategy. `one_shot`: a single pruning round straight to the sparsity of
    the last iterative round. `imp_track`: its masks come from an IMP lineage trained beside it
    (the extra training is counted). `no_rewind`: why k must be 0 and what to do, for a reset that
    has no iteration to rewind to. `summary` is what `study plan` says of it."""

    name: str
    summary: str
    mask: MaskRule
    reset: Reset
    one_shot: bool = False
    imp_track: bool = False
    no_rewind: str | None = None
    scored: bool = True
    requires: tuple[Requirement, ...] = ()

    def __post_init__(self) -> None:
        if not self.reset.rewinds and not self.no_rewind:
            raise ValueError(
                f"strategy {self.name}: a reset to {self.reset.weights} (final_lr={self.reset.final_lr}) "
                f"cannot rewind; say why in no_rewind"
            )
        if isinstance(self.mask, Magnitude) and (self.mask.source == "imp_trained") != self.imp_track:
            raise ValueError(f"strategy {self.name}: masks from the IMP track's weights go with imp_track=True")

    @property
    def ticket_problem(self) -> str | None:
        """Why a lineage that starts from a ticket (`init_from`) cannot use this strategy: it
        would overwrite the ticket's weights or mask (None: it keeps them)."""
        if self.reset.weights == "fresh_init":
            return "re-initialises the survivors at random, overwriting the ticket's starting weights"
        if isinstance(self.mask, AtInit) or self.mask is synflow_at_init:
            return "scores the dense θ0 at init, overwriting the ticket's mask"
        return None

    def check(self, spec: LineageSpec) -> None:
        if self.no_rewind and spec.rewind_iteration:
            raise SpecError(f"strategy {self.name} {self.no_rewind}")
        for requirement in self.requires:
            problem = requirement(spec)
            if problem:
                raise SpecError(problem)


_AT_INIT = "prunes at init and resets to θ0; set rewind_iteration: 0"

STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy(
            "imp",
            "iterative magnitude pruning, survivors rewound to θ_k (k = 0: the original LTH)",
            Magnitude(),
            Reset("theta_k"),
        ),
        Strategy(
            "lr_rewind",
            "IMP keeping the trained weights, the learning-rate schedule rewound to k",
            Magnitude(),
            Reset("trained"),
        ),
        Strategy(
            "finetune",
            "IMP keeping the trained weights, fine-tuned at the schedule's final learning rate",
            Magnitude(),
            Reset("trained", final_lr=True),
            no_rewind="keeps the trained weights and does not rewind; set rewind_iteration: 0 (or use lr_rewind)",
        ),
        Strategy(
            "random_reinit",
            "IMP's masks with a fresh random initialisation (the LTH control)",
            Magnitude("imp_trained"),
            Reset("fresh_init"),
            imp_track=True,
        ),
        Strategy(
            "random_prune",
            "random masks of IMP's per-layer sparsity, survivors rewound to θ_k",
            random_within_mask,
            Reset("theta_k"),
            scored=False,
            requires=(LayerwiseOnly("keeps per-layer sparsity"),),
        ),
        Strategy(
            "oneshot",
            "one magnitude pruning of the dense weights to the final sparsity, rewound to θ_k",
            Magnitude(),
            Reset("theta_k"),
            one_shot=True,
            requires=(PruningRounds("the iterative round count whose sparsity it jumps to"),),
        ),
        Strategy(
            "snip", "SNIP's connection sensitivity at θ0", AtInit(snip_scores), Reset("theta0"), no_rewind=_AT_INIT
        ),
        Strategy(
            "grasp",
            "GraSP's gradient-flow preservation at θ0",
            AtInit(grasp_scores),
            Reset("theta0"),
            no_rewind=_AT_INIT,
        ),
        Strategy(
            "synflow",
            "SynFlow's data-free iterative synaptic flow at θ0",
            synflow_at_init,
            Reset("theta0"),
            no_rewind=_AT_INIT,
        ),
    )
}
