"""An image-classification task held in memory on the training device.

Batches come from a seeded per-epoch permutation addressed by the global iteration number, so a
run rewound to iteration k sees exactly the batches the dense run saw from k on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from study.engine.task import EvalStats, Task, TaskMethods

PAD = 4


@dataclass
class ClassificationTask(TaskMethods):
    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int
    batch_size: int
    seed: int
    augment: bool = False
    pad_value: Tensor | None = None
    eval_chunk: int = 2500
    _epoch: int = field(default=-1, repr=False)
    _perm: Tensor | None = field(default=None, repr=False)
    _aug: tuple[Tensor, Tensor, Tensor] | None = field(default=None, repr=False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @property
    def device(self) -> torch.device:
        return self.train_x.device

    @property
    def steps_per_epoch(self) -> int:
        return max(len(self.train_x) // self.batch_size, 1)

    def _start_epoch(self, epoch: int) -> None:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        n = len(self.train_x)
        self._perm = torch.randperm(n, generator=g).to(self.device)
        if self.augment:
            offsets = torch.randint(0, 2 * PAD + 1, (n, 2), generator=g).to(self.device)
            flips = (torch.rand(n, generator=g) < 0.5).to(self.device)
            self._aug = (offsets[:, 0], offsets[:, 1], flips)
        self._epoch = epoch

    def reordered(self, seed: int) -> ClassificationTask:
        return dataclasses.replace(self, seed=seed, _epoch=-1, _perm=None, _aug=None)

    def batch(self, iteration: int) -> tuple[Tensor, Tensor]:
        idx, aug = self._batch_slice(iteration)
        x = self.train_x.index_select(0, idx)
        if aug is not None:
            x = self._crop_flip(x, *aug)
        return x, self.train_y.index_select(0, idx)

    def _batch_slice(self, iteration: int) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor] | None]:
        """The training examples of the batch at `iteration` and their crop offsets and flips."""
        epoch, step = divmod(iteration, self.steps_per_epoch)
        if epoch != self._epoch:
            self._start_epoch(epoch)
        lo = step * self.batch_size
        assert self._perm is not None  # set by _start_epoch
        if not self.augment:
            return self._perm[lo : lo + self.batch_size], None
        assert self._aug is not None
        oy, ox, flip = (a[lo : lo + self.batch_size] for a in self._aug)
        return self._perm[lo : lo + self.batch_size], (oy, ox, flip)

    def _crop_flip(self, x: Tensor, oy: Tensor, ox: Tensor, flip: Tensor) -> Tensor:
        b, c, h, w = x.shape
        padded = F.pad(x, (PAD, PAD, PAD, PAD))
        if self.pad_value is not None:
            border = F.pad(torch.zeros(1, 1, h, w, device=x.device, dtype=torch.bool), (PAD,) * 4, value=True)
            padded = torch.where(border, self.pad_value.view(1, c, 1, 1), padded)
        rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        bi = torch.arange(b, device=x.device)[:, None, None, None]
        ci = torch.arange(c, device=x.device)[None, :, None, None]
        out = padded[bi, ci, rows, cols]
        return torch.where(flip[:, None, None, None], out.flip(3), out)

    def data_key(self) -> Hashable:
        return (type(self), id(self.train_x), id(self.val_x), id(self.test_x), self.augment, self.eval_chunk)

    @property
    def fixed_batch_shape(self) -> bool:
        return True

    def stacked_batch(self, members: Sequence[Task], iteration: int) -> tuple[Tensor, Tensor]:
        """The batch each member draws at `iteration`, stacked to (K, batch, ...): one gather for
        all of them (they hold these training tensors)."""
        parts = [cast(ClassificationTask, t)._batch_slice(iteration) for t in members]
        idx = torch.cat([i for i, _ in parts])
        x = self.train_x.index_select(0, idx)
        if self.augment:
            oy, ox, flip = (torch.cat([aug[j] for _, aug in parts if aug is not None]) for j in range(3))
            x = self._crop_flip(x, oy, ox, flip)
        k = len(members)
        return x.view(k, -1, *x.shape[1:]), self.train_y.index_select(0, idx).view(k, -1)

    def eval_batches(self, split: str, chunk: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        x, y = (self.val_x, self.val_y) if split == "val" else (self.test_x, self.test_y)
        chunk = chunk or self.eval_chunk
        for lo in range(0, len(x), chunk):
            yield x[lo : lo + chunk], y[lo : lo + chunk]

    def model_inputs(self, x: Tensor) -> tuple[Tensor]:
        return (x,)

    def output_loss(self, output: Tensor, y: Tensor, temperature: float = 1.0) -> Tensor:
        return F.cross_entropy(output / temperature, y)

    def stacked_loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        """`output_loss` of each member at once (a vmapped cross-entropy costs a packed LeNet step
        about a tenth more on CPU)."""
        k = len(outputs)
        return F.cross_entropy(outputs.flatten(0, 1), y.flatten(), reduction="none").view(k, -1).mean(1)

    def eval_stats(self, output: Tensor, y: Tensor) -> EvalStats:
        loss = F.cross_entropy(output, y, reduction="sum").double()
        return loss, (output.argmax(1) == y).sum(), y.new_tensor(len(y))

    def synflow_output(self, model: nn.Module) -> Tensor:
        """The network's output for an all-ones input (SynFlow's data-free score)."""
        p = next(model.parameters())
        return model(torch.ones((1, *self.input_shape), dtype=p.dtype, device=p.device))

    def chance_accuracy(self) -> float:
        """Validation accuracy of always answering the most frequent validation class."""
        return float(torch.bincount(self.val_y).max()) / len(self.val_y)
