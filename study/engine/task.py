"""What the training loops need of a task (images: data.classification; sequences:
data.sequence_tasks), one protocol for the lone loop and the packed one.

A task owns its data and how a model reads it: its batches (one member's, or every packed
member's stacked along a new first dimension), the model's arguments for a batch, the loss of a
batch's output and a split's evaluation statistics. The lone loop calls `loss` and `evaluate`;
the packed trainer runs the same `output_loss` (`stacked_loss`) and `eval_stats` once per member
under vmap, so a member's loss and evaluation are the lone ones by construction. `TaskMethods`
derives `loss`, `evaluate` and `stacked_loss` from those parts."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.func import vmap

EvalStats = tuple[Tensor, Tensor, Tensor]  # (loss summed over the batch in float64, correct, count)


class Task(Protocol):
    eval_chunk: int  # examples per evaluation chunk (the lone loop's)

    def batch(self, iteration: int) -> tuple[Any, Tensor]:
        """The training batch at a global iteration: (inputs, targets); inputs may be tuples."""
        ...

    def reordered(self, seed: int) -> Task:
        """The same data and splits, batched in the order of another seed (instability's second
        copy, a packed trial's seeds)."""
        ...

    def data_key(self) -> Hashable:
        """Equal for tasks that hold the same data (only their batch order differs): their
        trainings can pack."""
        ...

    def stacked_batch(self, members: Sequence[Task], iteration: int) -> tuple[Any, Tensor]:
        """Each member's batch at `iteration`, stacked to (K, ...) (members share `data_key`)."""
        ...

    def eval_batches(self, split: str, chunk: int | None = None) -> Iterator[tuple[Any, Tensor]]:
        """A split ('val' or 'test') in chunks (`chunk` examples each, default the task's)."""
        ...

    def model_inputs(self, x: Any) -> tuple[Any, ...]:
        """The model's positional arguments for a batch's inputs."""
        ...

    def output_loss(self, output: Any, y: Tensor, temperature: float = 1.0) -> Tensor:
        """The mean training loss of a batch, from the model's output."""
        ...

    def eval_stats(self, output: Any, y: Tensor) -> EvalStats:
        """One evaluation chunk: (loss summed in float64, correct predictions, count)."""
        ...

    def stacked_loss(self, outputs: Any, y: Tensor) -> Tensor:
        """The (K,) training losses of K members' stacked outputs and targets: each member's
        `output_loss` (`TaskMethods`: vmapped; a task may compute the same at once)."""
        ...

    def loss(self, model: nn.Module, x: Any, y: Tensor, temperature: float = 1.0) -> Tensor: ...
    def evaluate(self, model: nn.Module, split: str) -> tuple[float, float]: ...
    def chance_accuracy(self) -> float: ...
    def synflow_output(self, model: nn.Module) -> Tensor:
        """The output for a fixed probe input (SynFlow's data-free score; the cost columns' forward)."""
        ...

    @property
    def fixed_batch_shape(self) -> bool:
        """Every training batch has the same shapes (a CUDA graph can replay the step)."""
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


def add_stats(total: EvalStats | None, stats: EvalStats) -> EvalStats:
    return stats if total is None else (total[0] + stats[0], total[1] + stats[1], total[2] + stats[2])


def evaluate_batches(task: Task, model: nn.Module, batches: Iterable[tuple[Any, Tensor]]) -> tuple[float, float]:
    """(mean loss, accuracy) of `model` over `batches`, in eval mode, without gradients."""
    was_training = model.training
    model.eval()
    total: EvalStats | None = None
    with torch.inference_mode():
        for x, y in batches:
            total = add_stats(total, task.eval_stats(model(*task.model_inputs(x)), y))
    model.train(was_training)
    assert total is not None, "a split holds at least one example"
    loss_sum, correct, count = total
    return float(loss_sum) / int(count), int(correct) / int(count)


class TaskMethods:
    """`loss`, `evaluate` and `stacked_loss` of a task, from its `output_loss`, `eval_batches` and
    `eval_stats`."""

    def loss(self: Task, model: nn.Module, x: Any, y: Tensor, temperature: float = 1.0) -> Tensor:
        return self.output_loss(model(*self.model_inputs(x)), y, temperature)

    def evaluate(self: Task, model: nn.Module, split: str) -> tuple[float, float]:
        """(mean loss, accuracy) on 'val' or 'test'."""
        return evaluate_batches(self, model, self.eval_batches(split))

    def stacked_loss(self: Task, outputs: Any, y: Tensor) -> Tensor:
        return vmap(self.output_loss)(outputs, y)
