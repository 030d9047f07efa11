"""Pruning-at-init baselines: SNIP (Lee et al. 2019), GraSP (Wang et al. 2020) and SynFlow
(Tanaka et al. 2020), scored on the initial weights θ0 and pruned to exact per-group counts."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from study.pruning import Mask, keep_top

SCORE_BATCHES = 4
GRASP_TEMPERATURE = 200.0
SYNFLOW_ITERATIONS = 100


def _prunable(model: nn.Module, layers: list[str]) -> list[Tensor]:
    params = dict(model.named_parameters())
    return [params[n] for n in layers]


def snip_scores(model: nn.Module, task, layers: list[str]) -> dict[str, Tensor]:
    """|θ ⊙ ∂L/∂θ| summed over a few training batches."""
    model = copy.deepcopy(model)
    weights = _prunable(model, layers)
    model.zero_grad()
    for i in range(SCORE_BATCHES):
        x, y = task.batch(i)
        task.loss(model, x, y).backward()
    return {n: (w.grad * w).detach().abs() for n, w in zip(layers, weights)}


def grasp_scores(model: nn.Module, task, layers: list[str]) -> dict[str, Tensor]:
    """θ ⊙ Hg (keeping the highest removes the weights whose removal hurts gradient flow most)."""
    model = copy.deepcopy(model)
    weights = _prunable(model, layers)
    g = [torch.zeros_like(w) for w in weights]
    for i in range(SCORE_BATCHES):
        x, y = task.batch(i)
        grads = torch.autograd.grad(F.cross_entropy(model(x) / GRASP_TEMPERATURE, y), weights)
        g = [a + b.detach() for a, b in zip(g, grads)]
    model.zero_grad()
    for i in range(SCORE_BATCHES):
        x, y = task.batch(i)
        grads = torch.autograd.grad(F.cross_entropy(model(x) / GRASP_TEMPERATURE, y), weights, create_graph=True)
        sum((a * b).sum() for a, b in zip(g, grads)).backward()
    scores = {n: (w.grad * w).detach() for n, w in zip(layers, weights)}
    norm = torch.cat([s.flatten() for s in scores.values()]).sum().abs() + 1e-10
    return {n: s / norm for n, s in scores.items()}


def synflow_mask(model: nn.Module, input_shape: tuple[int, ...], layers: list[str], mask: Mask,
                 groups: dict[str, list[str]], keep: dict[str, int]) -> Mask:
    """Iterative SynFlow: 100 rounds of data-free synaptic-flow scores on |θ| (in float64),
    shrinking each group exponentially towards its final count."""
    model = copy.deepcopy(model).double().eval()
    params = dict(model.named_parameters())
    with torch.no_grad():
        for p in model.state_dict().values():
            if p.is_floating_point():
                p.abs_()
    device = next(model.parameters()).device
    ones = torch.ones((1, *input_shape), dtype=torch.float64, device=device)
    start = {g: sum(int(mask[n].sum()) for n in members) for g, members in groups.items()}
    current = dict(mask)
    originals = {n: params[n].detach().clone() for n in layers}
    for i in range(1, SYNFLOW_ITERATIONS + 1):
        with torch.no_grad():
            for n in layers:
                params[n].copy_(originals[n] * current[n])
        model.zero_grad()
        model(ones).sum().backward()
        scores = {n: (params[n].grad * params[n]).detach().abs() for n in layers}
        step_keep = {g: int(round(start[g] * (keep[g] / start[g]) ** (i / SYNFLOW_ITERATIONS)))
                     for g in groups}
        step_keep = {g: keep[g] if i == SYNFLOW_ITERATIONS else max(step_keep[g], keep[g]) for g in groups}
        current = keep_top(scores, current, groups, step_keep)
    return current
