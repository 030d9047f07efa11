"""Masks and score-based pruning, exact to the weight.

A mask is a dict from parameter name to a bool tensor (True = kept). Every pruning rule here is
"keep the highest-scoring surviving weights": magnitude (|w|), random scores, or the
pruning-at-init scores of `study.pruning_at_init`. Pruned weights score -inf, so masks of an
iterative lineage are nested. Ties are broken by position (stable sort), so results are
deterministic.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

Mask = dict[str, Tensor]


def dense_mask(model: nn.Module, layers: Iterable[str]) -> Mask:
    params = dict(model.named_parameters())
    return {name: torch.ones_like(params[name], dtype=torch.bool) for name in layers}


def next_keep(count: int, rate: float) -> int:
    """Weights left after pruning `rate` of `count` (rounded to the nearest weight)."""
    return count - int(round(rate * count))


def planned_counts(sizes: dict[str, int], groups: dict[str, list[str]], rates: dict[str, float],
                   rounds: int) -> list[dict[str, int]]:
    """Remaining weights per pruning group for rounds 0..rounds, each round pruning its group's
    rate of what survived. A group is one layer (layerwise) or the pooled layers (global)."""
    counts = [{g: sum(sizes[n] for n in members) for g, members in groups.items()}]
    for _ in range(rounds):
        counts.append({g: next_keep(c, rates[g]) for g, c in counts[-1].items()})
    return counts


def keep_top(scores: dict[str, Tensor], mask: Mask, groups: dict[str, list[str]],
             keep: dict[str, int]) -> Mask:
    """Keep exactly keep[g] surviving weights with the highest scores in each group g."""
    new: Mask = {}
    for group, members in groups.items():
        flat = torch.cat([
            torch.where(mask[n], scores[n].detach().to(torch.float64), float("-inf")).flatten()
            for n in members
        ])
        alive = int(sum(int(mask[n].sum()) for n in members))
        k = keep[group]
        if k > alive:
            raise ValueError(f"cannot keep {k} weights of group {group}: only {alive} survive")
        order = torch.argsort(flat.cpu(), descending=True, stable=True)[:k]
        kept = torch.zeros(flat.numel(), dtype=torch.bool)
        kept[order] = True
        offset = 0
        for n in members:
            size = mask[n].numel()
            new[n] = kept[offset: offset + size].view_as(mask[n]).to(mask[n].device)
            offset += size
    return new


def magnitude_scores(model: nn.Module, layers: Iterable[str]) -> dict[str, Tensor]:
    params = dict(model.named_parameters())
    return {n: params[n].detach().abs() for n in layers}


def random_scores(mask: Mask, generator: torch.Generator) -> dict[str, Tensor]:
    return {n: torch.rand(m.shape, generator=generator).to(m.device) for n, m in mask.items()}


def remaining(mask: Mask) -> tuple[float, dict[str, float], dict[str, int]]:
    """(% of prunable weights kept overall, % kept per layer, kept count per layer)."""
    counts = {n: int(m.sum()) for n, m in mask.items()}
    total = sum(m.numel() for m in mask.values())
    per_layer = {n: 100.0 * counts[n] / mask[n].numel() for n in mask}
    return 100.0 * sum(counts.values()) / total, per_layer, counts


def apply_mask(model: nn.Module, mask: Mask) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, m in mask.items():
            params[n].mul_(m.to(params[n].dtype))
