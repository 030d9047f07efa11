from __future__ import annotations

from math import prod

from torch import Tensor, nn


class LeNet300100(nn.Module):
    """LeNet-300-100: fully connected 300, 100, then the output layer (LTH paper, Figure 2)."""

    output_layer = "fc3"

    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(prod(input_shape), 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        return self.fc3(self.relu(self.fc2(self.relu(self.fc1(x)))))
