"""A small CNN with batch-norm and a residual block: a stem (conv, BN, ReLU, 2x2 max-pool), one
residual block of two 3x3 convs with BN, global average pooling to 2x2 and a linear head."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ResidualBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class ResCNN(nn.Module):
    def __init__(self, channels: int, num_classes: int, width: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.block = ResidualBlock(width)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Linear(4 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.block(self.stem(x))).flatten(1))


def build_res_cnn(input_shape: tuple[int, ...], num_classes: int, width: int = 8) -> nn.Module:
    """The platform's factory protocol: (input shape, number of classes, **model_args)."""
    return ResCNN(input_shape[0], num_classes, width)
