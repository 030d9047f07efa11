"""Where a model's random draws (dropout, DropConnect) come from. Alone, a module draws from
torch's global generator, which the lone loop seeds per training (`TrainRequest.dropout_seed`).
A packed trainer runs K members as one vmapped model, where no generator can give each member
its own stream: it records the draws one forward asks for (their shapes and dtypes, in order),
draws each member's from a generator seeded as the lone loop seeds the global one, and replays
them into the vmapped forward (`Replay`). A model that packs with dropout takes every random
number through its modules' `draws`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

DrawPlan = tuple[tuple[tuple[int, ...], torch.dtype], ...]  # one forward's draws: (shape, dtype) in order


class Draws:
    """Uniform [0, 1) draws from torch's global generator."""

    def uniform(self, shape: Sequence[int], device: torch.device, dtype: torch.dtype | None = None) -> Tensor:
        return torch.rand(tuple(shape), device=device, dtype=dtype)


GLOBAL = Draws()  # stateless: every module's default


class Replay(Draws):
    """Draws handed in from outside: `record` lists what a forward asks for; `queue` then holds
    the tensors to give back, in that order."""

    def __init__(self) -> None:
        self.recording: list[tuple[tuple[int, ...], torch.dtype]] | None = None
        self.queue: list[Tensor] = []

    def uniform(self, shape: Sequence[int], device: torch.device, dtype: torch.dtype | None = None) -> Tensor:
        if self.recording is not None:
            drawn = torch.zeros(tuple(shape), device=device, dtype=dtype)
            self.recording.append((tuple(drawn.shape), drawn.dtype))
            return drawn
        if not self.queue:
            raise RuntimeError("a packed model drew more random numbers than its recorded plan holds")
        return self.queue.pop(0)


def modules_that_draw(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(getattr(m, "draws", None), Draws)]


def draws_elsewhere(model: nn.Module) -> bool:
    """The model has dropout modules that draw from torch's generator directly: vmap cannot give
    its members their own draws, so it does not pack."""
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules())
