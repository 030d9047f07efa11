"""Datasets by name (`DATASETS`, like `MODELS`): each entry says what kind of data it is (matched
against a model's `inputs`), its signature (input shape, classes, model keyword arguments) without
loading anything, and how to load it into an in-memory task on a device. Adding a dataset is one
entry here (and its loader)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import torch

from study.engine.data import sequences as seq
from study.engine.data.classification import ClassificationTask
from study.engine.data.generic import adapt, adapted_shape
from study.engine.data.sequence_tasks import LanguageModelTask, SequenceClassificationTask, Vocabulary
from study.engine.data.vision import SOURCES, load_raw, synthetic_raw
from study.errors import SpecError

if TYPE_CHECKING:
    from study.engine.spec import DataSpec
    from study.engine.task import Task

Signature = tuple[tuple[int, ...], int, dict[str, Any]]  # input shape, number of classes, model kwargs
LOGIC_TRAIN_OPS, LOGIC_TEST_OPS = 6, 12


@dataclass(frozen=True)
class Dataset:
    inputs: str  # image, text (language modelling) or sequence
    signature: Callable[[DataSpec], Signature]
    load: Callable[[DataSpec, int, int, torch.device], Task]  # (data spec, batch size, seed, device)
    trees: Callable[[int, int], list[seq.Sentence]] | None = None  # (n, seed): sentences with gold trees
    identity: Callable[[], dict[str, Any]] | None = None  # a user's data: its source or files (part of lineage ids)


def _check_batch(batch_size: int, train_size: int, name: str) -> None:
    if batch_size > train_size:
        raise SpecError(
            f"train.batch_size {batch_size} is larger than {name}'s training split ({train_size} examples); "
            f"lower train.batch_size or grow the training split"
        )


def _images(
    name: str,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    spec: DataSpec,
    batch_size: int,
    seed: int,
    device: torch.device,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    augment: bool,
) -> ClassificationTask:
    """Hold out `spec.validation_size` training examples (seeded by split_seed), normalise with the
    channel statistics (None: to mean 0.5, std 0.25) and move everything to `device` once."""
    n = len(train_x)
    if spec.validation_size >= n:
        raise SpecError(
            f"data.validation_size {spec.validation_size} leaves no training data ({name} has {n} training examples); lower it"
        )
    _check_batch(batch_size, n - spec.validation_size, name)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(spec.split_seed))
    val_idx, train_idx = perm[: spec.validation_size], perm[spec.validation_size :]

    def norm(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device=device, dtype=torch.float32).div_(255)
        if mean is None or std is None:
            return x.sub_(0.5).div_(0.25)
        c = x.shape[1]
        return x.sub_(torch.tensor(mean, device=device).view(1, c, 1, 1)).div_(
            torch.tensor(std, device=device).view(1, c, 1, 1)
        )

    c = train_x.shape[1]
    pad_value = norm(torch.zeros(1, c, 1, 1, dtype=torch.uint8)).view(c)
    return ClassificationTask(
        train_x=norm(train_x[train_idx]),
        train_y=train_y[train_idx].to(device),
        val_x=norm(train_x[val_idx]),
        val_y=train_y[val_idx].to(device),
        test_x=norm(test_x),
        test_y=test_y.to(device),
        num_classes=int(max(train_y.max(), test_y.max())) + 1,
        batch_size=batch_size,
        seed=seed,
        augment=augment if spec.augment is None else spec.augment,
        pad_value=pad_value,
    )


def _vision(name: str, spec: DataSpec, batch_size: int, seed: int, device: torch.device) -> ClassificationTask:
    source = SOURCES[name]
    train_x, train_y, test_x, test_y = adapt(load_raw(name, spec), spec)
    mean, std = source.mean, source.std
    if spec.channels and len(mean) == 1:  # a grey image repeated: the same statistics per channel
        mean, std = mean * spec.channels, std * spec.channels
    return _images(name, train_x, train_y, test_x, test_y, spec, batch_size, seed, device, mean, std, source.augment)


def _synthetic(
    name: str, shape: tuple[int, int, int], spec: DataSpec, batch_size: int, seed: int, device: torch.device
) -> ClassificationTask:
    train_x, train_y, test_x, test_y = adapt(synthetic_raw(shape, spec.synthetic_size, spec.split_seed), spec)
    return _images(name, train_x, train_y, test_x, test_y, spec, batch_size, seed, device, None, None, False)


def _pcfg_vocabulary(spec: DataSpec) -> Vocabulary:
    return Vocabulary([w for words in seq.LEXICON.values() for w in words] + ["that"])


def _english_vocabulary(spec: DataSpec) -> Vocabulary:
    return Vocabulary([w for words in seq.ENGLISH_LEXICON.values() for w in words] + list(seq.ENGLISH_WORDS))


def _logic_vocabulary(spec: DataSpec) -> Vocabulary:
    return Vocabulary(list(seq.VARIABLES) + ["and", "or", "not", "(", ")"])


def _listops_vocabulary(spec: DataSpec) -> Vocabulary:
    return Vocabulary(list(seq.LISTOPS) + [str(d) for d in range(10)] + ["]"])


def _text_corpus(spec: DataSpec) -> dict[str, list[seq.Sentence]]:
    if not spec.root:
        raise SpecError("dataset text needs data.root: a folder with train.txt, valid.txt and test.txt (PTB format)")
    return seq.read_text_corpus(spec.root)


def _text_vocabulary(spec: DataSpec) -> Vocabulary:
    return Vocabulary([t for s in _text_corpus(spec)["train"] for t in s.tokens])


def _language_model(
    name: str,
    vocabulary: Callable[[DataSpec], Vocabulary],
    parts: Callable[[DataSpec], tuple[list[seq.Sentence], ...]],
    spec: DataSpec,
    batch_size: int,
    seed: int,
    device: torch.device,
) -> LanguageModelTask:
    train, val, test = parts(spec)
    _check_batch(batch_size, len(train), name)
    return LanguageModelTask(
        train, val, test, vocab=vocabulary(spec), batch_size=batch_size, seed=seed, device=torch.device(device)
    )


def _generated_parts(
    corpus: Callable[[int, int], list[seq.Sentence]], spec: DataSpec
) -> tuple[list[seq.Sentence], ...]:
    """Train, validation and test sentences of a seeded grammar (`corpus(n, seed)`)."""
    n, m, base = spec.synthetic_size, spec.validation_size, 1000 * spec.split_seed
    return corpus(n, base + 1), corpus(m, base + 2), corpus(m, base + 3)


def _text_parts(spec: DataSpec) -> tuple[list[seq.Sentence], ...]:
    corpus = _text_corpus(spec)
    return corpus["train"], corpus["val"], corpus["test"]


def _listops(spec: DataSpec, batch_size: int, seed: int, device: torch.device) -> SequenceClassificationTask:
    n, m, base = spec.synthetic_size, spec.validation_size, 1000 * spec.split_seed
    _check_batch(batch_size, n, "listops")
    train, val, test = ([(s, v) for s, v in seq.listops(k, base + i)] for i, k in enumerate((n, m, m), 1))
    return SequenceClassificationTask(
        train,
        val,
        test,
        labels=[str(d) for d in range(10)],
        vocab=_listops_vocabulary(spec),
        batch_size=batch_size,
        seed=seed,
        device=torch.device(device),
    )


def _logical_inference(spec: DataSpec, batch_size: int, seed: int, device: torch.device) -> SequenceClassificationTask:
    n, m, base = spec.synthetic_size, spec.validation_size, 1000 * spec.split_seed
    _check_batch(batch_size, n, "logical_inference")

    def as_tuples(examples: list[seq.PairExample]) -> list[tuple[Any, ...]]:
        return [(ex.left, ex.right, ex.label) for ex in examples]

    train, val, test = (
        as_tuples(seq.logical_inference(k, base + i, LOGIC_TRAIN_OPS)) for i, k in enumerate((n, m, m), 1)
    )
    by_ops = {
        k: as_tuples(seq.logical_inference(max(m // LOGIC_TEST_OPS, 50), base + 10 + k, LOGIC_TEST_OPS, exact_ops=k))
        for k in range(1, LOGIC_TEST_OPS + 1)
    }
    return SequenceClassificationTask(
        train,
        val,
        test,
        labels=list(seq.RELATIONS),
        vocab=_logic_vocabulary(spec),
        batch_size=batch_size,
        seed=seed,
        device=torch.device(device),
        test_by_length=by_ops,
        trained_max_length=LOGIC_TRAIN_OPS,
    )


def _image_dataset(name: str) -> Dataset:
    return Dataset(
        "image", lambda spec: (adapted_shape(SOURCES[name].input_shape, spec), 10, {}), partial(_vision, name)
    )


def _synthetic_dataset(name: str, shape: tuple[int, int, int]) -> Dataset:
    return Dataset("image", lambda spec: (adapted_shape(shape, spec), 10, {}), partial(_synthetic, name, shape))


def _language_signature(vocabulary: Callable[[DataSpec], Vocabulary]) -> Callable[[DataSpec], Signature]:
    """A language model's signature: it reads and predicts tokens of its vocabulary (built once)."""

    def signature(spec: DataSpec) -> Signature:
        size = len(vocabulary(spec))
        return (size,), size, {}

    return signature


