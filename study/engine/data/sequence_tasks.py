"""Sequence tasks for the training loop: language modelling (PCFG corpus, PTB-format text) and
classification (ListOps; logical inference, a sentence-pair task).

Each task batches from a seeded per-epoch permutation addressed by the iteration, evaluates
(loss, accuracy) on 'val' or 'test', and adds per-round metrics: perplexity, unsupervised
parse F1 of every layer's master-forget distances against the gold trees, the trivial-tree
baselines on the same sentences, accuracy per operator count (logical inference), and a few
example parses for the app.
"""

from __future__ import annotations

import copy
import json
import math
from collections import Counter
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from study.engine.data.parsing import baseline_f1, corpus_f1, tree_from_distances
from study.engine.data.sequences import Sentence
from study.engine.task import EvalStats, Task, TaskMethods, evaluate_batches

PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"
PARSE_SENTENCES = 400
EXAMPLES = 5


class Vocabulary:
    def __init__(self, words: list[str]) -> None:
        self.words = [PAD, UNK, EOS] + sorted(set(words) - {PAD, UNK, EOS})
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def ids(self, tokens) -> list[int]:
        return [self.index.get(t, 1) for t in tokens]


def _pad(seqs: list[list[int]], value: int, device) -> Tensor:
    T = max(len(s) for s in seqs)
    out = torch.full((T, len(seqs)), value, dtype=torch.long)
    for j, s in enumerate(seqs):
        out[: len(s), j] = torch.tensor(s, dtype=torch.long)
    return out.to(device)


def _stack_steps(tensors: list[Tensor], value: int) -> Tensor:
    """(T_k, B) token tensors of K members as one (K, T, B), each padded after its end to the
    longest T with `value` (a recurrent model's state at a step never sees later steps, and a
    padded target is ignored)."""
    steps = max(t.shape[0] for t in tensors)
    return torch.stack([F.pad(t, (0, 0, 0, steps - t.shape[0]), value=value) for t in tensors])


def _sequence_loss(logits: Tensor, y: Tensor, reduction: str = "mean") -> Tensor:
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100, reduction=reduction)


