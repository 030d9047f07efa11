"""Unsupervised parsing from ON-LSTM distances (Shen et al. 2019) and its evaluation.

A tree is induced top-down as in Shen et al. (2019, section 6.2): the token of largest distance
x_i splits its span into ((x<i), (x_i, (x>i))). Scores are unlabelled sentence-level F1 over constituents, ignoring
single-word and whole-sentence spans, averaged over sentences that have any gold span left."""

from __future__ import annotations

import random
from collections.abc import Sequence

from study.engine.data.sequences import Tree, spans


def tree_from_distances(distances: Sequence[float], lo: int = 0, hi: int | None = None) -> Tree:
    """Shen et al.'s greedy top-down parse: take the token x_i of largest distance in the span
    (ties: the leftmost) and split into ((x<i), (x_i, (x>i))); a distance-free model (all
    distances equal) gets the right-branching tree."""
    hi = len(distances) if hi is None else hi
    if hi - lo == 1:
        return lo
    i = max(range(lo, hi), key=lambda j: (distances[j], -j))
    right = i if i + 1 == hi else (i, tree_from_distances(distances, i + 1, hi))
    return right if i == lo else (tree_from_distances(distances, lo, i), right)


def right_branching(n: int, lo: int = 0) -> Tree:
    return lo if n == 1 else (lo, right_branching(n - 1, lo + 1))


def left_branching(n: int) -> Tree:
    tree: Tree = 0
    for i in range(1, n):
        tree = (tree, i)
    return tree


def balanced(lo: int, hi: int) -> Tree:
    if hi - lo == 1:
        return lo
    mid = (lo + hi + 1) // 2
    return (balanced(lo, mid), balanced(mid, hi))


def random_tree(lo: int, hi: int, rng: random.Random) -> Tree:
    if hi - lo == 1:
        return lo
    cut = rng.randint(lo + 1, hi - 1)
    return (random_tree(lo, cut, rng), random_tree(cut, hi, rng))


def _scored(tree: Tree, n: int) -> set[tuple[int, int]]:
    return {(a, b) for a, b in spans(tree) if b > a and (a, b) != (0, n - 1)}


def sentence_f1(predicted: Tree, gold: Tree, n: int) -> float | None:
    gold_spans = _scored(gold, n)
    if not gold_spans:
        return None
    pred_spans = _scored(predicted, n)
    hit = len(gold_spans & pred_spans)
    if hit == 0:
        return 0.0
    precision, recall = hit / len(pred_spans), hit / len(gold_spans)
    return 2 * precision * recall / (precision + recall)


def corpus_f1(predicted: list[Tree], gold: list[Tree], lengths: list[int]) -> float:
    scores = [s for p, g, n in zip(predicted, gold, lengths, strict=True) if (s := sentence_f1(p, g, n)) is not None]
    return sum(scores) / len(scores) if scores else float("nan")


BASELINE_NAMES = ("right_branching", "left_branching", "balanced", "random")


def binarized(tree: Tree) -> Tree:
    """The tree with every node of more than two children binarized to the right: the best a
    binary parser can get on it (flat n-ary gold nodes cost any binary tree some precision)."""
    if isinstance(tree, int):
        return tree
    kids = [binarized(k) for k in tree]
    while len(kids) > 2:
        kids = [*kids[:-2], (kids[-2], kids[-1])]
    return tuple(kids)


def baseline_f1(gold: list[Tree], lengths: list[int], seed: int = 0) -> dict[str, float]:
    rng = random.Random(seed)
    scores = {
        "right_branching": corpus_f1([right_branching(n) for n in lengths], gold, lengths),
        "left_branching": corpus_f1([left_branching(n) for n in lengths], gold, lengths),
        "balanced": corpus_f1([balanced(0, n) for n in lengths], gold, lengths),
        "random": corpus_f1([random_tree(0, n, rng) for n in lengths], gold, lengths),
    }
    assert tuple(scores) == BASELINE_NAMES
    return scores
