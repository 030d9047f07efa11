"""The iteration-based, mask-aware training loop.

Batches come from an in-memory task; evaluation runs every `eval_every` iterations on the
validation and test splits under `torch.inference_mode`. Pruned weights are exactly zero after
every step: gradients are masked before the step (so optimizer averages of pruned weights stay
zero) and weights after it. Fused Adam keeps the cost of gradients full of zeros flat.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import torch
from torch import Tensor, nn

from study.engine.failures import TrainingDiverged
from study.engine.optim import LeanAdam, TorchOptimizer

if TYPE_CHECKING:
    from study.engine.spec import TrainSpec

R = TypeVar("R")


class Task(Protocol):
    """What the loop needs of a task (images: data.classification; sequences: data.sequence_tasks).
    Batches may be tuples (sequence lengths, sentence pairs); the loop never looks inside."""

    def batch(self, iteration: int) -> tuple[Any, Tensor]: ...
    def loss(self, model: nn.Module, x: Any, y: Tensor, temperature: float = 1.0) -> Tensor: ...
    def evaluate(self, model: nn.Module, split: str) -> tuple[float, float]: ...
    def chance_accuracy(self) -> float: ...
    def synflow_output(self, model: nn.Module) -> Tensor:
        """The output for a fixed probe input (SynFlow's data-free score; the cost columns' forward)."""
        ...

    def reordered(self, seed: int) -> Task:
        """The same data and splits, batched in the order of another seed (instability's second copy)."""
        ...

    @property
    def input_shape(self) -> tuple[int, ...]: ...
    @property
    def num_classes(self) -> int: ...


@runtime_checkable
class HasRoundMetrics(Protocol):
    """A task with metrics of its own for each round (sequence models: perplexity, parse F1...),
    read at the early-stop weights."""

    def round_metrics(self, model: nn.Module) -> dict[str, Any]: ...


@dataclass(frozen=True)
class EvalPoint:
    iteration: int
    train_loss: float
    val_loss: float
    val_acc: float
    test_loss: float
    test_acc: float


@dataclass(frozen=True)
class TrainResult:
    curve: tuple[EvalPoint, ...]
    early_stop: EvalPoint
    final: EvalPoint
    iterations: int
    wall_seconds: float


def resolve_device(device: str | torch.device | None) -> torch.device:
    """cpu, or a CUDA device with its index (cuda -> cuda:<current>); None/'auto' picks CUDA when present."""
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def lr_at(spec: TrainSpec, iteration: int) -> float:
    """The schedule's learning rate at a global iteration."""
    if spec.schedule == "step":
        return spec.lr * spec.gamma ** sum(iteration >= m for m in spec.milestones)
    if spec.schedule == "warmup":
        return spec.lr * min(1.0, (iteration + 1) / spec.warmup_iterations)
    if spec.schedule == "cosine":
        return spec.lr * 0.5 * (1 + math.cos(math.pi * iteration / spec.iterations))
    return spec.lr


def final_lr(spec: TrainSpec) -> float:
    return lr_at(spec, spec.iterations - 1)


def make_optimizer(params: list[Tensor], spec: TrainSpec, lr: float) -> LeanAdam | TorchOptimizer:
    if spec.optimizer == "adam":
        return LeanAdam(params, lr=lr, weight_decay=spec.weight_decay)
    return TorchOptimizer(
        torch.optim.SGD(params, lr=lr, momentum=spec.momentum, weight_decay=spec.weight_decay, foreach=True)
    )


class TrainCallback:
    """A hook into the training loop (override the events you need). Iterations are global:
    a round rewound to k starts at k. A packed trainer (`packed_train`) hands a lineage's own
    weights to its callbacks only where they ask: `wants_step` and `reads_model` say when."""

    reads_model = True  # on_eval looks at the weights

    def wants_step(self, iteration: int) -> bool:
        """Whether on_step does anything after step `iteration`."""
        return True

    def on_start(self, iteration: int, model: nn.Module) -> None:
        """Before the first step; the weights after `iteration` iterations."""

    def on_step(self, iteration: int, model: nn.Module) -> None:
        """After the optimizer step of `iteration` (0-based): the weights after iteration + 1
        iterations (and, in the lone loop, their gradients)."""

    def on_eval(self, point: EvalPoint, model: nn.Module) -> None:
        """After each evaluation (at the start, every eval_every iterations and at the end)."""


class CaptureWeights(TrainCallback):
    """Keeps a copy of the weights after `at` iterations (θ_k for rewinding)."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.state: dict[str, Tensor] | None = None

    def _capture(self, model: nn.Module) -> None:
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def on_start(self, iteration: int, model: nn.Module) -> None:
        if iteration == self.at:
            self._capture(model)

    def wants_step(self, iteration: int) -> bool:
        return iteration + 1 == self.at

    def on_step(self, iteration: int, model: nn.Module) -> None:
        if self.wants_step(iteration):
            self._capture(model)


class KeepBest(TrainCallback):
    """Keeps a copy of the weights at the minimum validation loss (the early-stop point)."""

    def __init__(self) -> None:
        self.loss = float("inf")
        self.state: dict[str, Tensor] | None = None

    def on_eval(self, point: EvalPoint, model: nn.Module) -> None:
        if point.val_loss < self.loss:
            self.loss = point.val_loss
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}


class ReportProgress(TrainCallback):
    """Tells `report(n)` the n iterations done since its last call, at every evaluation."""

    reads_model = False

    def __init__(self, report: Callable[[int], None]) -> None:
        self.report = report
        self.reported: int | None = None

    def on_eval(self, point: EvalPoint, model: nn.Module) -> None:
        if self.reported is not None and point.iteration > self.reported:
            self.report(point.iteration - self.reported)
        self.reported = point.iteration


def overrides(callback: TrainCallback, event: str) -> bool:
    return getattr(type(callback), event) is not getattr(TrainCallback, event)


@dataclass
class TrainRequest:
    """One training a lineage asks for: `model` holds the start weights (mask applied); trained
    in place from global iteration `start` to `end`. `dropout_seed` seeds the global RNG just
    before training (dropout draws repeat on resume). `packs`: its model family may be trained
    stacked with others (`MODELS[...].packs`)."""

    model: nn.Module
    task: Task
    spec: TrainSpec
    mask: dict[str, Tensor] | None = None
    start: int = 0
    end: int | None = None
    lr_fn: Callable[[int], float] | None = None
    callbacks: Sequence[TrainCallback] = field(default_factory=tuple)
    dropout_seed: int | None = None
    packs: bool = False
    required: bool = True  # the asker cannot go on without it: trained alone, a failure skips the rest

    @property
    def stop(self) -> int:
        return self.spec.iterations if self.end is None else self.end

    def lr_of(self) -> Callable[[int], float]:
        return self.lr_fn or (lambda it: lr_at(self.spec, it))


def train_request(request: TrainRequest) -> TrainResult:
    """Run one request on its own (the lone trainer)."""
    if request.dropout_seed is not None:
        torch.manual_seed(request.dropout_seed)
    return train(
        request.model,
        request.task,
        request.spec,
        mask=request.mask,
        start=request.start,
        end=request.end,
        lr_fn=request.lr_fn,
        callbacks=request.callbacks,
    )


TrainOutcome = TrainResult | BaseException  # what a training gave: its result, or what it raised


def run_steps(
    steps: Generator[list[TrainRequest], list[TrainOutcome], R],
    trainer: Callable[[TrainRequest], TrainResult] = train_request,
) -> R:
    """Drive a coroutine of trainings (`Lineage.steps`) to its return value, training each
    request it yields with `trainer`, one after another; an exception a training raises is its
    outcome, handed back with the others (those after a failed `required` one are not trained
    and get its exception), but an interrupt (KeyboardInterrupt, SystemExit) is thrown into the
    coroutine at once."""
    outcomes: list[TrainOutcome] | None = None
    while True:
        try:
            requests = next(steps) if outcomes is None else steps.send(outcomes)
        except StopIteration as stop:
            return stop.value
        outcomes, fatal = [], None
        for request in requests:
            if fatal is not None:
                outcomes.append(fatal)
                continue
            try:
                outcomes.append(trainer(request))
            except Exception as e:  # noqa: BLE001  (the asker's to handle)
                outcomes.append(e)
                fatal = e if request.required else None
            except BaseException as e:
                steps.throw(e)
                raise


def diverged(iteration: int, train_loss: float) -> TrainingDiverged:
    return TrainingDiverged(
        f"training diverged by iteration {iteration} (train loss {train_loss}); lower train.lr or add warm-up"
    )


def train(
    model: nn.Module,
    task: Task,
    spec: TrainSpec,
    *,
    mask: dict[str, Tensor] | None = None,
    start: int = 0,
    end: int | None = None,
    lr_fn: Callable[[int], float] | None = None,
    callbacks: Sequence[TrainCallback] = (),
) -> TrainResult:
    """Train `model` from global iteration `start` to `end` (default: spec.iterations).

    The learning rate at each iteration is `lr_fn(iteration)` (default: the spec's schedule).
    `callbacks` see the weights at the start, after every step and at every evaluation.
    """
    end = spec.iterations if end is None else end
    lr_fn = lr_fn or (lambda it: lr_at(spec, it))
    params = dict(model.named_parameters())
    masked = [(params[name], m) for name, m in (mask or {}).items()]
    mask_weights = [p for p, _ in masked]
    mask_values = [m.to(dtype=p.dtype, device=p.device) for p, m in masked]
    if masked:
        with torch.no_grad():
            torch._foreach_mul_(mask_weights, mask_values)  # type: ignore[arg-type]
    step_hooks = [cb.on_step for cb in callbacks if overrides(cb, "on_step")]
    eval_hooks = [cb.on_eval for cb in callbacks if overrides(cb, "on_eval")]

    current_lr = lr_fn(start)
    optimizer = make_optimizer(list(params.values()), spec, current_lr)
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device)
    loss_count = 0
    curve: list[EvalPoint] = []
    t0 = time.perf_counter()
    model.train()

    def evaluate(iteration: int) -> None:
        nonlocal loss_sum, loss_count
        train_loss = float(loss_sum) / loss_count if loss_count else float("nan")
        if loss_count and not math.isfinite(train_loss):
            raise diverged(iteration, train_loss)
        val_loss, val_acc = task.evaluate(model, "val")
        test_loss, test_acc = task.evaluate(model, "test")
        point = EvalPoint(iteration, train_loss, val_loss, val_acc, test_loss, test_acc)
        curve.append(point)
        for hook in eval_hooks:
            hook(point, model)
        loss_sum = torch.zeros((), device=device)
        loss_count = 0

    for cb in callbacks:
        cb.on_start(start, model)
    evaluate(start)
    for it in range(start, end):
        lr = lr_fn(it)
        if lr != current_lr:
            optimizer.set_lr(lr)
            current_lr = lr
        x, y = task.batch(it)
        loss = task.loss(model, x, y)
        optimizer.zero_grad()
        loss.backward()
        if masked:
            torch._foreach_mul_([p.grad for p in mask_weights], mask_values)  # type: ignore[arg-type, misc]
        if spec.grad_clip:
            torch.nn.utils.clip_grad_norm_(params.values(), spec.grad_clip, foreach=True)
        optimizer.step()
        if masked:
            with torch.no_grad():
                torch._foreach_mul_(mask_weights, mask_values)  # type: ignore[arg-type]
        for step_hook in step_hooks:
            step_hook(it, model)
        loss_sum += loss.detach()
        loss_count += 1
        done = it + 1
        if (done - start) % spec.eval_every == 0 or done == end:
            evaluate(done)
    early = min(curve, key=lambda p: (p.val_loss, p.iteration))
    return TrainResult(tuple(curve), early, curve[-1], end - start, time.perf_counter() - t0)
