"""What a spec will do before anything trains: the pruning groups, their rates, the exact number
of weights each round keeps, and the rounds that will run."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from study.engine.data import DATASETS
from study.engine.models import MODELS, Slot, build_model, prunable_slots
from study.engine.pruning import planned_counts
from study.engine.spec import MAX_ROUNDS, LineageSpec
from study.engine.strategies import STRATEGIES
from study.errors import SpecError


@dataclass(frozen=True)
class LineagePlan:
    """What a spec will do: the pruning groups, their rates and exact per-round counts."""

    slots: dict[str, Slot]  # prunable slot -> (parameter, rows, kind)
    groups: dict[str, list[str]]  # pruning group -> its slots
    rates: dict[str, float]  # pruning group -> rate per round
    counts: list[dict[str, int]]  # round -> group -> weights kept
    rounds: list[int]  # the round numbers that will run
    total_weights: int

    @property
    def params(self) -> list[str]:
        return list(dict.fromkeys(slot.param for slot in self.slots.values()))

    def keep(self, round_: int) -> dict[str, int]:
        return self.counts[round_]

    def remaining_pct(self, round_: int) -> float:
        exempt = self.total_weights - sum(self.counts[0].values())  # weights no group prunes
        return 100.0 * (sum(self.counts[round_].values()) + exempt) / self.total_weights


def pruning_groups(spec: LineageSpec, slots: dict[str, Slot]) -> tuple[dict[str, list[str]], dict[str, float]]:
    live = {n: slot.kind for n, slot in slots.items() if slot.kind not in spec.prune.exempt}
    if spec.prune.scope == "layerwise":
        kind_rates = {**MODELS[spec.model].default_rates, **spec.prune.rates}
        return {n: [n] for n in live}, {n: kind_rates[k] for n, k in live.items()}
    assert spec.prune.rate is not None  # validated: global scope has a rate
    pooled = [n for n, k in live.items() if not (k == "output" and spec.prune.output_rate is not None)]
    groups, rates = {"global": pooled}, {"global": spec.prune.rate}
    if spec.prune.output_rate is not None:
        groups["output"] = [n for n, k in live.items() if k == "output"]
        rates["output"] = spec.prune.output_rate
    return groups, rates


def construct(spec: LineageSpec, make: Callable[[], nn.Module]) -> nn.Module:
    """`make()`, with a model that rejects its model_args, or is too large to allocate, turned
    into a one-line SpecError that names them."""
    try:
        return make()
    except (TypeError, ValueError) as e:
        raise SpecError(f"model {spec.model} cannot be built with model_args {spec.model_args}: {e}") from None
    except (MemoryError, RuntimeError) as e:  # torch.OutOfMemoryError is a RuntimeError
        if not isinstance(e, MemoryError) and "alloc" not in str(e).lower() and "out of memory" not in str(e).lower():
            raise
        asked = re.search(r"allocate (\d+) bytes", str(e))
        size = f" (one tensor of {int(asked.group(1)) / 1e9:,.0f} GB)" if asked else ""
        raise SpecError(
            f"model {spec.model} with model_args {spec.model_args or '{}'} is too large to allocate on this "
            f"machine{size}; make model_args smaller"
        ) from None


def build_lineage_model(
    spec: LineageSpec, input_shape: tuple[int, ...], num_classes: int, seed: int, model_kwargs: dict[str, Any]
) -> nn.Module:
    """The spec's model, initialised from `seed`."""
    return construct(
        spec,
        lambda: build_model(spec.model, input_shape, num_classes, seed, spec.init, **model_kwargs, **spec.model_args),
    )


def plan_lineage(spec: LineageSpec, model: nn.Module | None = None) -> LineagePlan:
    if model is None:
        shape, classes, kwargs = DATASETS[spec.dataset].signature(spec.data)
        model = construct(spec, lambda: MODELS[spec.model].factory(shape, classes, **kwargs, **spec.model_args))
    slots = prunable_slots(model)
    params = dict(model.named_parameters())
    sizes = {n: (params[s.param] if s.rows is None else params[s.param][s.rows]).numel() for n, s in slots.items()}
    groups, rates = pruning_groups(spec, slots)
    total = sum(sizes.values())
    if spec.rounds is not None:
        n_rounds = spec.rounds
    else:
        assert spec.target_remaining is not None  # validated: exactly one of rounds, target_remaining
        n_rounds, counts = 0, planned_counts(sizes, groups, rates, 0)
        while 100.0 * (sum(counts[-1].values()) + total - sum(counts[0].values())) / total > spec.target_remaining:
            n_rounds += 1
            counts = planned_counts(sizes, groups, rates, n_rounds)
            if n_rounds > MAX_ROUNDS or counts[-1] == counts[-2]:
                raise SpecError(
                    f"target_remaining {spec.target_remaining}% is not reachable with these rates; raise it or the rates"
                )
    counts = planned_counts(sizes, groups, rates, n_rounds)
    rounds = list(range(n_rounds + 1))
    if STRATEGIES[spec.strategy].one_shot:
        rounds, counts = [0, 1], [counts[0], counts[-1]]
    spec.instability.check_last_round(rounds[-1])
    return LineagePlan(slots, groups, rates, counts, rounds, total)


def round_length(spec: LineageSpec, round_: int) -> int:
    """Iterations a round trains: the whole schedule for the dense round, from the rewind
    iteration k on after it (strategies that do not rewind require k = 0)."""
    return spec.train.iterations if round_ == 0 else spec.train.iterations - spec.rewind_iteration


def instability_copies(spec: LineageSpec, round_: int) -> int:
    """Extra copies an instability measurement of `round_` trains: the second copy, and at round
    0 with k > 0 a first one too (the lineage reached θ_k with its optimizer already warm, so both
    copies restart from θ_k alike)."""
    if round_ not in spec.instability.rounds:
        return 0
    return 2 if round_ == 0 and spec.rewind_iteration > 0 else 1


def round_iterations(spec: LineageSpec, plan: LineagePlan, round_: int) -> int:
    """Every iteration round `round_` trains: the round, the IMP track that supplies the next
    mask, the branches and the instability copies (which train from k on)."""
    total = round_length(spec, round_)
    if STRATEGIES[spec.strategy].imp_track and 0 < round_ < plan.rounds[-1]:
        total += round_length(spec, round_)
    if round_ > 0:
        total += len(spec.branches) * round_length(spec, round_)
    return total + instability_copies(spec, round_) * round_length(spec, max(round_, 1))


def total_iterations(spec: LineageSpec, plan: LineagePlan, through: int | None = None) -> int:
    """Every iteration the lineage trains (through round `through`, default: all)."""
    return sum(round_iterations(spec, plan, r) for r in plan.rounds if through is None or r <= through)


def describe_plan(spec: LineageSpec, plan: LineagePlan) -> str:
    pct = ", ".join(f"{plan.remaining_pct(i):.1f}%" for i in range(len(plan.counts)))
    return (
        f"{spec.strategy} {spec.model} on {spec.dataset}: rounds {plan.rounds[0]}..{plan.rounds[-1]}, remaining {pct}"
    )
