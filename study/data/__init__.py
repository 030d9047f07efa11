"""Datasets by name; `load_task` turns a spec's dataset into an in-memory task on a device."""
from __future__ import annotations

import torch

from study.data.classification import ClassificationTask
from study.data.vision import SOURCES, load_raw, synthetic_raw
from study.specs import DataSpec, SpecError

SYNTHETIC_SHAPES = {"synthetic": (1, 28, 28), "synthetic_cifar": (3, 32, 32)}
DATASETS = (*SOURCES, *SYNTHETIC_SHAPES)


def dataset_input_shape(name: str) -> tuple[int, int, int]:
    return SYNTHETIC_SHAPES[name] if name in SYNTHETIC_SHAPES else SOURCES[name].input_shape


def load_task(name: str, spec: DataSpec, *, batch_size: int, seed: int,
              device: torch.device | str = "cpu") -> ClassificationTask:
    """Load `name`, hold out `spec.validation_size` training examples (seeded by split_seed),
    normalise with the dataset's channel statistics and move everything to `device` once."""
    if name in SYNTHETIC_SHAPES:
        shape = SYNTHETIC_SHAPES[name]
        train_x, train_y, test_x, test_y = synthetic_raw(shape, spec.synthetic_size, spec.split_seed)
        mean = std = None
        augment_default = False
    elif name in SOURCES:
        train_x, train_y, test_x, test_y = load_raw(name, spec)
        mean, std = SOURCES[name].mean, SOURCES[name].std
        augment_default = SOURCES[name].augment
    else:
        raise SpecError(f"dataset: unknown '{name}'; choose one of {', '.join(DATASETS)}")
    n = len(train_x)
    if spec.validation_size >= n:
        raise SpecError(f"data.validation_size {spec.validation_size} leaves no training data ({name} has {n} training examples); lower it")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(spec.split_seed))
    val_idx, train_idx = perm[: spec.validation_size], perm[spec.validation_size:]

    def norm(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device=device, dtype=torch.float32).div_(255)
        if mean is None:
            return x.sub_(0.5).div_(0.25)
        c = x.shape[1]
        return x.sub_(torch.tensor(mean, device=device).view(1, c, 1, 1)).div_(torch.tensor(std, device=device).view(1, c, 1, 1))

    c = train_x.shape[1]
    pad_value = norm(torch.zeros(1, c, 1, 1, dtype=torch.uint8)).view(c)
    return ClassificationTask(
        train_x=norm(train_x[train_idx]), train_y=train_y[train_idx].to(device),
        val_x=norm(train_x[val_idx]), val_y=train_y[val_idx].to(device),
        test_x=norm(test_x), test_y=test_y.to(device),
        num_classes=int(max(train_y.max(), test_y.max())) + 1,
        batch_size=batch_size, seed=seed,
        augment=augment_default if spec.augment is None else spec.augment,
        pad_value=pad_value,
    )
