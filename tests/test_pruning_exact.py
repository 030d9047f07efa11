"""keep_top, planned_counts, remaining and friends on tensors small enough to count by hand."""

import pytest
import torch
from torch import nn

from study.engine.models.slots import Slot
from study.engine.pruning import (
    apply_mask,
    dense_mask,
    keep_top,
    magnitude_scores,
    next_keep,
    planned_counts,
    random_scores,
    remaining,
)

T, F = True, False


def b(rows):
    return torch.tensor(rows, dtype=torch.bool)


def tiny():
    """Three weights; the pruned entries (False) carry the highest raw scores of their tensors."""
    scores = {
        "a": torch.tensor([[0.5, -3.0, 2.0], [1.0, 4.0, 0.25]]),
        "b": torch.tensor([3.0, 0.1]),
        "d": torch.tensor([0.75, 5.0, 1.5]),
        "e": torch.tensor([9.0, 9.0]),
    }
    mask = {"a": b([[T, T, T], [T, F, T]]), "b": b([T, T]), "d": b([T, T, F]), "e": b([T, F])}
    slots = {n: Slot(n, None, "hidden") for n in ("a", "b", "d")}
    return scores, mask, slots


def test_global_group_keeps_the_top_scores_across_three_weights():
    scores, mask, slots = tiny()
    before = {n: m.clone() for n, m in mask.items()}
    # alive: a 0.5 -3 2 1 0.25 | b 3 0.1 | d 0.75 5 (4 and 1.5 are pruned); top 4: 5, 3, 2, 1
    new = keep_top(scores, mask, slots, {"g": ["a", "b", "d"]}, {"g": 4})
    assert torch.equal(new["a"], b([[F, F, T], [T, F, F]]))
    assert torch.equal(new["b"], b([T, F]))
    assert torch.equal(new["d"], b([F, T, F]))
    assert torch.equal(new["e"], b([T, F])), "weights outside every group are left as they are"
    assert all(torch.equal(mask[n], before[n]) for n in mask), "the input mask is not modified"


def test_layerwise_groups_each_keep_their_own_count():
    scores, mask, slots = tiny()
    new = keep_top(scores, mask, slots, {"a": ["a"], "b": ["b"], "d": ["d"]}, {"a": 2, "b": 1, "d": 0})
    assert torch.equal(new["a"], b([[F, F, T], [T, F, F]]))  # 2 and 1 (4 is pruned)
    assert torch.equal(new["b"], b([T, F]))
    assert torch.equal(new["d"], b([F, F, F]))


def test_keeping_every_survivor_is_allowed_and_one_more_is_refused():
    scores, mask, slots = tiny()
    new = keep_top(scores, mask, slots, {"g": ["a", "b", "d"]}, {"g": 9})  # 5 + 2 + 2 alive
    assert all(torch.equal(new[n], mask[n]) for n in ("a", "b", "d")), "pruned weights stay pruned"
    with pytest.raises(ValueError, match="cannot keep 10 weights of group g: only 9 survive"):
        keep_top(scores, mask, slots, {"g": ["a", "b", "d"]}, {"g": 10})


def test_ties_are_broken_by_position():
    scores = {"w": torch.tensor([1.0, 2.0, 1.0, 1.0, 2.0, 1.0])}
    mask = {"w": torch.ones(6, dtype=torch.bool)}
    slots = {"w": Slot("w", None, "hidden")}
    new = keep_top(scores, mask, slots, {"w": ["w"]}, {"w": 4})
    assert new["w"].tolist() == [T, T, T, F, T, F]  # both 2s, then the first two 1s


def test_row_block_slots_prune_only_their_rows():
    w = torch.tensor([[4.0, 1.0], [3.0, 2.0], [9.0, 8.0], [7.0, 6.0]])
    mask = {"w": torch.ones(4, 2, dtype=torch.bool)}
    slots = {"w.top": Slot("w", slice(0, 2), "gates"), "w.bot": Slot("w", slice(2, 4), "master")}
    new = keep_top({"w": w}, mask, slots, {"w.top": ["w.top"]}, {"w.top": 2})
    assert new["w"].tolist() == [[T, F], [T, F], [T, T], [T, T]]
    new = keep_top({"w": w}, mask, slots, {"w.bot": ["w.bot"]}, {"w.bot": 1})
    assert new["w"].tolist() == [[T, T], [T, T], [T, F], [F, F]]


