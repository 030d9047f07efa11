"""Masks and score-based pruning, exact to the weight.

A mask is a dict from parameter name to a bool tensor (True = kept). What is pruned is a set of
slots: a whole weight, or a block of its rows (an ON-LSTM's master rows apart from its gate
rows); slots form pruning groups (one slot each for layerwise pruning, a pool for global
pruning). Every rule here is "keep the highest-scoring surviving weights of a group":
magnitude (|w|), random scores, or the pruning-at-init scores of `study.engine.pruning_at_init`.
Pruned weights score -inf, so masks of an iterative lineage are nested. Ties are broken by
position (stable sort), so results are deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from study.engine.models.slots import Slot

Mask = dict[str, Tensor]


def _view(t: Tensor, slot: Slot) -> Tensor:
    return t if slot.rows is None else t[slot.rows]


def dense_mask(model: nn.Module, params: Iterable[str]) -> Mask:
    named = dict(model.named_parameters())
    return {name: torch.ones_like(named[name], dtype=torch.bool) for name in dict.fromkeys(params)}


def next_keep(count: int, rate: float) -> int:
    """Weights left after pruning `rate` of `count` (rounded to the nearest weight)."""
    return count - int(round(rate * count))


def planned_counts(
    sizes: dict[str, int], groups: dict[str, list[str]], rates: dict[str, float], rounds: int
) -> list[dict[str, int]]:
    """Remaining weights per pruning group for rounds 0..rounds, each round pruning its group's
    rate of what survived. A group is one layer (layerwise) or the pooled layers (global)."""
    counts = [{g: sum(sizes[n] for n in members) for g, members in groups.items()}]
    for _ in range(rounds):
        counts.append({g: next_keep(c, rates[g]) for g, c in counts[-1].items()})
    return counts


def keep_top(
    scores: dict[str, Tensor], mask: Mask, slots: dict[str, Slot], groups: dict[str, list[str]], keep: dict[str, int]
) -> Mask:
    """Keep exactly keep[g] surviving weights with the highest scores in each group g of slots;
    weights outside every group are left as they are."""
    new: Mask = {n: m.clone() for n, m in mask.items()}
    for group, members in groups.items():
        views = [(slots[s], _view(mask[slots[s].param], slots[s])) for s in members]
        flat = torch.cat(
            [
                torch.where(m, _view(scores[slot.param], slot).detach().to(torch.float64), float("-inf"))
                .flatten()
                .cpu()
                for slot, m in views
            ]
        )
        alive = int(sum(int(m.sum()) for _, m in views))
        k = keep[group]
        if k > alive:
            raise ValueError(f"cannot keep {k} weights of group {group}: only {alive} survive")
        order = torch.argsort(flat, descending=True, stable=True)[:k]
        kept = torch.zeros(flat.numel(), dtype=torch.bool)
        kept[order] = True
        offset = 0
        for slot, m in views:
            target = _view(new[slot.param], slot)
            target.copy_(kept[offset : offset + m.numel()].view_as(m).to(m.device))
            offset += m.numel()
    return new


def magnitude_scores(model: nn.Module, params: Iterable[str]) -> dict[str, Tensor]:
    named = dict(model.named_parameters())
    return {n: named[n].detach().abs() for n in dict.fromkeys(params)}


def random_scores(mask: Mask, generator: torch.Generator) -> dict[str, Tensor]:
    return {n: torch.rand(m.shape, generator=generator).to(m.device) for n, m in mask.items()}


def shuffle_within_slots(mask: Mask, slots: dict[str, Slot], generator: torch.Generator) -> Mask:
    """Each slot's kept weights moved to uniformly random places in the same slot (its count
    unchanged): the layer-wise shuffle of Frankle et al. (2021). Weights outside every slot stay."""
    whole = {n: torch.ones_like(m) for n, m in mask.items()}
    counts = {s: int(_view(mask[slot.param], slot).sum()) for s, slot in slots.items()}
    return keep_top(random_scores(whole, generator), whole, slots, {s: [s] for s in slots}, counts) | {
        n: m.clone() for n, m in mask.items() if n not in {slot.param for slot in slots.values()}
    }


def remaining(mask: Mask, slots: dict[str, Slot]) -> tuple[float, dict[str, float], dict[str, float]]:
    """(% of prunable weights kept overall, % kept per slot, % kept per slot kind)."""
    kept = {s: int(_view(mask[slot.param], slot).sum()) for s, slot in slots.items()}
    size = {s: _view(mask[slot.param], slot).numel() for s, slot in slots.items()}
    kinds: dict[str, list[int]] = {}
    for s, slot in slots.items():
        k = kinds.setdefault(slot.kind, [0, 0])
        k[0] += kept[s]
        k[1] += size[s]
    return (
        100.0 * sum(kept.values()) / sum(size.values()),
        {s: 100.0 * kept[s] / size[s] for s in slots},
        {k: 100.0 * a / b for k, (a, b) in kinds.items()},
    )


def apply_mask(model: nn.Module, mask: Mask) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, m in mask.items():
            params[n].mul_(m.to(params[n].dtype))
