"""The user's data, with no code (`npz:PATH`, `imagefolder:DIR`, `parquet:PATH`) or with a loader
(`dataset: mypkg.data:load`, or one a plugin registers), made into the same in-memory
classification task as the built-ins: the validation hold-out (`data.validation_size` training
examples, seeded by `data.split_seed`), per-channel normalisation with the training split's
statistics, each seed's batch order, and one move to the device.

Formats:
- `npz:PATH`: arrays `x_train`, `y_train`, `x_test`, `y_test` (inputs uint8 images N×C×H×W or
  N×H×W, or float features N×…; labels integers 0..C-1).
- `imagefolder:DIR`: `DIR/train/<class>/*.png` and `DIR/test/<class>/*.png` (torchvision's
  ImageFolder layout; test classes are matched to training classes by name).
- `parquet:PATH`: one table of numeric feature columns, a label column (`data.label_column`,
  default `label`) and a `split` column of `train`/`test`.
- a loader `loader(**data.args)` returning (train_x, train_y, test_x, test_y) tensors or arrays,
  or (train, test) `torch.utils.data.Dataset`s of (input, label) pairs, materialised once.

`data.train_subset`/`test_subset` keep a seeded random subset, `data.channels` repeats a
grey channel (e.g. 3 for an ImageNet model) and `data.resize: [H, W]` resizes images, for every
image dataset, built-ins included (`adapt`)."""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from study.engine.data.classification import ClassificationTask
from study.errors import DataUnavailable, SpecError

if TYPE_CHECKING:
    from study.engine.data import Dataset
    from study.engine.spec import DataSpec

Raw = tuple[Tensor, Tensor, Tensor, Tensor]  # train inputs, train labels, test inputs, test labels
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def check_raw(raw: Any, what: str) -> Raw:
    """Four tensors that make a classification dataset, or a one-line SpecError naming what is wrong."""
    if not isinstance(raw, (tuple, list)) or len(raw) != 4:
        raise SpecError(f"{what} must give (train_x, train_y, test_x, test_y), got {_kind(raw)}")
    parts = [_tensor(a, f"{what}: {n}") for a, n in zip(raw, NPZ_KEYS, strict=True)]
    train_x, train_y, test_x, test_y = parts
    for x, y, split in ((train_x, train_y, "train"), (test_x, test_y, "test")):
        if x.ndim < 2 or len(x) == 0:
            raise SpecError(f"{what}: x_{split} must be N examples × features (N >= 1), got shape {tuple(x.shape)}")
        if y.ndim != 1 or len(y) != len(x):
            raise SpecError(f"{what}: y_{split} must hold one label per example ({len(x)}), got shape {tuple(y.shape)}")
        if not (x.dtype == torch.uint8 or x.is_floating_point()):
            raise SpecError(f"{what}: x_{split} must be uint8 images or floats, got {x.dtype}")
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise SpecError(f"{what}: x_{split} holds NaN or infinite values; clean or impute them")
        if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
            raise SpecError(f"{what}: y_{split} must be integer class labels 0..C-1, got {y.dtype}")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise SpecError(
            f"{what}: train inputs are {tuple(train_x.shape[1:])} but test inputs {tuple(test_x.shape[1:])}; "
            f"give both splits one shape"
        )
    classes = int(train_y.max()) + 1
    low = int(min(train_y.min(), test_y.min()))
    if low < 0:
        raise SpecError(f"{what}: labels must be 0..C-1, found {low}")
    if int(test_y.max()) >= classes:
        raise SpecError(
            f"{what}: test label {int(test_y.max())} is out of range: training labels go 0..{classes - 1}; "
            f"number the classes alike in both splits"
        )
    if classes < 2:
        raise SpecError(f"{what}: the training labels hold one class; a classifier needs at least two")
    return train_x, train_y.long(), test_x, test_y.long()


def _kind(obj: Any) -> str:
    return f"{type(obj).__name__} of {len(obj)}" if isinstance(obj, (tuple, list)) else type(obj).__name__


def _tensor(a: Any, what: str) -> Tensor:
    if isinstance(a, Tensor):
        return a.detach().cpu()
    if isinstance(a, np.ndarray):
        if a.dtype.kind not in "biuf":
            raise SpecError(f"{what} must be numeric, got an array of {a.dtype}")
        return torch.from_numpy(np.ascontiguousarray(a))
    raise SpecError(f"{what} must be a tensor or a numpy array, got {type(a).__name__}")


