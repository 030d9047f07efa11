"""A user's models, as a researcher would write them (imported by import path in the tests:
`model: usernets:mlp`)."""

from __future__ import annotations

import math

import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, features: int, hidden: int, classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(features, hidden), nn.BatchNorm1d(hidden), nn.ReLU())
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.body(x)))


def mlp(input_shape, num_classes, hidden=32):
    return MLP(math.prod(input_shape), hidden, num_classes)


def mlp_dropout(input_shape, num_classes):
    return MLP(math.prod(input_shape), 16, num_classes, dropout=0.5)


class Mixed(nn.Module):
    """A 28x28 image through a Conv3d, a Conv1d over its rows, a position embedding and a GRU."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.conv3 = nn.Conv3d(1, 2, (1, 3, 3), padding=(0, 1, 1))
        self.conv1 = nn.Conv1d(56, 16, 3, padding=1)
        self.norm = nn.LayerNorm(16)
        self.position = nn.Embedding(28, 16)
        self.gru = nn.GRU(16, 16, batch_first=True)
        self.out = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        h = self.conv3(x.unsqueeze(1)).reshape(b, 56, 28)  # (B, 2 channels x 28 rows, 28 columns)
        h = self.conv1(h).transpose(1, 2)  # (B, 28 steps, 16)
        h = self.norm(h + self.position(torch.arange(28, device=x.device)))
        _, last = self.gru(h)
        return self.out(last[0])


def mixed(input_shape, num_classes):
    return Mixed(num_classes)


class Noisy(nn.Module):
    """Adds Gaussian noise to its input in training (a random op of its own)."""

    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.fc(x + torch.randn_like(x) if self.training else x)


def noisy(input_shape, num_classes):
    return Noisy(math.prod(input_shape), num_classes)


class BiasOnly(nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :1] * 0 + self.bias


def bias_only(input_shape, num_classes):
    return BiasOnly(num_classes)


def three_classes(input_shape, num_classes):
    return MLP(math.prod(input_shape), 8, 3)


def not_a_module(input_shape, num_classes):
    return "a network"


NOT_CALLABLE = 42
