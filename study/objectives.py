"""Study objectives computed from a trial's rounds (seed-mean test accuracy per round).

Each is defined on the rounds seen so far, and its partial value is a bound on the final one in
the direction that hurts the trial (so a trial stopped early by a scheduler is never flattered):
`sparsest_within` (min) only decreases as rounds are added, `auc` (max) only grows and
`accuracy_at` (max) is 0 until the target sparsity is reached."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RoundPoint:
    remaining_pct: float
    test_acc: float


def sparsest_within(points: list[RoundPoint], tolerance: float) -> float:
    """The smallest % of weights remaining among rounds whose test accuracy stays within
    `tolerance` of the dense round's (the lottery-ticket question)."""
    dense = points[0].test_acc
    return min(p.remaining_pct for p in points if p.test_acc >= dense - tolerance) if points else 100.0


def accuracy_at(points: list[RoundPoint], target_remaining: float) -> float:
    """Test accuracy of the first round at or below `target_remaining` % of the weights."""
    for p in points:
        if p.remaining_pct <= target_remaining + 1e-9:
            return p.test_acc
    return 0.0


def auc(points: list[RoundPoint]) -> float:
    """Area under test accuracy vs log10(100 / % remaining) (accuracy × decades of pruning)."""
    area = 0.0
    for a, b in zip(points, points[1:]):
        width = math.log10(a.remaining_pct / b.remaining_pct)
        area += width * (a.test_acc + b.test_acc) / 2
    return area


def objective_metrics(points: list[RoundPoint], name: str, tolerance: float,
                      target_remaining: float | None) -> dict[str, float]:
    """The metric(s) a trial reports for objective `name`."""
    if name == "pareto":
        return {"final_test_acc": points[-1].test_acc, "final_remaining_pct": points[-1].remaining_pct}
    if name == "sparsest_within":
        return {"objective_sparsest_within": sparsest_within(points, tolerance)}
    if name == "accuracy_at":
        return {"objective_accuracy_at": accuracy_at(points, target_remaining)}
    return {"objective_auc": auc(points)}


def pareto_front(values: list[tuple[float, ...]], modes: list[str]) -> list[int]:
    """Indices of the non-dominated points."""
    sign = [1 if m == "max" else -1 for m in modes]
    scored = [tuple(s * v for s, v in zip(sign, vals)) for vals in values]
    front = []
    for i, a in enumerate(scored):
        dominated = any(all(x >= y for x, y in zip(b, a)) and any(x > y for x, y in zip(b, a))
                        for j, b in enumerate(scored) if j != i)
        if not dominated:
            front.append(i)
    return front
