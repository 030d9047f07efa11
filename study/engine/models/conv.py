from __future__ import annotations

from torch import Tensor, nn

PLANS = {
    "conv2": [64, 64, "M"],
    "conv4": [64, 64, "M", 128, 128, "M"],
    "conv6": [64, 64, "M", 128, 128, "M", 256, 256, "M"],
}


class ConvNet(nn.Module):
    """Conv-2/4/6 of the LTH paper: pairs of 3x3 convs (64, 128, 256 filters) with max-pool
    after each pair, then fully connected 256, 256 and the output layer."""

    output_layer = "fc3"

    def __init__(self, plan: list, input_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        channels, h, w = input_shape
        layers: list[nn.Module] = []
        for item in plan:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU()]
                channels = item
        self.conv = nn.Sequential(*layers)
        self.fc1 = nn.Linear(channels * h * w, 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc3 = nn.Linear(256, num_classes)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x).flatten(1)
        return self.fc3(self.relu(self.fc2(self.relu(self.fc1(x)))))