def materialise(dataset: Any, what: str) -> tuple[Tensor, Tensor]:
    """A `torch.utils.data.Dataset` of (input, label) pairs as (inputs, labels), read once."""
    try:
        n = len(dataset)
    except TypeError:
        raise SpecError(f"{what} must be a sized Dataset (with __len__), got {type(dataset).__name__}") from None
    xs, ys = [], []
    for i in range(n):
        item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise SpecError(f"{what}[{i}] must be an (input, label) pair, got {_kind(item)}")
        xs.append(_tensor(torch.as_tensor(item[0]) if not isinstance(item[0], Tensor) else item[0], f"{what}[{i}]"))
        ys.append(int(item[1]))
    try:
        return torch.stack(xs), torch.tensor(ys)
    except RuntimeError:
        raise SpecError(f"{what}: examples have different shapes; resize them to one (data.resize)") from None


def adapt(raw: Raw, spec: DataSpec) -> Raw:
    """The data spec's subsets, channel repeat and resize, applied to raw images."""
    train_x, train_y, test_x, test_y = raw
    if spec.train_subset is not None:
        train_x, train_y = _subset(train_x, train_y, spec.train_subset, spec.split_seed, "train")
    if spec.test_subset is not None:
        test_x, test_y = _subset(test_x, test_y, spec.test_subset, spec.split_seed + 1, "test")
    return _images(train_x, spec), train_y, _images(test_x, spec), test_y


def adapted_shape(shape: tuple[int, ...], spec: DataSpec) -> tuple[int, ...]:
    """An input shape after `adapt`."""
    if len(shape) != 3:
        return shape
    c, h, w = shape
    if spec.resize:
        h, w = spec.resize
    return (spec.channels or c, h, w)


def _subset(x: Tensor, y: Tensor, n: int, seed: int, split: str) -> tuple[Tensor, Tensor]:
    if n > len(x):
        raise SpecError(f"data.{split}_subset {n} is larger than the {split} split ({len(x)} examples); lower it")
    keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return x[keep], y[keep]


def _images(x: Tensor, spec: DataSpec) -> Tensor:
    if not (spec.channels or spec.resize):
        return x
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4:
        raise SpecError(f"data.channels/resize apply to images (N×C×H×W), and these inputs are {tuple(x.shape)}")
    if spec.channels and x.shape[1] != spec.channels:
        if x.shape[1] != 1:
            raise SpecError(
                f"data.channels {spec.channels}: only a 1-channel image can be repeated, these have {x.shape[1]}"
            )
        x = x.expand(-1, spec.channels, -1, -1)
    if spec.resize and tuple(x.shape[2:]) != tuple(spec.resize):
        dtype = x.dtype
        x = F.interpolate(x.float(), size=tuple(spec.resize), mode="bilinear", antialias=True, align_corners=False)
        x = x.round().clamp(0, 255).to(dtype) if dtype == torch.uint8 else x.to(dtype)
    return x.contiguous()


def normalised_task(
    name: str, raw: Raw, spec: DataSpec, batch_size: int, seed: int, device: torch.device
) -> ClassificationTask:
    """A checked raw dataset as the task the trainer takes: the built-ins' seeded hold-out, then
    every input scaled (uint8 by 1/255) and standardised per channel (per feature for flat
    inputs) with the mean and standard deviation of the training part (never validation or test)."""
    train_x, train_y, test_x, test_y = adapt(raw, spec)
    if train_x.ndim == 3 and train_x.dtype == torch.uint8:  # grey images without a channel axis
        train_x, test_x = train_x.unsqueeze(1), test_x.unsqueeze(1)
    n = len(train_x)
    if spec.validation_size >= n:
        raise SpecError(
            f"data.validation_size {spec.validation_size} leaves no training data ({name} has {n} training "
            f"examples); lower it"
        )
    if batch_size > n - spec.validation_size:
        raise SpecError(
            f"train.batch_size {batch_size} is larger than {name}'s training split ({n - spec.validation_size} "
            f"examples); lower train.batch_size or grow the training split"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(spec.split_seed))
    val_idx, train_idx = perm[: spec.validation_size], perm[spec.validation_size :]

    def scaled(x: Tensor) -> Tensor:
        x = x.to(device=device, dtype=torch.float32)
        return x.div_(255) if raw[0].dtype == torch.uint8 else x

    fit = scaled(train_x[train_idx])
    dims = [0, *range(2, fit.ndim)] if fit.ndim >= 3 else [0]
    mean, std = fit.mean(dims, keepdim=True), fit.std(dims, keepdim=True)
    std = torch.where(std > 0, std, torch.ones_like(std))

    def norm(x: Tensor) -> Tensor:
        return scaled(x).sub_(mean).div_(std)

    return ClassificationTask(
        train_x=fit.sub_(mean).div_(std),
        train_y=train_y[train_idx].to(device),
        val_x=norm(train_x[val_idx]),
        val_y=train_y[val_idx].to(device),
        test_x=norm(test_x),
        test_y=test_y.to(device),
        num_classes=int(train_y.max()) + 1,
        batch_size=batch_size,
        seed=seed,
    )


