"""What a spec will do before anything trains: the pruning groups, their rates, the exact number
of weights each round keeps, and the rounds that will run."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from study.engine.models import PRUNABLE_MODULES, Slot, build_from, prunable_slots
from study.engine.models.external import check_output
from study.engine.pruning import Mask, planned_counts
from study.engine.registry import dataset_info, model_info, model_packs, strategy
from study.engine.spec import MAX_ROUNDS, LineageSpec
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
    fixed: int | None = None  # prunable weights kept outside every group (None: all of the exempt slots)

    @property
    def params(self) -> list[str]:
        return list(dict.fromkeys(slot.param for slot in self.slots.values()))

    def keep(self, round_: int) -> dict[str, int]:
        return self.counts[round_]

    def remaining_pct(self, round_: int) -> float:
        exempt = self.total_weights - sum(self.counts[0].values()) if self.fixed is None else self.fixed
        return 100.0 * (sum(self.counts[round_].values()) + exempt) / self.total_weights


def pruning_groups(spec: LineageSpec, slots: dict[str, Slot]) -> tuple[dict[str, list[str]], dict[str, float]]:
    live = {n: slot.kind for n, slot in slots.items() if slot.kind not in spec.prune.exempt}
    if spec.prune.scope == "layerwise":
        kind_rates = {**model_info(spec.model).default_rates, **spec.prune.rates}
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
    spec: LineageSpec,
    input_shape: tuple[int, ...],
    num_classes: int,
    seed: int,
    model_kwargs: dict[str, Any],
    check: bool = True,
) -> nn.Module:
    """The spec's model, initialised from `seed` (a user's model: checked to map the dataset's
    inputs to its classes)."""
    info = model_info(spec.model)
    model = construct(
        spec, lambda: build_from(info, input_shape, num_classes, seed, spec.init, **model_kwargs, **spec.model_args)
    )
    if check and info.identity is not None:
        check_output(model, spec.model, spec.dataset, input_shape, num_classes)
    return model


def _slots(spec: LineageSpec, model: nn.Module) -> dict[str, Slot]:
    """The model's prunable slots; a user's model must have some, and its declared output layer."""
    if spec.output_layer is not None:
        module = dict(model.named_modules()).get(spec.output_layer)
        if not isinstance(module, PRUNABLE_MODULES[:4]):
            what = "no such module" if module is None else f"a {type(module).__name__}"
            raise SpecError(
                f"output_layer {spec.output_layer!r}: the model has {what} there; name its output Linear or Conv "
                f"module (as in model.named_modules())"
            )
    slots = prunable_slots(model, spec.output_layer)
    if not slots:
        raise SpecError(
            f"model {spec.model} has no prunable weights (Linear, Conv1d/2d/3d, Embedding, RNN/LSTM/GRU "
            f"matrices); build it from those layers"
        )
    return slots


def plan_lineage(spec: LineageSpec, model: nn.Module | None = None, start: Mask | None = None) -> LineagePlan:
    """The plan of `spec` for `model` (None: built from the dataset's signature), from the mask
    `start` (a ticket's; None: dense)."""
    if model is None:
        shape, classes, kwargs = dataset_info(spec.dataset).signature(spec.data)
        model = build_lineage_model(spec, shape, classes, spec.seed, kwargs)
    slots = _slots(spec, model)
    params = dict(model.named_parameters())
    sizes = {n: (params[s.param] if s.rows is None else params[s.param][s.rows]).numel() for n, s in slots.items()}
    total = sum(sizes.values())
    if start is not None:  # survivors of the ticket's mask
        sizes = {n: int((start[s.param] if s.rows is None else start[s.param][s.rows]).sum()) for n, s in slots.items()}
    groups, rates = pruning_groups(spec, slots)
    grouped = {n for members in groups.values() for n in members}
    fixed = sum(size for n, size in sizes.items() if n not in grouped)
    if spec.rounds is not None:
        n_rounds = spec.rounds
    else:
        assert spec.target_remaining is not None  # validated: exactly one of rounds, target_remaining
        n_rounds, counts = 0, planned_counts(sizes, groups, rates, 0)
        while 100.0 * (sum(counts[-1].values()) + fixed) / total > spec.target_remaining:
            n_rounds += 1
            counts = planned_counts(sizes, groups, rates, n_rounds)
            if n_rounds > MAX_ROUNDS or counts[-1] == counts[-2]:
                raise SpecError(
                    f"target_remaining {spec.target_remaining}% is not reachable with these rates; raise it or the rates"
                )
    counts = planned_counts(sizes, groups, rates, n_rounds)
    rounds = list(range(n_rounds + 1))
    if strategy(spec.strategy).one_shot:
        rounds, counts = [0, 1], [counts[0], counts[-1]]
    spec.instability.check_last_round(rounds[-1])
    return LineagePlan(slots, groups, rates, counts, rounds, total, fixed)


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
    if strategy(spec.strategy).imp_track and 0 < round_ < plan.rounds[-1]:
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


def pack_verdict(spec: LineageSpec) -> tuple[bool, str | None]:
    """Whether the spec's lineages may train packed, and why not: a built-in model says so
    itself; a user's model is built (from the dataset's signature) and judged
    (`models.external.pack_refusal`)."""
    if model_info(spec.model).packs is not None:
        return model_packs(spec, None, ())
    shape, classes, kwargs = dataset_info(spec.dataset).signature(spec.data)
    return model_packs(spec, build_lineage_model(spec, shape, classes, spec.seed, kwargs), shape)
