"""Many lineages' trainings as one stacked model.

K training requests for the same architecture and schedule train together: their weights are
stacked along a new first dimension and `torch.func.vmap` runs the model once for all K (batched
matmuls, grouped convolutions, per-member batch-norm statistics). Each member keeps its own batches
(its task's data order), mask, learning rate by iteration, optimizer state, loss and evaluation
curve; member k's gradient is that of its own loss only, so each member gets the TrainResult the
lone loop (`train.train`) gives it, to float rounding. A member whose loss stops being finite
fails at that evaluation, as the lone loop raises there; the others go on.

All weights live in one (K, P) buffer (a member per row), so the masks and gradient clipping are
a few kernels however deep the model is, and Adam is torch's fused kernel once per member.
On CUDA the step (forward, backward, masks, clipping, optimizer) is captured in a CUDA graph after
a few eager steps and replayed: one launch per iteration instead of hundreds.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Hashable, Sequence
from functools import partial
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from study.engine.data.classification import ClassificationTask, stacked_batch
from study.engine.optim import ADAM_BETAS, ADAM_EPS
from study.engine.train import EvalPoint, TrainRequest, TrainResult, diverged, overrides, train_request

GRAPH_WARMUP = 3  # eager steps before a CUDA graph is captured (cuDNN and the allocator settle)
LR_CHUNK = 1024


def pack_key(request: TrainRequest) -> Hashable | None:
    """Requests with equal keys can train as one pack (None: this one trains alone): the same
    architecture on the same device, the same iterations and evaluations, the same optimizer
    settings but the learning rate, and tasks that share their data (their batch orders differ)."""
    task, spec = request.task, request.spec
    if not request.packs or not isinstance(task, ClassificationTask):
        return None
    shapes = tuple((n, tuple(t.shape), t.dtype) for n, t in request.model.state_dict().items())
    first = next(request.model.parameters())
    return (
        type(request.model),
        shapes,
        str(first.device),
        request.start,
        request.stop,
        (spec.optimizer, spec.batch_size, spec.eval_every, spec.momentum, spec.weight_decay, spec.grad_clip),
        (id(task.train_x), id(task.val_x), id(task.test_x), task.augment, task.eval_chunk),
    )


def train_packed(requests: Sequence[TrainRequest], cuda_graph: bool = True) -> list[TrainResult | BaseException]:
    """Train requests that share a `pack_key` together; one outcome per request (its result, or
    the exception its lone training would have raised). A pack of one trains alone."""
    if len(requests) == 1:
        try:
            return [train_request(requests[0])]
        except Exception as e:  # noqa: BLE001  (handed to the member's lineage)
            return [e]
    keys = {pack_key(r) for r in requests}
    if len(keys) != 1 or None in keys:
        raise ValueError("train_packed takes requests of one pack_key")
    try:
        return _Pack(requests).run(cuda_graph)
    except torch.cuda.OutOfMemoryError as e:
        error = RuntimeError(
            f"a pack of {len(requests)} trainings (each packed lineage's trunk, instability copy, IMP track and "
            f"branches of a round) ran out of GPU memory ({str(e).splitlines()[0]}); lower "
            f"resources.lineages_per_gpu (or raise resources.gpu)"
        )
        return [error] * len(requests)
    except Exception as e:  # noqa: BLE001  (the pack's own failure is every member's)
        return [e] * len(requests)


class _FlatOptimizer:
    """The lone loop's optimizers over the (K, P) weight buffer, each member with its own
    learning rate (a (K, 1) tensor, so a captured step replays with the current rates): Adam is
    torch's fused kernel (`LeanAdam`'s) on each member's row; SGD is torch's SGD arithmetic."""

    def __init__(self, flat: Tensor, optimizer: str, momentum: float, weight_decay: float) -> None:
        self.flat, self.kind, self.momentum, self.weight_decay = flat, optimizer, momentum, weight_decay
        if optimizer == "adam":
            self.exp_avg, self.exp_avg_sq = torch.zeros_like(flat), torch.zeros_like(flat)
            self.steps = torch.zeros(len(flat), dtype=torch.float32, device=flat.device)
        self.buffer: Tensor | None = None

    def step(self, grad: Tensor, lr: Tensor) -> None:
        if self.kind == "adam":
            self.steps.add_(1)
            for k in range(len(self.flat)):
                torch._fused_adam_(
                    [self.flat[k]],
                    [grad[k]],
                    [self.exp_avg[k]],
                    [self.exp_avg_sq[k]],
                    [],
                    [self.steps[k]],
                    lr=lr[k, 0],
                    beta1=ADAM_BETAS[0],
                    beta2=ADAM_BETAS[1],
                    weight_decay=self.weight_decay,
                    eps=ADAM_EPS,
                    amsgrad=False,
                    maximize=False,
                )
            return
        if self.weight_decay:
            grad = grad.add(self.flat, alpha=self.weight_decay)
        if self.momentum:
            if self.buffer is None:  # torch's SGD: the first step's buffer is the gradient
                self.buffer = grad.clone()
            else:
                self.buffer.mul_(self.momentum).add_(grad)
            grad = self.buffer
        self.flat.addcmul_(grad, lr, value=-1)


class _Pack:
    def __init__(self, requests: Sequence[TrainRequest]) -> None:
        self.requests, self.k = list(requests), len(requests)
        first = requests[0]
        self.spec, self.start, self.end = first.spec, first.start, first.stop
        self.base = first.model
        self.tasks = [cast(ClassificationTask, r.task) for r in requests]  # pack_key: ClassificationTasks
        p0 = next(self.base.parameters())
        self.device, self.dtype = p0.device, p0.dtype
        named = list(self.base.named_parameters())
        self.columns: dict[str, tuple[int, torch.Size]] = {}  # each tensor's columns of the buffer
        width = 0
        for name, p in named:
            self.columns[name] = (width, p.shape)
            width += p.numel()
        self.flat = torch.empty(self.k, width, device=self.device, dtype=self.dtype)  # a member per row
        members = [dict(r.model.named_parameters()) for r in requests]
        self.params: dict[str, Tensor] = {}
        with torch.no_grad():
            for name, _ in named:
                view = self._view(self.flat, name)
                view.copy_(torch.stack([m[name].detach() for m in members]))
                self.params[name] = view.requires_grad_(True)
        buffers = [dict(r.model.named_buffers()) for r in requests]
        self.buffers = {n: torch.stack([b[n] for b in buffers]).clone() for n, _ in self.base.named_buffers()}
        self.mask: Tensor | None = None
        if any(r.mask for r in requests):
            self.mask = torch.ones_like(self.flat)
            with torch.no_grad():
                for k, r in enumerate(requests):
                    for name, m in (r.mask or {}).items():
                        self._view(self.mask, name)[k].copy_(m)
                self.flat.mul_(self.mask)
        spec = self.spec
        self.optimizer = _FlatOptimizer(self.flat, spec.optimizer, spec.momentum, spec.weight_decay)
        self.lr_fns = [r.lr_of() for r in requests]
        self.lr_rows: tuple[int, np.ndarray] = (self.start, np.empty((0, self.k)))
        self.lr = torch.empty(self.k, 1, device=self.device, dtype=self.dtype)
        self.loss_sum = torch.zeros(self.k, device=self.device, dtype=torch.float32)
        self.x_static: Tensor | None = None
        self.graph: Any = None

        def forward(params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(self.base, (params, buffers), (x,))

        self.train_forward = vmap(forward)
        self.eval_forward = vmap(forward, in_dims=(0, 0, None))

    def _rates(self, iteration: int) -> np.ndarray:
        """Every member's learning rate at `iteration` (computed LR_CHUNK iterations at a time)."""
        first, rows = self.lr_rows
        if not first <= iteration < first + len(rows):
            stop = min(iteration + LR_CHUNK, self.end)
            rows = np.array([[fn(it) for fn in self.lr_fns] for it in range(iteration, stop)], dtype=np.float64)
            self.lr_rows = first, rows = iteration, rows
        return rows[iteration - first]

    def _view(self, flat: Tensor, name: str) -> Tensor:
        """Tensor `name` of every member: its columns of a (K, P) buffer, as (K, *shape)."""
        column, shape = self.columns[name]
        return flat[:, column : column + shape.numel()].view(self.k, *shape)

    def _materialize(self, k: int) -> nn.Module:
        """Member k's module, holding its weights and buffers as they are now."""
        model = self.requests[k].model
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(self.params[name][k])
            for name, b in model.named_buffers():
                b.copy_(self.buffers[name][k])
        return model

    def _step(self, x: Tensor, y: Tensor) -> None:
        """One optimizer step of every member (ClassificationTask.loss per member, summed: each
        member's gradient is its own loss's)."""
        for p in self.params.values():
            p.grad = None
        logits = self.train_forward(self.params, self.buffers, x)
        losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(self.k, -1).mean(1)
        losses.sum().backward()
        with torch.no_grad():
            grad = torch.cat([p.grad.reshape(self.k, -1) for p in self.params.values()], dim=1)  # type: ignore[union-attr]
            if self.mask is not None:
                grad.mul_(self.mask)
            if self.spec.grad_clip:  # torch's clip_grad_norm_, per member
                scale = (self.spec.grad_clip / (grad.norm(dim=1, keepdim=True) + 1e-6)).clamp_(max=1.0)
                grad.mul_(scale)
            self.optimizer.step(grad, self.lr)
            if self.mask is not None:
                self.flat.mul_(self.mask)
            self.loss_sum += losses.detach()

    def _graph_step(self, x: Tensor, y: Tensor, index: int) -> None:
        """`_step`, eager for the first GRAPH_WARMUP steps on a side stream, then captured once
        and replayed with the batch copied into static tensors."""
        if self.graph is None and index < GRAPH_WARMUP:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                self._step(x, y)
            torch.cuda.current_stream().wait_stream(stream)
            return
        if self.graph is False:
            self._step(x, y)
            return
        if self.graph is None:
            self.x_static, self.y_static = x.clone(), y.clone()
            for p in self.params.values():
                p.grad = None
            graph, stream = torch.cuda.CUDAGraph(), torch.cuda.current_stream()
            try:
                with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                    self._step(self.x_static, self.y_static)
            except RuntimeError as e:  # an op this model needs cannot be captured: stay eager
                torch.cuda.set_stream(stream)  # a failed capture_end leaves the capture stream current
                warnings.warn(
                    f"packed training runs without a CUDA graph: capturing the step failed ({e})", stacklevel=2
                )
                self.graph = False
                self._step(x, y)
                return
            self.graph = graph
        assert self.x_static is not None
        self.x_static.copy_(x)
        self.y_static.copy_(y)
        self.graph.replay()

    def _evaluate(self, split: str) -> tuple[list[float], list[float]]:
        task = self.tasks[0]
        x, y = (task.val_x, task.val_y) if split == "val" else (task.test_x, task.test_y)
        chunk = max(256, task.eval_chunk // self.k)
        loss_sum = torch.zeros(self.k, device=self.device, dtype=torch.float64)
        correct = torch.zeros(self.k, device=self.device, dtype=torch.long)
        self.base.eval()
        with torch.no_grad():
            for lo in range(0, len(x), chunk):
                out = self.eval_forward(self.params, self.buffers, x[lo : lo + chunk])
                yy = y[lo : lo + chunk]
                losses = F.cross_entropy(out.flatten(0, 1), yy.repeat(self.k), reduction="none")
                loss_sum += losses.view(self.k, -1).sum(1).double()
                correct += (out.argmax(2) == yy).sum(1)
        self.base.train()
        n = len(x)
        return (loss_sum / n).tolist(), (correct.double() / n).tolist()

    def run(self, cuda_graph: bool) -> list[TrainResult | BaseException]:
        k, requests = self.k, self.requests
        outcome: list[TrainResult | BaseException | None] = [None] * k
        curves: list[list[EvalPoint]] = [[] for _ in range(k)]
        step_hooks = [[cb for cb in r.callbacks if overrides(cb, "on_step")] for r in requests]
        eval_hooks = [[cb for cb in r.callbacks if overrides(cb, "on_eval")] for r in requests]
        graph = cuda_graph and self.device.type == "cuda"
        count = 0
        t0 = time.perf_counter()

        def call(m: int, hook: Callable[[], None]) -> None:
            """A member's callback (none after one failed): its exception is that member's
            failure, not the pack's."""
            if outcome[m] is not None:
                return
            try:
                hook()
            except Exception as e:  # noqa: BLE001
                outcome[m] = e

        def evaluate(iteration: int) -> None:
            nonlocal count
            train_loss = (self.loss_sum / count).tolist() if count else [float("nan")] * k
            for m in range(k):
                if outcome[m] is None and count and not math.isfinite(train_loss[m]):
                    outcome[m] = diverged(iteration, train_loss[m])
            val_loss, val_acc = self._evaluate("val")
            test_loss, test_acc = self._evaluate("test")
            for m in range(k):
                if outcome[m] is not None:
                    continue
                point = EvalPoint(iteration, train_loss[m], val_loss[m], val_acc[m], test_loss[m], test_acc[m])
                curves[m].append(point)
                model = self._materialize(m) if any(cb.reads_model for cb in eval_hooks[m]) else requests[m].model
                for cb in eval_hooks[m]:
                    call(m, partial(cb.on_eval, point, model))
            self.loss_sum.zero_()
            count = 0

        for m, r in enumerate(requests):  # each module holds its start weights, masked
            for cb in r.callbacks:
                call(m, partial(cb.on_start, self.start, r.model))
        evaluate(self.start)
        previous: np.ndarray | None = None
        for index, it in enumerate(range(self.start, self.end)):
            rates = self._rates(it)
            if previous is None or not np.array_equal(rates, previous):
                self.lr.copy_(torch.as_tensor(rates, dtype=self.dtype).view(k, 1))
                previous = rates
            x, y = stacked_batch(self.tasks, it)
            if graph:
                self._graph_step(x, y, index)
            else:
                self._step(x, y)
            for m in range(k):
                if outcome[m] is None and any(cb.wants_step(it) for cb in step_hooks[m]):
                    model = self._materialize(m)
                    for cb in step_hooks[m]:
                        call(m, partial(cb.on_step, it, model))
            count += 1
            done = it + 1
            if (done - self.start) % self.spec.eval_every == 0 or done == self.end:
                evaluate(done)
        seconds = time.perf_counter() - t0
        for m in range(k):
            self._materialize(m)
            if outcome[m] is None:
                curve = curves[m]
                early = min(curve, key=lambda p: (p.val_loss, p.iteration))
                outcome[m] = TrainResult(tuple(curve), early, curve[-1], self.end - self.start, seconds)
        return [o for o in outcome if o is not None]
