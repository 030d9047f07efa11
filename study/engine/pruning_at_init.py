"""Pruning-at-init baselines: SNIP (Lee et al. 2019), GraSP (Wang et al. 2020) and SynFlow
(Tanaka et al. 2020), scored on the initial weights θ0 and pruned to exact per-group counts."""

from __future__ import annotations

import copy
from typing import cast

import torch
from torch import Tensor, nn

from study.engine.models.slots import Slot
from study.engine.pruning import Mask, keep_top

SCORE_BATCHES = 4
GRASP_TEMPERATURE = 200.0
SYNFLOW_ITERATIONS = 100


def _grad(weight: Tensor) -> Tensor:
    assert weight.grad is not None, "scores are read after a backward pass"
    return weight.grad


def _prunable(model: nn.Module, params: list[str]) -> list[Tensor]:
    named = dict(model.named_parameters())
    return [named[n] for n in params]


def snip_scores(model: nn.Module, task, params: list[str]) -> dict[str, Tensor]:
    """|θ ⊙ ∂L/∂θ| summed over a few training batches."""
    model = copy.deepcopy(model)
    weights = _prunable(model, params)
    model.zero_grad()
    for i in range(SCORE_BATCHES):
        x, y = task.batch(i)
        task.loss(model, x, y).backward()
    return {n: (_grad(w) * w).detach().abs() for n, w in zip(params, weights, strict=True)}


def grasp_scores(model: nn.Module, task, params: list[str]) -> dict[str, Tensor]:
    """θ ⊙ Hg, normalised. Keeping the highest prunes the lowest, i.e. the weights whose removal
    least reduces (or most increases) gradient flow: the paper's rule of removing the top of -θ ⊙ Hg."""
    model = copy.deepcopy(model)
    weights = _prunable(model, params)
    g = [torch.zeros_like(w) for w in weights]
    for i in range(SCORE_BATCHES):
        x, y = task.batch(i)
        grads = torch.autograd.grad(task.loss(model, x, y, temperature=GRASP_TEMPERATURE), weights)
        g = [a + b.detach() for a, b in zip(g, grads, strict=True)]
    model.zero_grad()
    for i in range(SCORE_BATCHES):
        x, y = task.batch(i)
        grads = torch.autograd.grad(task.loss(model, x, y, temperature=GRASP_TEMPERATURE), weights, create_graph=True)
        cast(Tensor, sum((a * b).sum() for a, b in zip(g, grads, strict=True))).backward()
    scores = {n: (_grad(w) * w).detach() for n, w in zip(params, weights, strict=True)}
    norm = torch.cat([s.flatten() for s in scores.values()]).sum().abs() + 1e-10
    return {n: s / norm for n, s in scores.items()}


def synflow_mask(
    model: nn.Module,
    task,
    params: list[str],
    mask: Mask,
    slots: dict[str, Slot],
    groups: dict[str, list[str]],
    keep: dict[str, int],
    *,
    invert: bool = False,
) -> Mask:
    """Iterative SynFlow: 100 rounds of data-free synaptic-flow scores on |θ| (in float64),
    shrinking each group exponentially towards its final count (with `invert`, each step keeps
    the lowest scores). The task supplies the all-ones
    input (images) or a constant token sequence (sequence models) and reads the output."""
    model = copy.deepcopy(model).double().eval()
    named = dict(model.named_parameters())
    with torch.no_grad():
        for p in model.state_dict().values():
            if p.is_floating_point():
                p.abs_()
    start = {
        g: sum(
            int((mask[slots[s].param] if slots[s].rows is None else mask[slots[s].param][slots[s].rows]).sum())
            for s in members
        )
        for g, members in groups.items()
    }
    current = dict(mask)
    originals = {n: named[n].detach().clone() for n in params}
    for i in range(1, SYNFLOW_ITERATIONS + 1):
        with torch.no_grad():
            for n in params:
                named[n].copy_(originals[n] * current[n])
        model.zero_grad()
        task.synflow_output(model).sum().backward()
        scores = {n: (_grad(named[n]) * named[n]).detach().abs() * (-1 if invert else 1) for n in params}
        step_keep = {g: int(round(start[g] * (keep[g] / start[g]) ** (i / SYNFLOW_ITERATIONS))) for g in groups}
        step_keep = {g: keep[g] if i == SYNFLOW_ITERATIONS else max(step_keep[g], keep[g]) for g in groups}
        current = keep_top(scores, current, slots, groups, step_keep)
    return current
