"""Optimizers for the training loop.

`LeanAdam` runs the very kernel of `torch.optim.Adam(fused=True)` (`torch._fused_adam_`) without
the per-step Python bookkeeping of `torch.optim` (about 110 µs a step on one CPU core, close to
the kernel's own time for LeNet-300-100). Results are bit-identical to torch's fused Adam.
"""

from __future__ import annotations

import torch
from torch import Tensor

ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch's defaults, the training loops' (lone and packed)


class LeanAdam:
    def __init__(
        self,
        params: list[Tensor],
        lr: float,
        betas: tuple[float, float] = ADAM_BETAS,
        eps: float = ADAM_EPS,
        weight_decay: float = 0.0,
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.exp_avgs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if len(live) != len(self.params):
            pick = lambda xs: [xs[i] for i in live]  # noqa: E731
        else:
            pick = lambda xs: xs  # noqa: E731
        params = pick(self.params)
        torch._foreach_add_(pick(self.steps), 1)
        torch._fused_adam_(
            params,
            [p.grad for p in params],
            pick(self.exp_avgs),
            pick(self.exp_avg_sqs),
            [],
            pick(self.steps),
            lr=self.lr,
            beta1=self.betas[0],
            beta2=self.betas[1],
            weight_decay=self.weight_decay,
            eps=self.eps,
            amsgrad=False,
            maximize=False,
        )

    def set_lr(self, lr: float) -> None:
        self.lr = lr


class TorchOptimizer:
    """The same small interface over a `torch.optim` optimizer (used for SGD)."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        self.optimizer.step()

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
