import math
import random

import pytest

from study.engine.data.parsing import (
    balanced,
    baseline_f1,
    left_branching,
    right_branching,
    sentence_f1,
    tree_from_distances,
)
from study.engine.data.sequences import (
    RELATIONS,
    formula_tokens,
    listops,
    logical_inference,
    pcfg_corpus,
    pcfg_sentence,
    read_text_corpus,
    relation,
    spans,
    truth_set,
)
from study.errors import SpecError


def test_pcfg_is_seeded_with_agreement_and_exact_probabilities():
    a, b = pcfg_corpus(200, seed=3), pcfg_corpus(200, seed=3)
    assert a == b and pcfg_corpus(5, seed=4) != a[:5]
    for s in a:
        assert spans(s.tree) >= {(i, i) for i in range(len(s.tokens))}
        assert (0, len(s.tokens) - 1) in spans(s.tree)
        assert s.logprob < 0
    # agreement across a relative clause: the main verb agrees with the head noun, not the embedded one
    s = next(s for s in a if "that" in s.tokens and s.tree[0] != s.tree[0][0] and not isinstance(s.tree[1], int))
    assert s is not None
    assert any("that" in s.tokens for s in a) and max(len(s.tokens) for s in a) > 8


def test_pcfg_probabilities_sum_to_one_over_short_sentences():
    """Enumerating derivations by sampling is not exact, but the empirical frequency of the most
    common sentence must match its exact probability."""
    rng = random.Random(0)
    draws = [pcfg_sentence(rng) for _ in range(40000)]
    counts = {}
    for s in draws:
        counts[s.tokens] = counts.get(s.tokens, 0) + 1
    top, n = max(counts.items(), key=lambda kv: kv[1])
    exact = math.exp(next(s.logprob for s in draws if s.tokens == top))
    assert abs(n / len(draws) - exact) < 4 * math.sqrt(exact / len(draws))


def test_logical_relations_from_truth_tables():
    a, b = "a", "b"
    assert relation(truth_set(a), truth_set(a)) == "="
    assert relation(truth_set(a), truth_set(("not", a))) == "^"
    assert relation(truth_set(("and", a, b)), truth_set(a)) == "<"
    assert relation(truth_set(a), truth_set(("and", a, b))) == ">"
    assert relation(truth_set(("and", a, b)), truth_set(("and", ("not", a), b))) == "|"
    assert relation(truth_set(("or", a, b)), truth_set(("or", ("not", a), b))) == "v"
    assert relation(truth_set(a), truth_set(b)) == "#"
    data = logical_inference(300, seed=1, max_ops=6)
    assert all(1 <= ex.ops <= 6 and ex.label in RELATIONS for ex in data)
    assert {ex.label for ex in data} >= {"#", "<", ">"}
    long = logical_inference(20, seed=2, max_ops=12, exact_ops=12)
    assert all(ex.ops == 12 for ex in long)
    tokens, tree = formula_tokens(("and", "a", ("not", "b")))
    assert tokens == ("(", "a", "and", "(", "not", "b", ")", ")")
    assert (3, 6) in spans(tree) and (0, 7) in spans(tree)


def test_listops_values():
    for sentence, value in listops(200, seed=0):
        assert 0 <= value <= 9 and sentence.tokens[0].startswith("[") and sentence.tokens[-1] == "]"
    ((s, v),) = listops(1, seed=5)
    assert (0, len(s.tokens) - 1) in spans(s.tree)


def test_text_corpus_reader(tmp_path):
    for name in ("train.txt", "valid.txt"):
        (tmp_path / name).write_text("the cat sat\nthe dog ran\n")
    with pytest.raises(SpecError, match="test.txt is missing"):
        read_text_corpus(tmp_path)
    (tmp_path / "test.txt").write_text("a bird flew\n")
    corpus = read_text_corpus(tmp_path)
    assert [s.tokens for s in corpus["train"]] == [("the", "cat", "sat"), ("the", "dog", "ran")]


def test_tree_induction_and_f1():
    assert tree_from_distances([0.0, 0.1, 0.9, 0.2]) == ((0, 1), (2, 3))
    gold = ((0, 1), (2, 3))
    assert sentence_f1(gold, gold, 4) == 1.0
    assert sentence_f1(right_branching(4), gold, 4) == 0.5  # shares (2, 3)
    assert sentence_f1(balanced(0, 4), gold, 4) == 1.0
    assert left_branching(3) == ((0, 1), 2)
    assert sentence_f1(right_branching(2), (0, 1), 2) is None, "no span left once the sentence span is ignored"
    scores = baseline_f1([gold, gold], [4, 4])
    assert scores["balanced"] == 1.0 and scores["right_branching"] == 0.5
    corpus = pcfg_corpus(300, seed=0)
    rb = baseline_f1([s.tree for s in corpus], [len(s.tokens) for s in corpus])
    assert 0 < rb["right_branching"] < 1 and 0 <= rb["random"] < rb["right_branching"] + 0.3