def _dataset(name: str, read: Callable[[DataSpec], Raw], identity: Callable[[], dict[str, Any]]) -> Dataset:
    """A Dataset entry over `read` (the checked raw tensors); its signature reads the data."""
    from study.engine.data import Dataset

    def signature(spec: DataSpec) -> tuple[tuple[int, ...], int, dict[str, Any]]:
        train_x, train_y, _, _ = read(spec)
        shape = tuple(train_x.shape[1:])
        if len(shape) == 2 and train_x.dtype == torch.uint8:
            shape = (1, *shape)
        return adapted_shape(shape, spec), int(train_y.max()) + 1, {}

    def load(spec: DataSpec, batch_size: int, seed: int, device: torch.device) -> ClassificationTask:
        return normalised_task(name, read(spec), spec, batch_size, seed, device)

    return Dataset("image", signature, load, identity=identity)


def loader_dataset(loader: Any, name: str, identity: dict[str, Any]) -> Dataset:
    """A user's loader as a dataset: `loader(**data.args)` gives four tensors, or a (train,
    test) pair of Datasets."""
    if not callable(loader):
        raise SpecError(f"dataset {name}: {type(loader).__name__} is not callable; name a loader function")

    def read(spec: DataSpec) -> Raw:
        try:
            out = loader(**spec.args)
        except SpecError:
            raise
        except FileNotFoundError as e:
            raise DataUnavailable(
                f"dataset {name}: the loader found no {e.filename or e}; check data.args {spec.args}"
            ) from None
        except TypeError as e:
            raise SpecError(f"dataset {name}: the loader does not take data.args {spec.args} ({e})") from None
        except Exception as e:  # noqa: BLE001  (the user's loader: its failure in one line)
            first = (str(e).splitlines() or [""])[0]
            raise SpecError(f"dataset {name}: the loader raised {type(e).__name__}: {first}") from None
        if isinstance(out, (tuple, list)) and len(out) == 2:
            out = (*materialise(out[0], f"dataset {name} train"), *materialise(out[1], f"dataset {name} test"))
        return check_raw(out, f"dataset {name}")

    return _dataset(name, read, lambda: identity)


def _exists(path: Path, name: str, want: str) -> Path:
    path = path.expanduser()
    if not path.exists():
        raise DataUnavailable(f"dataset {name}: {path} does not exist; give the path of {want}")
    return path


def npz_dataset(path: str) -> Dataset:
    name = f"npz:{path}"

    def read(spec: DataSpec) -> Raw:
        file = _exists(Path(path), name, "a .npz of x_train, y_train, x_test, y_test")
        try:
            arrays = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise SpecError(f"dataset {name}: {file} is not a readable .npz ({e})") from None
        missing = [k for k in NPZ_KEYS if k not in arrays.files]
        if missing:
            raise SpecError(
                f"dataset {name}: the .npz lacks {', '.join(missing)} (it has {', '.join(arrays.files) or 'nothing'}); "
                f"save arrays named {', '.join(NPZ_KEYS)}"
            )
        return check_raw(tuple(arrays[k] for k in NPZ_KEYS), f"dataset {name}")

    return _dataset(name, read, lambda: {"file_sha256": _file_hash(str(Path(path).expanduser()))})


