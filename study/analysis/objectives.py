"""Study objectives computed from a trial's rounds (seed means per round).

Selection uses validation data only: every objective reads `val_acc` (validation accuracy at the
early-stop iteration, the paper's early-stopping point). `test_acc` rides along for reporting:
`selected_round` says which round an objective's value is read from, so the summary can report
the test accuracy of exactly that round, and nothing here ever chooses on it.

Each objective is defined on the rounds seen so far, and its partial value is a bound on the final
one in the direction that hurts the trial (so a trial stopped early by a scheduler is never
flattered): `sparsest_within` and `stable_sparsest_within` (min) only decrease as rounds are added,
`auc` (max) only grows and `accuracy_at` (max) is 0 until the target sparsity is reached;
`dense_val_acc` (max) and `dense_val_loss` (min; a language model's validation log perplexity),
for choosing training settings before any pruning, are final after round 0."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from study.errors import SpecError
from study.typed_yaml import choice


@dataclass(frozen=True)
class RoundPoint:
    remaining_pct: float
    val_acc: float  # selection
    test_acc: float | None = None  # reporting only
    val_error_barrier: float | None = None  # selection: the round's instability, when measured
    val_loss: float | None = (
        None  # selection: validation loss at the early-stop iteration (a language model's log perplexity)
    )


class SeedRound(Protocol):
    """What a seed mean reads of one seed's round (a `RoundResult`, or a lake row as attributes)."""

    @property
    def remaining_pct(self) -> float: ...
    @property
    def val_acc(self) -> float: ...
    @property
    def test_acc(self) -> float: ...
    @property
    def val_error_barrier(self) -> float | None: ...
    @property
    def val_loss(self) -> float: ...


def seed_mean(rows: Sequence[SeedRound]) -> RoundPoint:
    """One round of a trial: the mean over its seeds (the one reduction the live trainable, the
    after-run summary and the app share). The test accuracy is carried for reporting, objectives
    never read it. The barrier is a mean only when every seed measured it."""
    n = len(rows)
    barriers = [r.val_error_barrier for r in rows]
    return RoundPoint(
        sum(r.remaining_pct for r in rows) / n,
        sum(r.val_acc for r in rows) / n,
        sum(r.test_acc for r in rows) / n,
        None if any(b is None for b in barriers) else sum(b for b in barriers if b is not None) / n,
        sum(r.val_loss for r in rows) / n,
    )


def seed_points(per_seed: Sequence[Sequence[SeedRound]]) -> list[RoundPoint]:
    """A trial's points: the seed mean of each round that every seed finished, from round 0 up to
    the first round some seed lacks (each seed's rows in round order, one per round)."""
    if not per_seed:
        return []
    return [seed_mean(rows) for rows in zip(*per_seed, strict=False)]


def _sparsest_index(points: list[RoundPoint], tolerance: float, max_barrier: float | None = None) -> int | None:
    dense = points[0].val_acc
    within = [
        i
        for i, p in enumerate(points)
        if p.val_acc >= dense - tolerance
        and (max_barrier is None or (p.val_error_barrier is not None and p.val_error_barrier <= max_barrier))
    ]
    return min(within, key=lambda i: (points[i].remaining_pct, i)) if within else None


def sparsest_within(points: list[RoundPoint], tolerance: float, max_barrier: float | None = None) -> float:
    """The smallest % of weights remaining among rounds whose validation accuracy stays within
    `tolerance` of the dense round's (the lottery-ticket question); with `max_barrier`, among
    those whose validation error barrier was measured and is at most that (stable to SGD noise).
    100 when no round qualifies."""
    i = _sparsest_index(points, tolerance, max_barrier) if points else None
    return 100.0 if i is None else points[i].remaining_pct


def _at_index(points: list[RoundPoint], target_remaining: float) -> int | None:
    return next((i for i, p in enumerate(points) if p.remaining_pct <= target_remaining + 1e-9), None)


