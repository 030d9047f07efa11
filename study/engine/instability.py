"""Instability analysis (Frankle et al., ICML 2020, "Linear Mode Connectivity and the Lottery
Ticket Hypothesis"): two copies of a network trained from the same rewind point on different
data orders, evaluated along the straight line between them.

The error barrier is max over α of E((1 − α)·W_a + α·W_b) − (E(W_a) + E(W_b)) / 2, the paper's
instability: near 0 means the two copies lie in one linearly connected minimum (the network is
stable to SGD noise from that point). Both copies share one mask, so every point of the line is
the same sparse network. Floating-point buffers (batch-norm statistics) are interpolated with
the weights."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from study.engine.state import StateDict

SPLITS = ("val", "test")


@dataclass(frozen=True)
class PathPoint:
    alpha: float
    loss: dict[str, float]  # split -> mean cross-entropy
    error: dict[str, float]  # split -> 1 − accuracy


def alphas(points: int) -> list[float]:
    """`points` evenly spaced interpolation weights from 0 (copy a) to 1 (copy b)."""
    return [i / (points - 1) for i in range(points)]


def interpolate(a: StateDict, b: StateDict, alpha: float) -> StateDict:
    """(1 − α)·a + α·b for floating-point tensors; integer buffers (step counters) from a."""
    return {k: torch.lerp(v, b[k], alpha) if v.is_floating_point() else v.clone() for k, v in a.items()}


def linear_path(
    model: nn.Module, a: StateDict, b: StateDict, points: int, evaluate: Callable[[nn.Module, str], tuple[float, float]]
) -> list[PathPoint]:
    """Load each point of the line from `a` to `b` into `model` and evaluate it on every split
    (`evaluate(model, split)` gives (loss, accuracy)). `model` is left holding `a`."""
    path = []
    for alpha in alphas(points):
        model.load_state_dict(interpolate(a, b, alpha))
        measured = {split: evaluate(model, split) for split in SPLITS}
        path.append(
            PathPoint(
                alpha,
                {s: loss for s, (loss, _) in measured.items()},
                {s: 1.0 - acc for s, (_, acc) in measured.items()},
            )
        )
    model.load_state_dict(a)
    return path


def barrier(values: list[float]) -> float:
    """The height of the highest point of a path above the mean of its two ends."""
    return max(values) - (values[0] + values[-1]) / 2
