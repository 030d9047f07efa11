"""Datasets by name; `load_task` turns a spec's dataset into an in-memory task on a device."""
from __future__ import annotations

import torch

from study.engine.data.classification import ClassificationTask
from study.engine.data.vision import SOURCES, load_raw, synthetic_raw
from study.engine.spec import DataSpec
from study.errors import SpecError

SYNTHETIC_SHAPES = {"synthetic": (1, 28, 28), "synthetic_cifar": (3, 32, 32)}
SEQUENCE_DATASETS = ("pcfg", "logical_inference", "listops", "text")
DATASETS = (*SOURCES, *SYNTHETIC_SHAPES, *SEQUENCE_DATASETS)
# the kind of data each dataset is, matched against a model's `inputs`
DATASET_INPUTS = {**{name: "image" for name in (*SOURCES, *SYNTHETIC_SHAPES)}, "pcfg": "text", "text": "text",
                  "logical_inference": "sequence", "listops": "sequence"}
LOGIC_TRAIN_OPS, LOGIC_TEST_OPS = 6, 12


def sequence_vocabulary(name: str, spec: DataSpec):
    from study.engine.data import sequences as seq
    from study.engine.data.sequence_tasks import Vocabulary

    if name == "pcfg":
        return Vocabulary([w for words in seq.LEXICON.values() for w in words] + ["that"])
    if name == "logical_inference":
        return Vocabulary(list(seq.VARIABLES) + ["and", "or", "not", "(", ")"])
    if name == "listops":
        return Vocabulary(list(seq.LISTOPS) + [str(d) for d in range(10)] + ["]"])
    if not spec.root:
        raise SpecError("dataset text needs data.root: a folder with train.txt, valid.txt and test.txt (PTB format)")
    return Vocabulary([t for s in seq.read_text_corpus(spec.root)["train"] for t in s.tokens])


def dataset_signature(name: str, spec: DataSpec) -> tuple[tuple[int, ...], int, dict]:
    """(input shape, number of classes, model keyword arguments) without loading the data."""
    if name in SEQUENCE_DATASETS:
        vocab = len(sequence_vocabulary(name, spec))
        if name == "logical_inference":
            from study.engine.data.sequences import RELATIONS
            return (vocab,), len(RELATIONS), {"pair": True}
        return (vocab,), (10 if name == "listops" else vocab), {}
    shape = SYNTHETIC_SHAPES[name] if name in SYNTHETIC_SHAPES else SOURCES[name].input_shape
    return shape, 10, {}


def load_sequence_task(name: str, spec: DataSpec, *, batch_size: int, seed: int, device):
    from study.engine.data import sequences as seq
    from study.engine.data.sequence_tasks import (
        LanguageModelTask,
        SequenceClassificationTask,
    )

    vocab = sequence_vocabulary(name, spec)
    n, m, base = spec.synthetic_size, spec.validation_size, 1000 * spec.split_seed
    if name in ("pcfg", "text"):
        if name == "pcfg":
            parts = (seq.pcfg_corpus(n, base + 1), seq.pcfg_corpus(m, base + 2), seq.pcfg_corpus(m, base + 3))
        else:
            corpus = seq.read_text_corpus(spec.root)
            parts = (corpus["train"], corpus["val"], corpus["test"])
        _check_batch(batch_size, len(parts[0]), name)
        return LanguageModelTask(*parts, vocab=vocab, batch_size=batch_size, seed=seed, device=torch.device(device))
    _check_batch(batch_size, n, name)
    if name == "listops":
        parts = [[(s, v) for s, v in seq.listops(k, base + i)] for i, k in enumerate((n, m, m), 1)]
        return SequenceClassificationTask(*parts, labels=[str(d) for d in range(10)], vocab=vocab,
                                          batch_size=batch_size, seed=seed, device=torch.device(device))
    as_tuples = lambda examples: [(ex.left, ex.right, ex.label) for ex in examples]  # noqa: E731
    parts = [as_tuples(seq.logical_inference(k, base + i, LOGIC_TRAIN_OPS)) for i, k in enumerate((n, m, m), 1)]
    by_ops = {k: as_tuples(seq.logical_inference(max(m // LOGIC_TEST_OPS, 50), base + 10 + k, LOGIC_TEST_OPS, exact_ops=k))
              for k in range(1, LOGIC_TEST_OPS + 1)}
    return SequenceClassificationTask(*parts, labels=list(seq.RELATIONS), vocab=vocab, batch_size=batch_size,
                                      seed=seed, device=torch.device(device), test_by_length=by_ops)


def _check_batch(batch_size: int, train_size: int, name: str) -> None:
    if batch_size > train_size:
        raise SpecError(f"train.batch_size {batch_size} is larger than {name}'s training split ({train_size} examples); "
                        f"lower train.batch_size or grow the training split")


def load_task(name: str, spec: DataSpec, *, batch_size: int, seed: int,
              device: torch.device | str = "cpu") -> ClassificationTask:
    """Load `name`, hold out `spec.validation_size` training examples (seeded by split_seed),
    normalise with the dataset's channel statistics and move everything to `device` once.
    Sequence datasets are generated (seeded by split_seed) or read, and batched by their task."""
    if name in SEQUENCE_DATASETS:
        return load_sequence_task(name, spec, batch_size=batch_size, seed=seed, device=device)
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
    _check_batch(batch_size, n - spec.validation_size, name)
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