DATASETS: dict[str, Dataset] = {
    **{name: _image_dataset(name) for name in SOURCES},
    "synthetic": _synthetic_dataset("synthetic", (1, 28, 28)),
    "synthetic_cifar": _synthetic_dataset("synthetic_cifar", (3, 32, 32)),
    "pcfg": Dataset(
        "text",
        _language_signature(_pcfg_vocabulary),
        partial(_language_model, "pcfg", _pcfg_vocabulary, partial(_generated_parts, seq.pcfg_corpus)),
        seq.pcfg_corpus,
    ),
    "english_pcfg": Dataset(
        "text",
        _language_signature(_english_vocabulary),
        partial(_language_model, "english_pcfg", _english_vocabulary, partial(_generated_parts, seq.english_corpus)),
        seq.english_corpus,
    ),
    "logical_inference": Dataset(
        "sequence",
        lambda spec: ((len(_logic_vocabulary(spec)),), len(seq.RELATIONS), {"pair": True}),
        _logical_inference,
        lambda n, seed: [ex.left for ex in seq.logical_inference(n, seed, LOGIC_TRAIN_OPS)],
    ),
    "listops": Dataset(
        "sequence",
        lambda spec: ((len(_listops_vocabulary(spec)),), 10, {}),
        _listops,
        lambda n, seed: [s for s, _ in seq.listops(n, seed)],
    ),
    "text": Dataset(
        "text", _language_signature(_text_vocabulary), partial(_language_model, "text", _text_vocabulary, _text_parts)
    ),
}