def accuracy_at(points: list[RoundPoint], target_remaining: float) -> float:
    """Validation accuracy of the first round at or below `target_remaining` % of the weights."""
    i = _at_index(points, target_remaining)
    return 0.0 if i is None else points[i].val_acc


def auc(points: list[RoundPoint], field: str = "val_acc") -> float:
    """Area under accuracy vs log10(100 / % remaining) (accuracy × decades of pruning)."""
    area = 0.0
    for a, b in itertools.pairwise(points):
        width = math.log10(a.remaining_pct / b.remaining_pct)
        area += width * (getattr(a, field) + getattr(b, field)) / 2
    return area


@dataclass(frozen=True)
class Objective:
    """A study objective: the metric(s) a trial reports (all read from validation accuracy), their
    directions, and the round a value is read from (None: no such round yet)."""

    name: str
    metrics: tuple[str, ...]
    modes: tuple[str, ...]
    values: Callable[[list[RoundPoint], ObjectiveSpec], tuple[float, ...]]
    selected: Callable[[list[RoundPoint], ObjectiveSpec], int | None]
    needs_target: bool = False
    needs_barrier: bool = False
    test_summary: Callable[[list[RoundPoint]], dict[str, float]] | None = None  # reported beside it, never selected on

    @property
    def multi(self) -> bool:
        return len(self.metrics) > 1


def _last(points: list[RoundPoint], params: ObjectiveSpec) -> int | None:
    return len(points) - 1


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective(
            "sparsest_within",
            ("objective_sparsest_within",),
            ("min",),
            lambda points, p: (sparsest_within(points, p.tolerance),),
            lambda points, p: _sparsest_index(points, p.tolerance),
        ),
        Objective(
            "stable_sparsest_within",
            ("objective_stable_sparsest_within",),
            ("min",),
            lambda points, p: (sparsest_within(points, p.tolerance, p.max_barrier),),
            lambda points, p: _sparsest_index(points, p.tolerance, p.max_barrier),
            needs_barrier=True,
        ),
        Objective(
            "accuracy_at",
            ("objective_accuracy_at",),
            ("max",),
            lambda points, p: (accuracy_at(points, p.target_remaining or 0.0),),
            lambda points, p: _at_index(points, p.target_remaining or 0.0),
            needs_target=True,
        ),
        Objective(
            "auc",
            ("objective_auc",),
            ("max",),
            lambda points, p: (auc(points),),
            _last,
            test_summary=lambda points: {"test_auc": auc(points, "test_acc")},
        ),
        Objective(
            "dense_val_acc",
            ("objective_dense_val_acc",),
            ("max",),
            lambda points, p: (points[0].val_acc,),
            lambda points, p: 0,
        ),
        Objective(
            "dense_val_loss",
            ("objective_dense_val_loss",),
            ("min",),
            lambda points, p: (math.inf if points[0].val_loss is None else points[0].val_loss,),
            lambda points, p: 0,
        ),
        Objective(
            "pareto",
            ("pareto_val_acc", "pareto_remaining_pct"),
            ("max", "min"),
            lambda points, p: (points[-1].val_acc, points[-1].remaining_pct),
            _last,
        ),
    )
}


_PLUGIN_OBJECTIVES: dict[str, dict[str, str]] = {}  # a plugin objective's source, by name


def register_objective(objective: Objective, module: str | None = None) -> None:
    """A plugin's objective (it reads validation metrics only, like the built-ins); its source is
    `module`'s package (default: the caller's)."""
    import sys

    from study.plugins import source_identity

    name = objective.name
    identity = source_identity(objective.values, module or str(sys._getframe(1).f_globals.get("__name__", "?")))
    if name in OBJECTIVES and _PLUGIN_OBJECTIVES.get(name) != identity:
        raise SpecError(f"plugin objective {name!r} has the name of another objective; register it under another name")
    OBJECTIVES[name] = objective
    _PLUGIN_OBJECTIVES[name] = identity


