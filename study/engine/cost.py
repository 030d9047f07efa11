"""The theoretical cost of a lineage's network, which Blalock et al. (MLSys 2020) ask pruning
results to report beside accuracy: multiply-accumulates (MACs) of one forward pass of the task's
probe example (an image; an 8-token sequence, or a pair of them), dense and with the mask, the
compression ratio and the theoretical speed-up. MACs count weight products only (no bias,
normalisation or activation work); the compression ratio counts every parameter (biases and
normalisation included, which are never pruned), as ShrinkBench does, so at 1% of prunable
weights left it is below 100.

Counted per weight tensor, for any model: every `linear` and `conv1d`/`conv2d`/`conv3d` call of
one probe forward is seen (a TorchFunctionMode), and a weight applied at P positions (tokens,
output pixels or voxels) costs P MACs per entry, so P MACs per entry the mask keeps. An
RNN/LSTM/GRU module applies each of its input and hidden matrices once per time step and
sequence (seen by a forward pre-hook: P = steps × batch). An embedding lookup multiplies nothing
and costs no MACs; neither do nn.MultiheadAttention's own projections, which are not pruned."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from study.engine.pruning import Mask

_CONVS = {F.conv1d: 1, torch.conv1d: 1, F.conv2d: 2, torch.conv2d: 2, F.conv3d: 3, torch.conv3d: 3}


def _positions(out: torch.Tensor, dims: int) -> int:
    """Output positions of a convolution with `dims` spatial dims (× batch; unbatched works too)."""
    return out.numel() // out.shape[-dims - 1]


class _CountPositions(TorchFunctionMode):
    """Per weight tensor (by identity), the positions it is applied at, summed over calls."""

    def __init__(self) -> None:
        super().__init__()
        self.positions: dict[int, int] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204  (torch's protocol)
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        weight = args[1] if len(args) > 1 else kwargs.get("weight")
        if func is F.linear and weight is not None:
            x = args[0]
            self._add(weight, x.numel() // x.shape[-1])
        elif func in _CONVS and weight is not None:
            self._add(weight, _positions(out, _CONVS[func]))
        return out

    def _add(self, weight: torch.Tensor, positions: int) -> None:
        self.positions[id(weight)] = self.positions.get(id(weight), 0) + positions


def weight_positions(model: nn.Module, probe: Callable[[nn.Module], Any]) -> dict[str, int]:
    """Parameter name -> positions per probe forward, for every weight a linear map or a
    convolution applies (an embedding lookup costs no MACs; a decoder tied to it does)."""
    names = {id(p): name for name, p in model.named_parameters()}
    was_training = model.training
    model.eval()
    counter = _CountPositions()
    hooks = [
        m.register_forward_pre_hook(partial(_recurrent, counter)) for m in model.modules() if isinstance(m, nn.RNNBase)
    ]
    try:
        with torch.no_grad(), counter:
            probe(model)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return {names[i]: n for i, n in counter.positions.items() if i in names}


def _recurrent(counter: _CountPositions, module: nn.RNNBase, args: tuple[Any, ...]) -> None:
    """An RNN module's matrices, each applied once per step of every sequence of its input."""
    x = args[0]
    if isinstance(x, nn.utils.rnn.PackedSequence):
        steps = int(x.batch_sizes.sum())  # the packed steps of every sequence
    elif x.dim() == 2:
        steps = x.shape[0]  # one unbatched sequence
    else:
        steps = x.shape[0] * x.shape[1]
    for name in module._flat_weights_names:
        if name.startswith("weight_"):
            counter._add(getattr(module, name), steps)


@dataclass(frozen=True)
class Cost:
    macs_dense: int
    macs_remaining: int
    parameters: int
    parameters_remaining: int

    @property
    def compression_ratio(self) -> float:
        return self.parameters / self.parameters_remaining

    @property
    def theoretical_speedup(self) -> float:
        return self.macs_dense / self.macs_remaining if self.macs_remaining else float("inf")


def cost(model: nn.Module, positions: dict[str, int], mask: Mask) -> Cost:
    """The cost of `model` under `mask` (parameters without a mask are kept whole)."""
    params = dict(model.named_parameters())
    kept = {name: int(mask[name].sum()) if name in mask else p.numel() for name, p in params.items()}
    return Cost(
        macs_dense=sum(n * params[name].numel() for name, n in positions.items()),
        macs_remaining=sum(n * kept[name] for name, n in positions.items()),
        parameters=sum(p.numel() for p in params.values()),
        parameters_remaining=sum(kept.values()),
    )
