"""An image-folder dataset: `root/train/<class>/*.png` and `root/test/<class>/*.png`, as
grey 28x28 images (torchvision's ImageFolder), handed to the platform as two Datasets of
(uint8 image tensor, label) pairs that it materialises once."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.datasets import ImageFolder
from torchvision.transforms.functional import pil_to_tensor


def _grey(image) -> torch.Tensor:
    return pil_to_tensor(image.convert("L"))


def fashion_folder(root: str) -> tuple[ImageFolder, ImageFolder]:
    """The platform's loader protocol: called with `data.args`, returns (train, test)."""
    base = Path(root).expanduser()
    return ImageFolder(str(base / "train"), transform=_grey), ImageFolder(str(base / "test"), transform=_grey)