def objective(name: str) -> Objective:
    """`OBJECTIVES[name]`, or a plugin's from its `study.objectives` entry point."""
    if name not in OBJECTIVES:
        from study.plugins import entry_points, load_entry_point

        found = entry_points("objectives").get(name)
        if found is None:
            choice("objective.name", name, tuple(OBJECTIVES))
            raise SpecError(f"objective.name: unknown value '{name}'")
        register_objective(load_entry_point(found, "objectives"), found.module)
    return OBJECTIVES[name]


@dataclass(frozen=True)
class ObjectiveSpec:
    """A study's `objective:` block: which objective, and the settings it reads. Everything that
    computes an objective's values (the live trainable, the after-run summary, the app) takes one
    of these, built from the study spec, so no default is repeated anywhere."""

    name: str = "sparsest_within"
    tolerance: float = 0.01
    target_remaining: float | None = None
    max_barrier: float | None = None  # stable_sparsest_within: the largest validation error barrier that counts

    def validate(self) -> None:
        objective(self.name)  # a built-in, a registered plugin's or one its entry point names
        if not 0 <= self.tolerance < 1:
            raise SpecError(f"objective.tolerance is a fraction of accuracy in [0, 1), got {self.tolerance}")
        if self.objective.needs_target and not (self.target_remaining and 0 < self.target_remaining < 100):
            raise SpecError(f"objective {self.name} needs target_remaining, a percentage in (0, 100)")
        if self.objective.needs_barrier and not (self.max_barrier is not None and 0 <= self.max_barrier < 1):
            raise SpecError(
                f"objective {self.name} needs max_barrier, the largest validation error barrier in [0, 1) that "
                f"counts as stable (the paper's: 0.02)"
            )
        if self.max_barrier is not None and not self.objective.needs_barrier:
            raise SpecError(
                f"objective.max_barrier constrains stable_sparsest_within, not {self.name}; drop it or change the objective"
            )

    @property
    def objective(self) -> Objective:
        return objective(self.name)

    @property
    def metrics(self) -> list[str]:
        return list(self.objective.metrics)

    @property
    def modes(self) -> list[str]:
        return list(self.objective.modes)

    @property
    def multi(self) -> bool:
        return self.objective.multi

    def selected(self, points: list[RoundPoint]) -> int | None:
        """The index of the round the objective's value is read from (None: no such round yet)."""
        return self.objective.selected(points, self) if points else None

    def values(self, points: list[RoundPoint]) -> dict[str, float]:
        """The metric(s) a trial reports for this objective, from validation data only."""
        return dict(zip(self.objective.metrics, self.objective.values(points, self), strict=True))

    def reported_test(self, points: list[RoundPoint]) -> dict[str, float | None]:
        """For reporting next to the objective: the test accuracy of the round the objective was
        read from (and, for auc, the same area on test accuracy). Never fed back to any searcher."""
        i = self.selected(points)
        out: dict[str, float | None] = {
            "test_acc_at_selected": None if i is None else points[i].test_acc,
            "remaining_pct_at_selected": None if i is None else points[i].remaining_pct,
        }
        summary = self.objective.test_summary
        if summary and all(p.test_acc is not None for p in points):
            out.update(summary(points))
        return out


def pareto_front(values: list[tuple[float, ...]], modes: list[str]) -> list[int]:
    """Indices of the non-dominated points."""
    sign = [1 if m == "max" else -1 for m in modes]
    scored = [tuple(s * v for s, v in zip(sign, vals, strict=True)) for vals in values]
    front = []
    for i, a in enumerate(scored):
        dominated = any(
            all(x >= y for x, y in zip(b, a, strict=True)) and any(x > y for x, y in zip(b, a, strict=True))
            for j, b in enumerate(scored)
            if j != i
        )
        if not dominated:
            front.append(i)
    return front