def load_task(name: str, spec: DataSpec, *, batch_size: int, seed: int, device: torch.device | str = "cpu") -> Task:
    """Dataset `name` as an in-memory task on `device` (see `DATASETS`; a user's dataset is
    resolved by `engine.registry.dataset_info`)."""
    if name not in DATASETS:
        raise SpecError(f"dataset: unknown '{name}'; choose one of {', '.join(DATASETS)}")
    return DATASETS[name].load(spec, batch_size, seed, torch.device(device))


class SharedTasks:
    """Loads each dataset once per (data spec, batch size, device) and hands every seed its own
    batch order over the same tensors (`Task.reordered`): lineages packed on one device hold one
    copy of the data, and a packed trainer sees that their tasks share it."""

    def __init__(self, keep: int | None = None) -> None:
        self.keep = keep  # at most this many datasets held, the least recently used let go first
        self._loaded: dict[tuple[str, str, int, str], Task] = {}

    def load(
        self, dataset: Dataset, name: str, spec: DataSpec, batch_size: int, seed: int, device: torch.device
    ) -> Task:
        key = (name, _hashable(spec), batch_size, str(device))
        task = self._loaded.pop(key, None) or dataset.load(spec, batch_size, seed, device)
        self._loaded[key] = task  # now the most recently used
        while self.keep is not None and len(self._loaded) > self.keep:
            del self._loaded[next(iter(self._loaded))]
        return task.reordered(seed)


def _hashable(spec: DataSpec) -> str:
    """A data spec as a key (its `args` mapping is not hashable)."""
    import json

    return json.dumps(dataclasses.asdict(spec), sort_keys=True, default=str)
