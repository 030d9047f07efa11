"""MNIST, Fashion-MNIST and CIFAR-10 through torchvision's dataset classes, held in memory.

Raw files are read once by torchvision; everything after that is whole-tensor work on the
training device: one normalisation, a seeded validation split, seeded per-epoch permutations,
and CIFAR augmentation (pad-4 random crop, horizontal flip) done on batches of tensors.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from study.errors import SpecError

if TYPE_CHECKING:
    from study.engine.spec import DataSpec

SYSTEM_DIRS = {"fashion_mnist": ["/usr/share/datasets/fashion-mnist"]}

# name -> (torchvision class, folder torchvision expects under root, files that must exist there,
#          mean, std, input shape)
_IDX = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
_CIFAR = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"]


@dataclass(frozen=True)
class VisionSource:
    torchvision_class: str
    folder: str
    files: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_shape: tuple[int, int, int]
    augment: bool


def torchvision_dataset(name: str) -> type:
    """The torchvision dataset class (imported only when raw files must be read: torchvision
    takes about a second to import, which every trial of a study would pay)."""
    from torchvision import datasets as tvd

    if name != "CIFAR10":
        return getattr(tvd, name)

    class LocalCIFAR10(tvd.CIFAR10):
        """torchvision's CIFAR10 that accepts any complete local copy: without md5 sums it
        checks that the files exist (it otherwise insists on the original archive's sums,
        which rejects re-packed folders). Downloads are still verified by torchvision."""

        train_list = [[n, None] for n, _ in tvd.CIFAR10.train_list]
        test_list = [[n, None] for n, _ in tvd.CIFAR10.test_list]
        meta = {**tvd.CIFAR10.meta, "md5": None}

    return LocalCIFAR10


SOURCES = {
    "mnist": VisionSource("MNIST", "MNIST/raw", tuple(_IDX), (0.1307,), (0.3081,), (1, 28, 28), False),
    "fashion_mnist": VisionSource(
        "FashionMNIST", "FashionMNIST/raw", tuple(_IDX), (0.2860,), (0.3530,), (1, 28, 28), False
    ),
    "cifar10": VisionSource(
        "CIFAR10",
        "cifar-10-batches-py",
        tuple(_CIFAR),
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        (3, 32, 32),
        True,
    ),
}


def cache_dir() -> Path:
    return Path(os.environ.get("STUDY_CACHE_DIR", Path.home() / ".cache" / "study"))


def candidate_roots(name: str, spec: DataSpec) -> list[Path]:
    """Where to look: only data.root when the spec names one (never a silent fallback to another
    copy); otherwise $STUDY_DATA_DIR, the cache and the system's copy."""
    if spec.root:
        return [Path(spec.root).expanduser()]
    roots = []
    if os.environ.get("STUDY_DATA_DIR"):
        roots.append(Path(os.environ["STUDY_DATA_DIR"]).expanduser())
    roots.append(cache_dir() / "datasets")
    roots += [Path(p) for p in SYSTEM_DIRS.get(name, [])]
    return roots


def _has_files(folder: Path, files: tuple[str, ...]) -> bool:
    return all((folder / f).is_file() for f in files)


def _write_whole(target: Path, fill: Callable[[Path], None]) -> None:
    """`fill(tmp)` writes a temporary file beside `target`, then renamed into place: a reader
    never sees half a file, concurrent stagers never collide, and a failure leaves nothing."""
    tmp = target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        fill(tmp)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def _gunzip(source: Path, target: Path) -> None:
    with gzip.open(source, "rb") as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)


def _stage_flat_idx(name: str, flat: Path, source: VisionSource) -> Path | None:
    """A folder holding the four IDX files directly (plain or .gz), as Debian's
    dataset-fashion-mnist does, is staged once into the layout torchvision expects."""
    if not all((flat / f).is_file() or (flat / f"{f}.gz").is_file() for f in source.files):
        return None
    first = next(p for p in (flat / source.files[0], flat / f"{source.files[0]}.gz") if p.is_file())
    stamp = hashlib.sha256(f"{flat.resolve()}:{first.stat().st_mtime_ns}".encode()).hexdigest()[:12]
    root = cache_dir() / "staged" / f"{name}-{stamp}"
    raw = root / source.folder
    if _has_files(raw, source.files):
        return root
    raw.mkdir(parents=True, exist_ok=True)
    for f in source.files:
        if (flat / f).is_file():
            _write_whole(raw / f, partial(shutil.copyfile, flat / f))
        else:
            _write_whole(raw / f, partial(_gunzip, flat / f"{f}.gz"))
    return root