@dataclass
class _Epochs:
    size: int
    batch_size: int
    seed: int
    _epoch: int = -1
    _perm: list[int] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return max(self.size // self.batch_size, 1)

    def indices(self, iteration: int) -> list[int]:
        epoch, step = divmod(iteration, self.steps)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._epoch = torch.randperm(self.size, generator=g).tolist(), epoch
        return self._perm[step * self.batch_size : (step + 1) * self.batch_size]


def _parse_metrics(model: nn.Module, sentences: list[Sentence], vocab: Vocabulary, device, prefix: list[int]) -> dict:
    """Parse F1 per layer (distances while reading each token) and the baselines, plus examples."""
    gold = [s for s in sentences if s.tree is not None][:PARSE_SENTENCES]
    if not gold:
        return {}
    was = model.training
    model.eval()
    per_layer: list[list] = []
    with torch.inference_mode():
        for lo in range(0, len(gold), 64):
            chunk = gold[lo : lo + 64]
            tokens = _pad([prefix + vocab.ids(s.tokens) for s in chunk], 0, device)
            distances = model.distances(tokens)  # type: ignore[operator]
            if not per_layer:
                per_layer = [[] for _ in distances]
            for layer, d in enumerate(distances):
                for j, s in enumerate(chunk):
                    per_layer[layer].append(d[len(prefix) : len(prefix) + len(s.tokens), j].tolist())
    model.train(was)
    lengths = [len(s.tokens) for s in gold]
    trees = [s.tree for s in gold]
    induced = [[tree_from_distances(d) for d in layer] for layer in per_layer]
    f1 = {f"layer{i + 1}": corpus_f1(t, trees, lengths) for i, t in enumerate(induced)}
    if all(max(max(d) for d in layer) == 0 for layer in per_layer):  # a plain LSTM has no distances
        f1 = {}
    examples = (
        [
            {
                "tokens": list(s.tokens),
                "gold": s.tree,
                "induced": {f"layer{i + 1}": induced[i][j] for i in range(len(induced))},
            }
            for j, s in enumerate(gold[:EXAMPLES])
        ]
        if f1
        else []
    )
    return {
        "parse_f1": f1 or None,
        "parse_baselines": baseline_f1(trees, lengths),
        "parse_examples_json": json.dumps(examples) if examples else None,
    }


@dataclass
class LanguageModelTask(TaskMethods):
    """Next-token prediction over sentences (each starts from <eos>, ends by predicting <eos>)."""

    train_set: list[Sentence]
    val_set: list[Sentence]
    test_set: list[Sentence]
    vocab: Vocabulary
    batch_size: int
    seed: int
    device: torch.device
    eval_chunk: int = 128

    def __post_init__(self) -> None:
        self._epochs = _Epochs(len(self.train_set), self.batch_size, self.seed)
        self._ids = {
            name: [self.vocab.ids(s.tokens) for s in data]
            for name, data in (("train", self.train_set), ("val", self.val_set), ("test", self.test_set))
        }

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (len(self.vocab),)

    @property
    def num_classes(self) -> int:
        return len(self.vocab)

    model_kwargs: dict = field(default_factory=dict)

    def _tensors(self, seqs: list[list[int]]) -> tuple[Tensor, Tensor]:
        eos = self.vocab.index[EOS]
        return _pad([[eos] + s for s in seqs], 0, self.device), _pad([s + [eos] for s in seqs], -100, self.device)

    def batch(self, iteration: int) -> tuple[Tensor, Tensor]:
        return self._tensors([self._ids["train"][i] for i in self._epochs.indices(iteration)])

    def reordered(self, seed: int) -> LanguageModelTask:
        other = copy.copy(self)
        other.seed, other._epochs = seed, _Epochs(len(self.train_set), self.batch_size, seed)
        return other

    def data_key(self) -> Hashable:
        return (type(self), id(self.train_set), id(self.val_set), id(self.test_set), self.batch_size, self.eval_chunk)

    @property
    def fixed_batch_shape(self) -> bool:
        return False  # a batch is as long as its longest sentence

    def stacked_batch(self, members: Sequence[Task], iteration: int) -> tuple[Tensor, Tensor]:
        xs, ys = zip(*(m.batch(iteration) for m in members), strict=True)
        return _stack_steps(list(xs), 0), _stack_steps(list(ys), -100)

    def eval_batches(self, split: str, chunk: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        seqs, chunk = self._ids[split], chunk or self.eval_chunk
        for lo in range(0, len(seqs), chunk):
            yield self._tensors(seqs[lo : lo + chunk])

    def model_inputs(self, x: Tensor) -> tuple[Tensor]:
        return (x,)

    def output_loss(self, output: tuple[Tensor, Any], y: Tensor, temperature: float = 1.0) -> Tensor:
        return _sequence_loss(output[0] / temperature, y)

    def eval_stats(self, output: tuple[Tensor, Any], y: Tensor) -> EvalStats:
        logits, valid = output[0], y != -100
        return _sequence_loss(logits, y, "sum").double(), ((logits.argmax(-1) == y) & valid).sum(), valid.sum()

    def chance_accuracy(self) -> float:
        """Validation accuracy of always predicting the most frequent next token."""
        counts = Counter(t for s in self._ids["val"] for t in [*s, self.vocab.index[EOS]])
        return max(counts.values()) / sum(counts.values())

    def synflow_output(self, model: nn.Module) -> Tensor:
        return model(torch.full((8, 1), self.vocab.index[EOS], dtype=torch.long, device=self.device))[0]

    def grammar_perplexity(self) -> float | None:
        logprobs = [s.logprob for s in self.test_set]
        if any(p is None for p in logprobs):
            return None
        total = sum(p for p in logprobs if p is not None)
        return math.exp(-total / sum(len(s.tokens) + 1 for s in self.test_set))

    def round_metrics(self, model: nn.Module) -> dict:
        val_loss, _ = self.evaluate(model, "val")
        test_loss, _ = self.evaluate(model, "test")
        out: dict[str, Any] = {"val_perplexity": math.exp(val_loss), "test_perplexity": math.exp(test_loss)}
        out.update(_parse_metrics(model, self.test_set, self.vocab, self.device, [self.vocab.index[EOS]]))
        optimum = self.grammar_perplexity()
        if optimum is not None and out.get("parse_baselines") is not None:
            out["parse_baselines"] = {**out["parse_baselines"], "grammar_perplexity": optimum}
        return out


@dataclass
class SequenceClassificationTask(TaskMethods):
    """Label a sequence (ListOps) or a pair of sequences (logical inference)."""

    train_set: list[tuple]  # (Sentence, label) or (Sentence, Sentence, label)
    val_set: list[tuple]
    test_set: list[tuple]
    labels: list[str]
    vocab: Vocabulary
    batch_size: int
    seed: int
    device: torch.device
    test_by_length: dict[int, list[tuple]] = field(default_factory=dict)
    trained_max_length: int | None = None  # the longest length the training split holds
    eval_chunk: int = 256

    def __post_init__(self) -> None:
        self._epochs = _Epochs(len(self.train_set), self.batch_size, self.seed)
        self.pair = len(self.train_set[0]) == 3
        self._label = {label: i for i, label in enumerate(self.labels)}

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (len(self.vocab),)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def model_kwargs(self) -> dict:
        return {"pair": self.pair}

    def _tensors(self, examples: list[tuple]) -> tuple[tuple, Tensor]:
        x: list[Tensor] = []
        for part in range(2 if self.pair else 1):
            seqs = [self.vocab.ids(ex[part].tokens) for ex in examples]
            x += [_pad(seqs, 0, self.device), torch.tensor([len(s) for s in seqs], device=self.device)]
        y = torch.tensor([self._label[str(ex[-1])] for ex in examples], device=self.device)
        return tuple(x), y

    def batch(self, iteration: int) -> tuple[tuple, Tensor]:
        return self._tensors([self.train_set[i] for i in self._epochs.indices(iteration)])

    def reordered(self, seed: int) -> SequenceClassificationTask:
        other = copy.copy(self)
        other.seed, other._epochs = seed, _Epochs(len(self.train_set), self.batch_size, seed)
        return other

    def data_key(self) -> Hashable:
        return (type(self), id(self.train_set), id(self.val_set), id(self.test_set), self.batch_size, self.eval_chunk)

    @property
    def fixed_batch_shape(self) -> bool:
        return False  # a batch is as long as its longest sequence

    def stacked_batch(self, members: Sequence[Task], iteration: int) -> tuple[tuple, Tensor]:
        """(tokens, lengths) (twice for pairs) of every member, tokens padded to the longest."""
        xs, ys = zip(*(m.batch(iteration) for m in members), strict=True)
        parts = tuple(
            _stack_steps([x[i] for x in xs], 0) if i % 2 == 0 else torch.stack([x[i] for x in xs])
            for i in range(len(xs[0]))
        )
        return parts, torch.stack(list(ys))

    def _chunks(self, examples: list[tuple], chunk: int | None = None) -> Iterator[tuple[tuple, Tensor]]:
        chunk = chunk or self.eval_chunk
        for lo in range(0, len(examples), chunk):
            yield self._tensors(examples[lo : lo + chunk])

    def eval_batches(self, split: str, chunk: int | None = None) -> Iterator[tuple[tuple, Tensor]]:
        return self._chunks(self.val_set if split == "val" else self.test_set, chunk)

    def model_inputs(self, x: tuple) -> tuple:
        return x

    def output_loss(self, output: Tensor, y: Tensor, temperature: float = 1.0) -> Tensor:
        return F.cross_entropy(output / temperature, y)

    def eval_stats(self, output: Tensor, y: Tensor) -> EvalStats:
        loss = F.cross_entropy(output, y, reduction="sum").double()
        return loss, (output.argmax(-1) == y).sum(), y.new_tensor(len(y))

    def _score(self, model: nn.Module, examples: list[tuple]) -> tuple[float, float]:
        return evaluate_batches(self, model, self._chunks(examples))

    def chance_accuracy(self) -> float:
        """Validation accuracy of always answering the most frequent validation label."""
        counts = Counter(str(ex[-1]) for ex in self.val_set)
        return max(counts.values()) / len(self.val_set)

    def synflow_output(self, model: nn.Module) -> Tensor:
        tokens = torch.full((8, 1), 3, dtype=torch.long, device=self.device)
        lengths = torch.tensor([8], device=self.device)
        return model(tokens, lengths, tokens, lengths) if self.pair else model(tokens, lengths)

    def round_metrics(self, model: nn.Module) -> dict:
        out: dict = {}
        if self.test_by_length:
            out["accuracy_by_length"] = {
                str(k): self._score(model, v)[1] for k, v in sorted(self.test_by_length.items())
            }
            out["chance_by_length"] = {
                str(k): max(Counter(str(ex[-1]) for ex in v).values()) / len(v)
                for k, v in sorted(self.test_by_length.items())
            }
            out["trained_max_length"] = self.trained_max_length
        out.update(_parse_metrics(model, [ex[0] for ex in self.test_set], self.vocab, self.device, []))
        return out
