"""The iteration-based, mask-aware training loop: one loop (`run_loop`: evaluation cadence,
divergence, early stop, callbacks, each member's failure its own) for one training (`LoneStepper`)
or many packed as one stacked model (`packed_train.PackedStepper`).

Batches come from an in-memory task; evaluation runs every `eval_every` iterations on the
validation and test splits without gradients. Pruned weights are exactly zero after every step:
gradients are masked before the step (so optimizer averages of pruned weights stay zero) and
weights after it. Fused Adam keeps the cost of gradients full of zeros flat.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

import torch
from torch import Tensor, nn

from study.engine.failures import TrainingDiverged
from study.engine.optim import LeanAdam, TorchOptimizer
from study.engine.task import Task

if TYPE_CHECKING:
    from study.engine.spec import TrainSpec

R = TypeVar("R")


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


class Stepper(Protocol):
    """How `run_loop`'s K members (trainings of one schedule) take their steps and are evaluated."""

    def step(self, iteration: int) -> None:
        """One optimizer step of every member (a failed member's is ignored), its loss counted."""

    def train_losses(self, steps: int) -> list[float]:
        """Each member's mean training loss over the `steps` steps since the last call."""
        ...

    def evaluate(self, split: str) -> tuple[list[float], list[float]]:
        """Each member's (mean loss, accuracy) on 'val' or 'test'."""
        ...

    def model(self, member: int, current: bool = True) -> nn.Module:
        """Member's module; holding its weights as they are now when `current` (else as they were
        last handed out)."""
        ...

    def finish(self) -> None:
        """Every member's module holds its final weights."""


def run_loop(stepper: Stepper, requests: Sequence[TrainRequest]) -> list[TrainResult | Exception]:
    """Train requests of one schedule (the same start, end and eval_every) with `stepper`: the
    evaluation cadence, the divergence check, the callbacks and the early-stop choice of every
    training, lone or packed. A member whose loss stops being finite fails at that evaluation
    with `diverged`; one whose callback raises fails with that exception; the others go on. One
    outcome per request."""
    first = requests[0]
    start, end, every = first.start, first.stop, first.spec.eval_every
    k = len(requests)
    failed: list[Exception | None] = [None] * k
    curves: list[list[EvalPoint]] = [[] for _ in range(k)]
    step_hooks = [[cb for cb in r.callbacks if overrides(cb, "on_step")] for r in requests]
    eval_hooks = [[cb for cb in r.callbacks if overrides(cb, "on_eval")] for r in requests]
    t0 = time.perf_counter()

    def call(m: int, hook: Callable[..., None], *args: object) -> None:
        """A member's callback (none after it failed): its exception is that member's failure."""
        if failed[m] is None:
            try:
                hook(*args)
            except Exception as e:  # noqa: BLE001  (the member's outcome)
                failed[m] = e

    def evaluate(iteration: int, count: int) -> None:
        train_loss = stepper.train_losses(count) if count else [float("nan")] * k
        for m in range(k):
            if failed[m] is None and count and not math.isfinite(train_loss[m]):
                failed[m] = diverged(iteration, train_loss[m])
        if all(f is not None for f in failed):
            return
        val_loss, val_acc = stepper.evaluate("val")
        test_loss, test_acc = stepper.evaluate("test")
        for m in (m for m in range(k) if failed[m] is None):
            point = EvalPoint(iteration, train_loss[m], val_loss[m], val_acc[m], test_loss[m], test_acc[m])
            curves[m].append(point)
            if eval_hooks[m]:
                model = stepper.model(m, current=any(cb.reads_model for cb in eval_hooks[m]))
                for cb in eval_hooks[m]:
                    call(m, cb.on_eval, point, model)

    for m, r in enumerate(requests):
        model = stepper.model(m)
        for cb in r.callbacks:
            call(m, cb.on_start, start, model)
    evaluate(start, 0)
    count = 0
    for it in range(start, end):
        if all(f is not None for f in failed):
            break
        stepper.step(it)
        for m in range(k):
            if failed[m] is None and any(cb.wants_step(it) for cb in step_hooks[m]):
                model = stepper.model(m)
                for cb in step_hooks[m]:
                    call(m, cb.on_step, it, model)
        count += 1
        done = it + 1
        if (done - start) % every == 0 or done == end:
            evaluate(done, count)
            count = 0
    seconds = time.perf_counter() - t0
    stepper.finish()
    return [
        failure or TrainResult(tuple(c), min(c, key=lambda p: (p.val_loss, p.iteration)), c[-1], end - start, seconds)
        for failure, c in zip(failed, curves, strict=True)
    ]


class LoneStepper:
    """One training in its own module: the request's model trained in place."""

    def __init__(self, request: TrainRequest) -> None:
        self.request, self.spec, self.task = request, request.spec, request.task
        self.lr_fn = request.lr_of()
        self.params = dict(request.model.named_parameters())
        masked = [(self.params[name], m) for name, m in (request.mask or {}).items()]
        self.mask_weights = [p for p, _ in masked]
        self.mask_values = [m.to(dtype=p.dtype, device=p.device) for p, m in masked]
        if masked:
            with torch.no_grad():
                torch._foreach_mul_(self.mask_weights, self.mask_values)  # type: ignore[arg-type]
        self.current_lr = self.lr_fn(request.start)
        self.optimizer = make_optimizer(list(self.params.values()), self.spec, self.current_lr)
        self.device = next(request.model.parameters()).device
        self.loss_sum = torch.zeros((), device=self.device)
        request.model.train()

    def step(self, iteration: int) -> None:
        model, spec, optimizer = self.request.model, self.spec, self.optimizer
        lr = self.lr_fn(iteration)
        if lr != self.current_lr:
            optimizer.set_lr(lr)
            self.current_lr = lr
        x, y = self.task.batch(iteration)
        loss = self.task.loss(model, x, y)
        optimizer.zero_grad()
        loss.backward()
        if self.mask_weights:
            torch._foreach_mul_([p.grad for p in self.mask_weights], self.mask_values)  # type: ignore[arg-type, misc]
        if spec.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params.values(), spec.grad_clip, foreach=True)
        optimizer.step()
        if self.mask_weights:
            with torch.no_grad():
                torch._foreach_mul_(self.mask_weights, self.mask_values)  # type: ignore[arg-type]
        self.loss_sum += loss.detach()

    def train_losses(self, steps: int) -> list[float]:
        total, self.loss_sum = float(self.loss_sum), torch.zeros((), device=self.device)
        return [total / steps]

    def evaluate(self, split: str) -> tuple[list[float], list[float]]:
        loss, acc = self.task.evaluate(self.request.model, split)
        return [loss], [acc]

    def model(self, member: int, current: bool = True) -> nn.Module:
        return self.request.model  # the live module (its gradients too, after a step)

    def finish(self) -> None:
        pass


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
    """Train `model` from global iteration `start` to `end` (default: spec.iterations); raises
    the training's failure (`TrainingDiverged`, a callback's exception).

    The learning rate at each iteration is `lr_fn(iteration)` (default: the spec's schedule).
    `callbacks` see the weights at the start, after every step and at every evaluation.
    """
    request = TrainRequest(model, task, spec, mask=mask, start=start, end=end, lr_fn=lr_fn, callbacks=callbacks)
    (outcome,) = run_loop(LoneStepper(request), [request])
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome
