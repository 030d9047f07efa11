"""The IMP lineage: train dense, then repeatedly prune, reset (per strategy) and retrain.

Plain PyTorch; knows nothing of Ray or Parquet. `run_lineage(spec, on_round=...)` is what the CLI,
the tests and the Tune adapter call. With a `workdir` it checkpoints after every round and a
re-run with the same spec resumes after the last finished round.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from study.engine.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from study.engine.data import dataset_signature, load_task
from study.engine.models import MODELS, Slot, build_model, prunable_slots
from study.engine.pruning import (
    Mask,
    apply_mask,
    dense_mask,
    keep_top,
    magnitude_scores,
    planned_counts,
    random_scores,
    remaining,
)
from study.engine.pruning_at_init import grasp_scores, snip_scores, synflow_mask
from study.engine.spec import LineageSpec
from study.engine.train import (
    LineageFailure,
    TrainResult,
    final_lr,
    resolve_device,
    train,
)
from study.errors import SpecError
from study.version import code_version

MAGNITUDE_STRATEGIES = ("imp", "lr_rewind", "finetune", "oneshot")


@dataclass(frozen=True)
class LineageIds:
    study: str = "adhoc"
    trial_id: str | None = None


@dataclass(frozen=True)
class RoundResult:
    study: str
    trial_id: str
    lineage_id: str
    config_hash: str
    strategy: str
    model: str
    dataset: str
    seed: int
    round: int
    remaining_pct: float
    layer_remaining_pct: dict[str, float]
    scope: str
    prune_rate: float
    lr: float
    rewind_iteration: int
    early_stop_iteration: int
    val_acc: float
    val_loss: float
    test_acc: float
    test_loss: float
    final_val_acc: float
    final_test_acc: float
    final_train_loss: float
    iterations: int
    wall_seconds: float
    device: str
    code_version: str
    curve_iteration: list[int]
    curve_train_loss: list[float]
    curve_val_loss: list[float]
    curve_val_acc: list[float]
    curve_test_acc: list[float]
    group_remaining_pct: dict[str, float] | None = None
    val_perplexity: float | None = None
    test_perplexity: float | None = None
    parse_f1: dict[str, float] | None = None
    parse_baselines: dict[str, float] | None = None
    accuracy_by_length: dict[str, float] | None = None
    parse_examples_json: str | None = None
    chance_val_acc: float | None = None

    def as_row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class LineageDegenerate(LineageFailure):
    """The dense round did not clearly beat chance on validation data: nothing after it means
    anything (a learning rate far too high, a broken dataset...)."""
    status = "degenerate"


def degenerate_reason(spec: LineageSpec, dense: RoundResult) -> str | None:
    """Why the dense round makes the lineage degenerate, or None when it clearly beats chance."""
    if (spec.chance_margin is None or dense.chance_val_acc is None
            or dense.val_acc >= dense.chance_val_acc + spec.chance_margin):
        return None
    return (f"the dense round's validation accuracy {dense.val_acc:.4f} does not beat chance "
            f"({dense.chance_val_acc:.4f}, the most frequent class) by chance_margin {spec.chance_margin}; "
            f"check train.lr (now {spec.train.lr:g}) and the data")


@dataclass(frozen=True)
class LineagePlan:
    """What a spec will do: the pruning groups, their rates and exact per-round counts."""
    slots: dict[str, Slot]                 # prunable slot -> (parameter, rows, kind)
    groups: dict[str, list[str]]           # pruning group -> its slots
    rates: dict[str, float]                # pruning group -> rate per round
    counts: list[dict[str, int]]           # round -> group -> weights kept
    rounds: list[int]                      # the round numbers that will run
    total_weights: int

    @property
    def params(self) -> list[str]:
        return list(dict.fromkeys(slot.param for slot in self.slots.values()))

    def keep(self, round_: int) -> dict[str, int]:
        return self.counts[round_]

    def remaining_pct(self, round_: int) -> float:
        exempt = self.total_weights - sum(self.counts[0].values())  # weights no group prunes
        return 100.0 * (sum(self.counts[round_].values()) + exempt) / self.total_weights


def derive_seed(seed: int, purpose: str, round_: int = 0) -> int:
    digest = hashlib.sha256(f"{seed}/{purpose}/{round_}".encode()).digest()
    return int.from_bytes(digest[:7], "little")


def _groups(spec: LineageSpec, slots: dict[str, Slot]) -> tuple[dict[str, list[str]], dict[str, float]]:
    live = {n: slot.kind for n, slot in slots.items() if slot.kind not in spec.prune.exempt}
    if spec.prune.scope == "layerwise":
        kind_rates = {**MODELS[spec.model].default_rates, **spec.prune.rates}
        return {n: [n] for n in live}, {n: kind_rates[k] for n, k in live.items()}
    pooled = [n for n, k in live.items() if not (k == "output" and spec.prune.output_rate is not None)]
    groups, rates = {"global": pooled}, {"global": spec.prune.rate}
    if spec.prune.output_rate is not None:
        groups["output"] = [n for n, k in live.items() if k == "output"]
        rates["output"] = spec.prune.output_rate
    return groups, rates


def plan_lineage(spec: LineageSpec, model: nn.Module | None = None) -> LineagePlan:
    if model is None:
        shape, classes, kwargs = dataset_signature(spec.dataset, spec.data)
        model = _construct(spec, lambda: MODELS[spec.model].factory(shape, classes, **kwargs, **spec.model_args))
    slots = prunable_slots(model)
    params = dict(model.named_parameters())
    sizes = {n: (params[s.param] if s.rows is None else params[s.param][s.rows]).numel() for n, s in slots.items()}
    groups, rates = _groups(spec, slots)
    total = sum(sizes.values())
    if spec.rounds is not None:
        n_rounds = spec.rounds
    else:
        n_rounds, counts = 0, planned_counts(sizes, groups, rates, 0)
        while 100.0 * (sum(counts[-1].values()) + total - sum(counts[0].values())) / total > spec.target_remaining:
            n_rounds += 1
            counts = planned_counts(sizes, groups, rates, n_rounds)
            if n_rounds > 500 or counts[-1] == counts[-2]:
                raise SpecError(f"target_remaining {spec.target_remaining}% is not reachable with these rates; raise it or the rates")
    counts = planned_counts(sizes, groups, rates, n_rounds)
    rounds = [0, 1] if spec.strategy == "oneshot" else list(range(n_rounds + 1))
    if spec.strategy == "oneshot":
        counts = [counts[0], counts[-1]]
    return LineagePlan(slots, groups, rates, counts, rounds, total)


def round_length(spec: LineageSpec, round_: int) -> int:
    if round_ == 0 or spec.strategy == "finetune":
        return spec.train.iterations
    return spec.train.iterations - spec.rewind_iteration


def total_iterations(spec: LineageSpec, plan: LineagePlan) -> int:
    total = sum(round_length(spec, r) for r in plan.rounds)
    if spec.strategy == "random_reinit":  # the imp track that supplies the next mask
        total += sum(round_length(spec, r) for r in plan.rounds[1:-1])
    return total


def _clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def run_lineage(
    spec: LineageSpec,
    on_round: Callable[[RoundResult], None] | None = None,
    *,
    ids: LineageIds = LineageIds(),
    workdir: str | Path | None = None,
    device: str | torch.device | None = None,
    threads: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_reset: Callable[[int, nn.Module, Mask], None] | None = None,
) -> list[RoundResult]:
    """Run (or resume) one lineage and return one RoundResult per round (resumed ones too).

    `on_round(result)` is called as each round finishes (before its checkpoint is written, so a
    crash in between re-runs and re-reports that round). `on_reset(round, model, mask)` sees the
    weights a round starts training from."""
    lineage = iter_lineage(spec, on_round, ids=ids, workdir=workdir, device=device, threads=threads,
                           on_progress=on_progress, on_reset=on_reset)
    return list(lineage.previous) + list(lineage)


class iter_lineage:
    """The lineage as an iterator: each `next()` runs one round, writes its checkpoint and
    yields its RoundResult. `previous` holds the rounds a resumed lineage had already finished;
    `plan` says what it will do."""

    def __init__(self, spec: LineageSpec, on_round: Callable[[RoundResult], None] | None = None, *,
                 ids: LineageIds = LineageIds(), workdir: str | Path | None = None,
                 device: str | torch.device | None = None, threads: int | None = None,
                 on_progress: Callable[[int], None] | None = None,
                 on_reset: Callable[[int, nn.Module, Mask], None] | None = None, resume: bool = True) -> None:
        self._gen = _lineage_rounds(spec, on_round, ids, workdir, device, threads, on_progress, on_reset, self,
                                    resume)
        self.previous: list[RoundResult] = []
        self.plan: LineagePlan | None = None
        next(self._gen)  # load data, build the model, restore the checkpoint

    def __iter__(self):
        return self

    def __next__(self) -> RoundResult:
        return next(self._gen)


def _lineage_rounds(spec, on_round, ids, workdir, device, threads, on_progress, on_reset, handle, resume):
    spec.validate()
    if threads is not None:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    task = load_task(spec.dataset, spec.data, batch_size=spec.train.batch_size, seed=spec.seed, device=dev)
    model = _build(spec, task, spec.seed).to(dev)
    plan = plan_lineage(spec, model)
    trial_id = ids.trial_id or spec.lineage_id()
    ckpt_path = Path(workdir) / CHECKPOINT_FILE if workdir is not None else None
    version = code_version()

    state = load_checkpoint(ckpt_path, spec.config_hash(), dev) if ckpt_path and resume else None
    if state is None:
        state = {"round_done": -1, "theta0": _clone_state(model), "theta_k": None, "trained": None,
                 "imp_trained": None, "mask": dense_mask(model, plan.params), "results": []}
    results = [RoundResult(**r) for r in state["results"]]
    handle.previous, handle.plan = list(results), plan
    if on_progress and state["round_done"] >= 0:
        on_progress(sum(r.iterations for r in results))
    yield None

    def capture_theta_k(m: nn.Module) -> None:
        state["theta_k"] = _clone_state(m)

    def run_round(round_: int, start_state: dict, mask: Mask, start: int, lr_fn=None,
                  capture: bool = False) -> TrainResult:
        model.load_state_dict(start_state)
        apply_mask(model, mask)
        if on_reset:
            on_reset(round_, model, mask)
        torch.manual_seed(derive_seed(spec.seed, "dropout", round_))  # dropout draws repeat on resume
        return train(model, task, spec.train, mask=mask if round_ > 0 else None, start=start,
                     lr_fn=lr_fn, capture_at=spec.rewind_iteration if capture else None,
                     on_capture=capture_theta_k, progress=on_progress, keep_best=hasattr(task, "round_metrics"))

    for round_ in plan.rounds:
        if round_ <= state["round_done"]:
            continue
        if results:
            _stop_if_degenerate(spec, results[0])
        if round_ == 0:
            mask = state["mask"]
            result = run_round(0, state["theta0"], mask, 0, capture=True)
            state["trained"] = _clone_state(model)
        else:
            mask = _next_mask(spec, plan, round_, state, model, task)
            start = round_start(spec, round_, state, lambda r=round_: _build(
                spec, task, derive_seed(spec.seed, "reinit", r)).to(dev).state_dict())
            result = run_round(round_, start.weights, mask, start.iteration, lr_fn=start.lr_fn)
            state["trained"] = _clone_state(model)
            if spec.strategy == "random_reinit" and round_ < plan.rounds[-1]:
                run_round(round_, state["theta_k"], mask, spec.rewind_iteration)  # the imp track: next mask
                state["imp_trained"] = _clone_state(model)
        state["mask"] = mask
        if round_ == 0 and spec.strategy == "random_reinit":
            state["imp_trained"] = state["trained"]
        extra = {}
        if hasattr(task, "round_metrics"):  # sequence models: perplexity, parse F1... at the early-stop weights
            trained = _clone_state(model)
            model.load_state_dict(result.best_state)
            extra = task.round_metrics(model)
            model.load_state_dict(trained)
        if round_ == 0:
            extra["chance_val_acc"] = task.chance_accuracy()
        row = _round_result(spec, plan, ids.study, trial_id, round_, mask, result, results, dev, version, extra)
        if on_round:
            on_round(row)
        results.append(row)
        state["results"] = [r.as_row() for r in results]
        state["round_done"] = round_
        if ckpt_path:
            save_checkpoint(ckpt_path, spec.config_hash(), state)
        if round_ == 0:  # its row is written; a degenerate lineage ends here, before anyone ranks it
            _stop_if_degenerate(spec, row)
        yield row
    _stop_if_degenerate(spec, results[0])


@dataclass(frozen=True)
class RoundStart:
    """Where a pruning round starts: the weights its survivors are reset to, the global
    iteration training resumes at, and the learning rate by iteration (None: the schedule's)."""
    weights: dict[str, torch.Tensor]
    iteration: int
    lr_fn: Callable[[int], float] | None = None


def round_start(spec: LineageSpec, round_: int, state: dict, fresh_init: Callable[[], dict]) -> RoundStart:
    """Each strategy's reset rule for a pruning round (DESIGN §4)."""
    k = spec.rewind_iteration
    if spec.strategy in ("imp", "oneshot", "random_prune"):
        return RoundStart(state["theta_k"], k)              # θ_k (k = 0: the original LTH)
    if spec.strategy == "lr_rewind":
        return RoundStart(state["trained"], k)              # trained weights, schedule rewound to k
    if spec.strategy == "finetune":
        lr_final = final_lr(spec.train)
        return RoundStart(state["trained"], 0, lambda it: lr_final)  # trained weights at the final lr
    if spec.strategy == "random_reinit":
        return RoundStart(fresh_init(), k)                  # a fresh init, the imp mask
    return RoundStart(state["theta0"], 0)                   # pruning at init: θ0


def _stop_if_degenerate(spec: LineageSpec, dense: RoundResult) -> None:
    reason = degenerate_reason(spec, dense)
    if reason:
        raise LineageDegenerate(reason)


def _construct(spec: LineageSpec, make: Callable[[], nn.Module]) -> nn.Module:
    try:
        return make()
    except (TypeError, ValueError) as e:
        raise SpecError(f"model {spec.model} cannot be built with model_args {spec.model_args}: {e}") from None


def _build(spec: LineageSpec, task, seed: int) -> nn.Module:
    return _construct(spec, lambda: build_model(spec.model, task.input_shape, task.num_classes, seed, spec.init,
                                                **getattr(task, "model_kwargs", {}), **spec.model_args))


def _next_mask(spec: LineageSpec, plan: LineagePlan, round_: int, state: dict, model: nn.Module, task) -> Mask:
    params, slots, groups, keep = plan.params, plan.slots, plan.groups, plan.keep(round_)
    mask = state["mask"]
    if spec.strategy in MAGNITUDE_STRATEGIES or spec.strategy == "random_reinit":
        source = state["imp_trained"] if spec.strategy == "random_reinit" else state["trained"]
        model.load_state_dict(source)
        return keep_top(magnitude_scores(model, params), mask, slots, groups, keep)
    if spec.strategy == "random_prune":
        g = torch.Generator().manual_seed(derive_seed(spec.seed, "random_prune", round_))
        return keep_top(random_scores(mask, g), mask, slots, groups, keep)
    model.load_state_dict(state["theta0"])
    full = dense_mask(model, params)
    if spec.strategy == "snip":
        return keep_top(snip_scores(model, task, params), full, slots, groups, keep)
    if spec.strategy == "grasp":
        return keep_top(grasp_scores(model, task, params), full, slots, groups, keep)
    return synflow_mask(model, task, params, full, slots, groups, keep)


def _round_result(spec: LineageSpec, plan: LineagePlan, study: str, trial_id: str, round_: int,
                  mask: Mask, result: TrainResult, previous: list[RoundResult], dev: torch.device,
                  version: str, extra: dict[str, Any]) -> RoundResult:
    overall, per_layer, per_kind = remaining(mask, plan.slots)
    before = previous[-1].remaining_pct if previous else 100.0
    es, fin = result.early_stop, result.final
    curve = result.curve
    return RoundResult(
        study=study, trial_id=trial_id, lineage_id=spec.lineage_id(), config_hash=spec.config_hash(),
        strategy=spec.strategy, model=spec.model, dataset=spec.dataset, seed=spec.seed, round=round_,
        remaining_pct=overall, layer_remaining_pct=per_layer, scope=spec.prune.scope,
        prune_rate=0.0 if round_ == 0 else 1.0 - overall / before,
        lr=spec.train.lr, rewind_iteration=spec.rewind_iteration,
        early_stop_iteration=es.iteration, val_acc=es.val_acc, val_loss=es.val_loss,
        test_acc=es.test_acc, test_loss=es.test_loss, final_val_acc=fin.val_acc,
        final_test_acc=fin.test_acc,
        final_train_loss=fin.train_loss if math.isfinite(fin.train_loss) else None,
        iterations=result.iterations, wall_seconds=result.wall_seconds, device=str(dev),
        code_version=version,
        curve_iteration=[p.iteration for p in curve],
        curve_train_loss=[p.train_loss if math.isfinite(p.train_loss) else None for p in curve],
        curve_val_loss=[p.val_loss for p in curve], curve_val_acc=[p.val_acc for p in curve],
        curve_test_acc=[p.test_acc for p in curve],
        group_remaining_pct=per_kind, **extra,
    )


def describe_plan(spec: LineageSpec, plan: LineagePlan) -> str:
    pct = ", ".join(f"{plan.remaining_pct(i):.1f}%" for i in range(len(plan.counts)))
    return f"{spec.strategy} {spec.model} on {spec.dataset}: rounds {plan.rounds[0]}..{plan.rounds[-1]}, remaining {pct}"

