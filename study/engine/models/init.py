"""Seeded initialisation: a seed alone decides every initial weight (no global RNG).

A scheme (`INIT_SCHEMES`) names how conv/linear weights (and recurrent matrices) and how embeddings
are drawn; biases are zero and normalisation layers start as the identity under every scheme."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

Draw = Callable[[torch.Size, torch.Generator], Tensor]


def _uniform_fan_in(shape: torch.Size, g: torch.Generator) -> Tensor:
    bound = 1 / shape[1:].numel() ** 0.5
    return torch.rand(shape, generator=g) * 2 * bound - bound


def _glorot_normal(shape: torch.Size, g: torch.Generator) -> Tensor:
    return nn.init.xavier_normal_(torch.empty(shape), generator=g)


def _kaiming_normal(shape: torch.Size, g: torch.Generator) -> Tensor:
    return nn.init.kaiming_normal_(torch.empty(shape), nonlinearity="relu", generator=g)


def _embedding_small(shape: torch.Size, g: torch.Generator) -> Tensor:
    return torch.rand(shape, generator=g) * 0.2 - 0.1


def _embedding_normal(shape: torch.Size, g: torch.Generator) -> Tensor:
    return torch.randn(shape, generator=g)


@dataclass(frozen=True)
class InitScheme:
    weights: Draw  # conv and linear weights
    embedding: Draw


INIT_SCHEMES: dict[str, InitScheme] = {
    "glorot_normal": InitScheme(_glorot_normal, _embedding_small),  # the LTH paper
    "kaiming_normal": InitScheme(_kaiming_normal, _embedding_small),
    # U(±1/sqrt(fan_in)), embeddings U(±0.1): the recurrent language-model convention (AWD-LSTM,
    # Shen et al.), where the embedding is also the tied decoder
    "uniform": InitScheme(_uniform_fan_in, _embedding_small),
    # the same with N(0, 1) embeddings (torch's law, padding row included): a classifier's
    # embedding feeds only the recurrence, and at U(±0.1) its signal starts too weak to learn
    # logical inference in budget
    "uniform_normal_embedding": InitScheme(_uniform_fan_in, _embedding_normal),
}


def initialize(model: nn.Module, scheme: str, seed: int) -> nn.Module:
    """Draws every weight of `model` under `scheme`. Modules are visited in registration order;
    a tied weight is drawn once."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme}; choose one of {', '.join(INIT_SCHEMES)}")
    draw = INIT_SCHEMES[scheme]
    g = torch.Generator().manual_seed(seed)
    drawn: set[int] = set()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Embedding):
                drawn.add(id(module.weight))
                module.weight.copy_(draw.embedding(module.weight.shape, g))
            elif isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                if id(module.weight) not in drawn:  # else tied to an embedding already drawn
                    drawn.add(id(module.weight))
                    module.weight.copy_(draw.weights(module.weight.shape, g))
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.RNNBase):  # each gate block's matrix, as a linear map of its own
                for name in module._flat_weights_names:
                    p = getattr(module, name)
                    if name.startswith("weight_"):
                        p.copy_(draw.weights(p.shape, g))
                    else:
                        p.zero_()
            elif isinstance(module, nn.modules.batchnorm._NormBase):
                module.reset_parameters()
            elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
                module.reset_parameters()
    return model