def imagefolder_dataset(path: str) -> Dataset:
    name = f"imagefolder:{path}"

    def read(spec: DataSpec) -> Raw:
        return _read_image_folder(Path(path), name, spec)

    return _dataset(name, read, lambda: {"files": _folder_hash(str(Path(path).expanduser()))})


def _read_image_folder(root: Path, name: str, spec: DataSpec) -> Raw:
    from PIL import Image
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
    from torchvision.transforms.functional import pil_to_tensor

    root = _exists(root, name, "a folder with train/<class>/ and test/<class>/ image folders")
    splits = {}
    for split in ("train", "test"):
        folder = root / split
        if not folder.is_dir():
            raise SpecError(
                f"dataset {name}: {folder} is missing; put the images in {root}/train/<class>/ and {root}/test/<class>/"
            )
        try:
            classes, _ = find_classes(str(folder))
        except FileNotFoundError:
            raise SpecError(
                f"dataset {name}: {folder} holds no class folders; one folder per class, images inside"
            ) from None
        splits[split] = classes
    classes = splits["train"]
    if len(classes) < 2:
        raise SpecError(f"dataset {name}: {root}/train has one class ({classes[0]}); a classifier needs at least two")
    foreign = [c for c in splits["test"] if c not in classes]
    if foreign:
        raise SpecError(
            f"dataset {name}: test classes {foreign} have no training folder; give both splits the same classes"
        )
    index = {c: i for i, c in enumerate(classes)}
    out: list[Tensor] = []
    for split in ("train", "test"):
        try:
            samples = make_dataset(str(root / split), index, extensions=IMG_EXTENSIONS, allow_empty=True)
        except FileNotFoundError as e:
            raise SpecError(f"dataset {name}: {e}") from None
        if not samples:
            raise SpecError(
                f"dataset {name}: {root / split} has no images ({', '.join(IMG_EXTENSIONS[:4])}...); put images in its class folders"
            )
        mode = None
        images, labels = [], []
        for file, label in samples:
            with Image.open(file) as img:
                mode = mode or (
                    "L" if (spec.channels == 1 or (spec.channels is None and img.mode in ("L", "1", "I;16"))) else "RGB"
                )
                images.append(pil_to_tensor(img.convert(mode)))
            labels.append(label)
        shapes = {tuple(t.shape) for t in images}
        if len(shapes) > 1 and not spec.resize:
            raise SpecError(
                f"dataset {name}: the {split} images have {len(shapes)} sizes ({sorted(shapes)[:2]}...); "
                f"set data.resize: [H, W]"
            )
        if spec.resize:
            images = [_images(t.unsqueeze(0), _resize_only(spec))[0] for t in images]
        out += [torch.stack(images), torch.tensor(labels)]
    return check_raw(tuple(out), f"dataset {name}")


def _resize_only(spec: DataSpec) -> DataSpec:
    import dataclasses

    return dataclasses.replace(spec, channels=None)


def parquet_dataset(path: str) -> Dataset:
    name = f"parquet:{path}"

    def read(spec: DataSpec) -> Raw:
        from study.engine.data.tabular import read_parquet

        file = _exists(Path(path), name, "a Parquet table of feature columns, a label column and a split column")
        return check_raw(read_parquet(file, spec.label_column, name), f"dataset {name}")

    return _dataset(name, read, lambda: {"file_sha256": _file_hash(str(Path(path).expanduser()))})


@functools.lru_cache(maxsize=32)
def _file_hash(path: str) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return "missing"
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=32)
def _folder_hash(path: str) -> str:
    """sha256 over the folder's files: their paths below it and sizes (their bytes would cost a
    read of every image; a changed, added or removed image changes this)."""
    digest = hashlib.sha256()
    for folder, dirs, names in sorted(os.walk(path)):
        dirs.sort()
        for n in sorted(names):
            f = os.path.join(folder, n)
            digest.update(f"{os.path.relpath(f, path)}:{os.path.getsize(f)}\n".encode())
    return digest.hexdigest()[:16]


FORMATS: dict[str, Callable[[str], Dataset]] = {
    "npz": npz_dataset,
    "imagefolder": imagefolder_dataset,
    "parquet": parquet_dataset,
}
