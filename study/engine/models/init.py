"""Seeded initialisation: a seed alone decides every initial weight (no global RNG)."""

from __future__ import annotations

import torch
from torch import nn


def initialize(model: nn.Module, scheme: str, seed: int) -> nn.Module:
    """Gaussian Glorot (the LTH paper), Kaiming normal, or uniform U(±1/sqrt(fan_in)) (the usual
    recurrent init) for conv/linear weights; zero biases; embeddings U(±0.1); batch-norm to
    identity. Modules are visited in registration order; a tied weight is drawn once."""
    g = torch.Generator().manual_seed(seed)
    drawn: set[int] = set()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Embedding):
                drawn.add(id(module.weight))
                module.weight.copy_(torch.rand(module.weight.shape, generator=g) * 0.2 - 0.1)
            elif isinstance(module, (nn.Linear, nn.Conv2d)):
                if id(module.weight) in drawn:  # tied to an embedding already drawn
                    if module.bias is not None:
                        module.bias.zero_()
                    continue
                drawn.add(id(module.weight))
                w = torch.empty(module.weight.shape)
                if scheme == "uniform":
                    bound = 1 / module.weight[0].numel() ** 0.5
                    w = torch.rand(module.weight.shape, generator=g) * 2 * bound - bound
                elif scheme == "glorot_normal":
                    nn.init.xavier_normal_(w, generator=g)
                elif scheme == "kaiming_normal":
                    nn.init.kaiming_normal_(w, nonlinearity="relu", generator=g)
                else:
                    raise ValueError(f"unknown init scheme {scheme}")
                module.weight.copy_(w)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()
                module.reset_running_stats()
    return model
