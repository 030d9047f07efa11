"""A user's data loaders (imported by import path in the tests: `dataset: userdata:tensors`)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset


def images(n_train: int = 90, n_test: int = 30, classes: int = 3) -> tuple[torch.Tensor, ...]:
    """Grey 8x8 uint8 images whose mean brightness says the class, sorted by class (the order an
    image folder lists them in)."""
    g = torch.Generator().manual_seed(7)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) * classes // n
        x = (40 + 60 * y.view(n, 1, 1, 1) + torch.randint(0, 50, (n, 1, 8, 8), generator=g)).to(torch.uint8)
        return x, y

    return (*draw(n_train), *draw(n_test))


def tensors(scale: float = 1.0):
    return images()


def datasets():
    tx, ty, sx, sy = images()
    return TensorDataset(tx, ty), TensorDataset(sx, sy)


def wrong_lengths():
    tx, ty, sx, sy = images()
    return tx, ty[:-1], sx, sy


def float_labels():
    tx, ty, sx, sy = images()
    return tx, ty.float(), sx, sy


def with_nan():
    tx, ty, sx, sy = images()
    tx = tx.float()
    tx[3, 0, 2, 2] = float("nan")
    return tx, ty, sx.float(), sy


def label_out_of_range():
    tx, ty, sx, sy = images()
    sy = sy.clone()
    sy[0] = 7
    return tx, ty, sx, sy


def negative_labels():
    tx, ty, sx, sy = images()
    return tx, ty - 1, sx, sy


def numpy_arrays():
    return tuple(np.asarray(t) for t in images())