def find_root(name: str, spec: DataSpec) -> Path:
    source = SOURCES[name]
    looked = candidate_roots(name, spec)
    for root in looked:
        if _has_files(root / source.folder, source.files):
            return root
        if source.files == tuple(_IDX):
            staged = _stage_flat_idx(name, root, source)
            if staged is not None:
                return staged
    if spec.download:
        target = looked[0]
        torchvision_dataset(source.torchvision_class)(str(target), train=True, download=True)
        return target
    where = ", ".join(str(r) for r in looked)
    hint = "apt-get install dataset-fashion-mnist, or " if name == "fashion_mnist" else ""
    raise SpecError(
        f"dataset '{name}' not found: looked for {source.folder}/{source.files[0]} under {where}; "
        f"{hint}set data.download: true on a machine that is online, or copy torchvision's "
        f"'{source.folder}' folder under data.root (or $STUDY_DATA_DIR)"
    )


def check_stageable(name: str) -> None:
    if name not in SOURCES:
        raise SpecError(f"dataset {name!r} has no files to stage; stage one of {', '.join(SOURCES)}")


def stage_dataset(name: str, to: str | Path, download: bool = False) -> Path:
    """Copy a dataset's files, from wherever `find_root` finds them (or downloaded), into
    `to/<folder>` (each file written whole under a temporary name); returns that folder. A
    cluster's pods find them there with $STUDY_DATA_DIR=`to`."""
    from study.engine.spec import DataSpec

    check_stageable(name)
    if not str(to).strip():
        raise SpecError("--to is empty; name the folder to stage into, e.g. /mnt/lake/datasets")
    source = SOURCES[name]
    target = Path(to).expanduser() / source.folder
    if _has_files(target, source.files):
        return target
    root = find_root(name, DataSpec(download=download))
    try:
        target.mkdir(parents=True, exist_ok=True)
        for f in source.files:
            _write_whole(target / f, partial(shutil.copyfile, root / source.folder / f))
    except OSError as e:
        raise SpecError(
            f"cannot stage {name} into {target}: {e.strerror or e}; name a writable folder free of other files"
        ) from None
    return target


def _as_nchw_uint8(data) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(data))
    if t.ndim == 3:
        return t.unsqueeze(1).contiguous()
    return t.permute(0, 3, 1, 2).contiguous()


def load_raw(name: str, spec: DataSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images uint8 NCHW, train labels, test images, test labels), read by torchvision's
    dataset class once and then from a tensor cache keyed by the files' location and mtime."""
    source = SOURCES[name]
    root = find_root(name, spec)
    first = root / source.folder / source.files[0]
    key = hashlib.sha256(f"{first.resolve()}:{first.stat().st_mtime_ns}:{first.stat().st_size}".encode()).hexdigest()[
        :16
    ]
    cached = cache_dir() / "tensors" / f"{name}-{key}.pt"
    if cached.is_file():
        try:
            blob = torch.load(cached, weights_only=True)
            return blob["train_x"], blob["train_y"], blob["test_x"], blob["test_y"]
        except Exception:
            cached.unlink(missing_ok=True)  # a damaged cache entry is rebuilt from the files
    cls = torchvision_dataset(source.torchvision_class)
    train = cls(str(root), train=True, download=False)
    test = cls(str(root), train=False, download=False)
    tensors = (
        _as_nchw_uint8(train.data),
        torch.as_tensor(np.asarray(train.targets), dtype=torch.long),
        _as_nchw_uint8(test.data),
        torch.as_tensor(np.asarray(test.targets), dtype=torch.long),
    )
    cached.parent.mkdir(parents=True, exist_ok=True)
    blob = dict(zip(("train_x", "train_y", "test_x", "test_y"), tensors, strict=True))
    _write_whole(cached, partial(torch.save, blob))
    return tensors


def synthetic_raw(shape: tuple[int, int, int], n: int, seed: int, num_classes: int = 10):
    """A small learnable image set: class prototypes plus noise, seeded, as uint8 images."""
    g = torch.Generator().manual_seed(10_000 + seed)
    protos = 96 + torch.rand((num_classes, *shape), generator=g) * 64

    def draw(count: int):
        y = torch.randint(0, num_classes, (count,), generator=g)
        noise = torch.randn((count, *shape), generator=g) * 96
        x = (protos[y] + noise).clamp(0, 255).to(torch.uint8)
        return x, y

    train_x, train_y = draw(n)
    test_x, test_y = draw(max(n // 5, 1))
    return train_x, train_y, test_x, test_y
