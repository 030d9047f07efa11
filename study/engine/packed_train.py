"""Many lineages' trainings as one stacked model.

K training requests for the same architecture and schedule train together: their weights are
stacked along a new first dimension and `torch.func.vmap` runs the model once for all K (batched
matmuls, grouped convolutions, per-member batch-norm statistics). Each member keeps its own batches
(its task's data order), mask, learning rate by iteration, optimizer state and dropout draws;
its loss and evaluation are its task's own (`output_loss`, `eval_stats`, vmapped), and the loop
around the steps is the lone one (`train.run_loop`), so each member gets the TrainResult the
lone loop gives it, to float rounding; a member's failure is its own.

Dropout: a member's draws are those the lone loop would draw for it (`models/draws.py`: each
forward's draws recorded once per input shape, drawn per member from a generator seeded with
its `dropout_seed`, replayed into the vmapped forward). A model whose randomness does not go
through `draws` does not pack.

All weights live in one (K, P) buffer (a member per row), so the masks and gradient clipping are
a few kernels however deep the model is, and Adam is torch's fused kernel once per member.
On CUDA the step (forward, backward, masks, clipping, optimizer) is captured in a CUDA graph after
a few eager steps and replayed: one launch per iteration instead of hundreds.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.utils._pytree import tree_leaves, tree_map

from study.engine.models.draws import GLOBAL, DrawPlan, Replay, draws_elsewhere, modules_that_draw
from study.engine.optim import ADAM_BETAS, ADAM_EPS
from study.engine.task import EvalStats, add_stats
from study.engine.train import TrainRequest, TrainResult, run_loop, train_request

GRAPH_WARMUP = 3  # eager steps before a CUDA graph is captured (cuDNN and the allocator settle)
LR_CHUNK = 1024


def pack_key(request: TrainRequest) -> Hashable | None:
    """Requests with equal keys can train as one pack (None: this one trains alone): the same
    architecture on the same device, the same iterations and evaluations, the same optimizer
    settings but the learning rate, and tasks that share their data (their batch orders differ)."""
    task, spec, model = request.task, request.spec, request.model
    if not request.packs or draws_elsewhere(model):
        return None
    if modules_that_draw(model) and request.dropout_seed is None:
        return None  # its draws come from wherever the global generator stands: no member can repeat them
    shapes = tuple((n, tuple(t.shape), t.dtype) for n, t in model.state_dict().items())
    first = next(model.parameters())
    return (
        type(model),
        shapes,
        str(first.device),
        request.start,
        request.stop,
        (spec.optimizer, spec.batch_size, spec.eval_every, spec.momentum, spec.weight_decay, spec.grad_clip),
        task.data_key(),
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
        stepper = PackedStepper(requests, cuda_graph)
        try:
            return list(run_loop(stepper, requests))
        finally:
            stepper.close()
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


class PackedStepper:
    """K members as one stacked model (`train.Stepper`): every parameter a (K, ...) view of one
    (K, P) buffer, a member per row."""

    def __init__(self, requests: Sequence[TrainRequest], cuda_graph: bool = True) -> None:
        self.requests, self.k = list(requests), len(requests)
        first = requests[0]
        self.spec, self.start, self.end = first.spec, first.start, first.stop
        self.base, self.task = first.model, first.task
        self.tasks = [r.task for r in requests]
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
        self.rates: np.ndarray | None = None
        self.loss_sum = torch.zeros(self.k, device=self.device)  # as the lone loop sums: in the default dtype
        self.replay = Replay()
        self.drawing = modules_that_draw(self.base)
        for module in self.drawing:
            module.draws = self.replay  # type: ignore[assignment]
        self.plans: dict[tuple, DrawPlan] = {}
        self.generators = [
            torch.Generator(self.device).manual_seed(r.dropout_seed) if r.dropout_seed is not None else None
            for r in requests
        ]
        # a CUDA graph replays one batch shape and no draws
        self.use_graph = cuda_graph and self.device.type == "cuda" and self.task.fixed_batch_shape and not self.drawing
        self.statics: tuple[Any, Tensor] | None = None
        self.graph: Any = None
        self.steps = 0

        def forward(params: dict[str, Tensor], buffers: dict[str, Tensor], args: tuple, noise: list[Tensor]) -> Any:
            self.replay.queue = list(noise)
            return functional_call(self.base, (params, buffers), args)

        self.train_forward = vmap(forward)
        self.eval_forward = vmap(forward, in_dims=(0, 0, None, None))
        self.eval_stats = vmap(self.task.eval_stats, in_dims=(0, None))
        self.base.train()

    def close(self) -> None:
        """Give the members' modules back their own draws."""
        for module in self.drawing:
            module.draws = GLOBAL  # type: ignore[assignment]

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

    def model(self, member: int, current: bool = True) -> nn.Module:
        """Member's module, holding its weights and buffers as they are now when `current`."""
        model = self.requests[member].model
        if current:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    p.copy_(self.params[name][member])
                for name, b in model.named_buffers():
                    b.copy_(self.buffers[name][member])
        return model

    def finish(self) -> None:
        for m in range(self.k):
            self.model(m)

    def _noise(self, args: tuple) -> list[Tensor]:
        """Each member's draws for one training forward on `args`, stacked (K, ...): what the
        lone loop draws for it, from its generator seeded as the lone loop seeds the global one."""
        if not self.drawing:
            return []
        key = tuple((tuple(t.shape), t.dtype) for t in tree_leaves(args))
        plan = self.plans.get(key)
        if plan is None:  # what one member's forward on these shapes draws, in order
            self.replay.recording = []
            try:
                with torch.no_grad():
                    one = (
                        {n: p[0].detach() for n, p in self.params.items()},
                        {n: b[0].clone() for n, b in self.buffers.items()},
                    )
                    functional_call(self.base, one, tree_map(lambda t: t[0], args))
                plan = self.plans[key] = tuple(self.replay.recording)
            finally:
                self.replay.recording = None
        return [
            torch.stack([torch.rand(shape, dtype=dtype, device=self.device, generator=g) for g in self.generators])
            for shape, dtype in plan
        ]

    def _step(self, args: tuple, y: Tensor, noise: list[Tensor]) -> None:
        """One optimizer step of every member (its task's loss, summed: each member's gradient is
        its own loss's)."""
        for p in self.params.values():
            p.grad = None
        losses = self.task.stacked_loss(self.train_forward(self.params, self.buffers, args, noise), y)
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

    def step(self, iteration: int) -> None:
        rates = self._rates(iteration)
        if self.rates is None or not np.array_equal(rates, self.rates):
            self.lr.copy_(torch.as_tensor(rates, dtype=self.dtype).view(self.k, 1))
            self.rates = rates
        x, y = self.task.stacked_batch(self.tasks, iteration)
        args = self.task.model_inputs(x)
        if self.use_graph:
            self._graph_step(args, y)
        else:
            self._step(args, y, self._noise(args))
        self.steps += 1

    def _graph_step(self, args: tuple, y: Tensor) -> None:
        """`_step`, eager for the first GRAPH_WARMUP steps on a side stream, then captured once
        and replayed with the batch copied into static tensors."""
        if self.graph is None and self.steps < GRAPH_WARMUP:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                self._step(args, y, [])
            torch.cuda.current_stream().wait_stream(stream)
            return
        if self.graph is False:
            self._step(args, y, [])
            return
        if self.graph is None:
            self.statics = (tree_map(lambda t: t.clone(), args), y.clone())
            for p in self.params.values():
                p.grad = None
            graph, stream = torch.cuda.CUDAGraph(), torch.cuda.current_stream()
            try:
                with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                    self._step(*self.statics, [])
            except RuntimeError as e:  # an op this model needs cannot be captured: stay eager
                torch.cuda.set_stream(stream)  # a failed capture_end leaves the capture stream current
                warnings.warn(
                    f"packed training runs without a CUDA graph: capturing the step failed ({e})", stacklevel=2
                )
                self.graph = False
                self._step(args, y, [])
                return
            self.graph = graph
        assert self.statics is not None
        static_args, static_y = self.statics
        for static, new in zip(tree_leaves(static_args), tree_leaves(args), strict=True):
            static.copy_(new)
        static_y.copy_(y)
        self.graph.replay()

    def train_losses(self, steps: int) -> list[float]:
        means = (self.loss_sum / steps).tolist()
        self.loss_sum.zero_()
        return means

    def evaluate(self, split: str) -> tuple[list[float], list[float]]:
        """Each member's task evaluation (`eval_stats` per member), the split in chunks a K-th the
        lone size (at least 256, at most the lone size)."""
        lone = self.task.eval_chunk
        chunk = min(lone, max(256, lone // self.k))
        total: EvalStats | None = None
        self.base.eval()
        with torch.no_grad():
            for x, y in self.task.eval_batches(split, chunk):
                out = self.eval_forward(self.params, self.buffers, self.task.model_inputs(x), [])
                total = add_stats(total, self.eval_stats(out, y))
        self.base.train()
        assert total is not None, "a split holds at least one example"
        loss_sum, correct, count = total
        return (loss_sum / count).tolist(), (correct.double() / count).tolist()
