"""Seeded initialisation: a seed alone decides every initial weight (no global RNG)."""
from __future__ import annotations

import torch
from torch import nn


def initialize(model: nn.Module, scheme: str, seed: int) -> nn.Module:
    """Gaussian Glorot (the LTH paper) or Kaiming normal for conv/linear weights; zero biases;
    batch-norm to identity. Parameters are visited in registration order."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                w = torch.empty(module.weight.shape)
                if scheme == "glorot_normal":
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