def test_next_keep_rounds_to_the_nearest_weight():
    assert next_keep(10, 0.2) == 8
    assert next_keep(7, 0.5) == 3  # 3.5 rounds to 4 pruned
    assert next_keep(5, 0.5) == 3  # 2.5 rounds to 2 pruned (half to even)
    assert next_keep(3, 0.0) == 3


def test_planned_counts_by_hand():
    sizes = {"x": 100, "y": 10, "z": 7}
    groups = {"g": ["x", "y"], "z": ["z"]}
    rates = {"g": 0.2, "z": 0.5}
    # g: 110 -> 110-22=88 -> 88-round(17.6)=70 -> 70-14=56;  z: 7 -> 7-4=3 -> 3-2=1 -> 1-round(0.5)=1
    assert planned_counts(sizes, groups, rates, 3) == [
        {"g": 110, "z": 7},
        {"g": 88, "z": 3},
        {"g": 70, "z": 1},
        {"g": 56, "z": 1},
    ]
    assert planned_counts(sizes, groups, rates, 0) == [{"g": 110, "z": 7}]


def test_remaining_overall_per_slot_and_per_kind():
    mask = {
        "a": b([[T, F, T], [T, F, T]]),  # 4 of 6
        "c": b([T, F]),  # 1 of 2
        "w": b([[T, T], [T, F], [F, F], [F, F]]),
    }  # rows 0-1: 3 of 4, rows 2-3: 0 of 4
    slots = {
        "a": Slot("a", None, "hidden"),
        "c": Slot("c", None, "hidden"),
        "w.top": Slot("w", slice(0, 2), "gates"),
        "w.bot": Slot("w", slice(2, 4), "master"),
    }
    overall, per_slot, per_kind = remaining(mask, slots)
    assert overall == pytest.approx(100.0 * 8 / 16)
    assert per_slot == pytest.approx({"a": 100.0 * 4 / 6, "c": 50.0, "w.top": 75.0, "w.bot": 0.0})
    assert per_kind == pytest.approx({"hidden": 100.0 * 5 / 8, "gates": 75.0, "master": 0.0})


def linear():
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]]))
        layer.bias.copy_(torch.tensor([0.5, -0.5]))
    return layer


def test_dense_mask_magnitude_scores_and_apply_mask():
    layer = linear()
    mask = dense_mask(layer, ["weight", "weight"])
    assert list(mask) == ["weight"] and mask["weight"].dtype == torch.bool and mask["weight"].shape == (2, 3)
    assert bool(mask["weight"].all())
    scores = magnitude_scores(layer, ["weight", "weight"])
    assert list(scores) == ["weight"]
    assert scores["weight"].tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    assert not scores["weight"].requires_grad
    apply_mask(layer, {"weight": b([[T, F, T], [F, T, F]])})
    assert layer.weight.tolist() == [[1.0, 0.0, 3.0], [0.0, 5.0, 0.0]]
    assert layer.bias.tolist() == [0.5, -0.5]


def test_random_scores_follow_the_generator():
    mask = {"a": b([[T, F], [T, T]]), "c": b([T, T, T])}
    scores = random_scores(mask, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    expected_a, expected_c = torch.rand((2, 2), generator=g), torch.rand((3,), generator=g)
    assert list(scores) == ["a", "c"]
    assert torch.equal(scores["a"], expected_a) and torch.equal(scores["c"], expected_c)


def test_random_scores_live_on_the_mask_device():
    # the meta device stands in for an accelerator: scores are drawn on the CPU generator, then moved
    mask = {"a": torch.ones(2, 3, dtype=torch.bool, device="meta")}
    scores = random_scores(mask, torch.Generator().manual_seed(0))
    assert scores["a"].device.type == "meta" and scores["a"].shape == (2, 3)


def test_ties_are_broken_by_position_in_a_group_large_enough_for_an_unstable_sort():
    # 12 ones then 12 twos: keep 16 = all twos, then the first four ones
    scores = {"w": torch.tensor([1.0] * 12 + [2.0] * 12)}
    mask = {"w": torch.ones(24, dtype=torch.bool)}
    new = keep_top(scores, mask, {"w": Slot("w", None, "hidden")}, {"w": ["w"]}, {"w": 16})
    assert new["w"].tolist() == [T] * 4 + [F] * 8 + [T] * 12
