"""Mask analytics (issue 13, part 3): masks stored packed in the lake, Jaccard overlap on masks
built by hand, between seeds, strategies and consecutive rounds."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import raw_rows, synthetic_spec_dict

from study.analysis.masks import chance_jaccard, jaccard, round_overlap, seed_overlap, series_overlap
from study.engine.lineage import LineageHooks, RunContext, run_lineage
from study.engine.spec import lineage_spec_from_dict

ONE_THREAD = RunContext(threads=1)


def test_jaccard_of_two_packed_masks_by_hand():
    # A keeps weights 0, 1, 4, 8 of nine; B keeps 0, 2, 4: A ∩ B = {0, 4}, A ∪ B = {0, 1, 2, 4, 8}
    a, b = bytes([0b11001000, 0b10000000]), bytes([0b10101000, 0b00000000])
    assert jaccard(a, b) == pytest.approx(2 / 5)
    assert jaccard(a, a) == 1.0 and jaccard(bytes(2), bytes(2)) == 1.0
    assert chance_jaccard(0.5, 0.5) == pytest.approx(1 / 3) and chance_jaccard(1.0, 0.2) == pytest.approx(0.2)


def _row(series, seed, round_, kept_positions, size=8, remaining=None, trial=None):
    mask = np.zeros(size, dtype=bool)
    mask[list(kept_positions)] = True
    return {
        "study": "s",
        "model": "lenet_300_100",
        "dataset": "fashion_mnist",
        "series": series,
        "seed": seed,
        "round": round_,
        "trial_id": trial or f"{series}-s{seed}",
        "lineage_id": f"lin-{series}",
        "remaining_pct": 100.0 * mask.sum() / size if remaining is None else remaining,
        "layer_size": {"fc": size},
        "layer_kept": {"fc": int(mask.sum())},
        "layer_bits": {"fc": np.packbits(mask).tobytes()},
    }


def test_seed_overlap_pairs_only_different_seeds():
    twice = pd.DataFrame([_row("imp", 0, 1, [0, 1, 2, 3]), _row("imp", 0, 1, [0, 1, 2, 3], trial="again")])
    assert seed_overlap(twice).empty, "a re-sampled trial's copy is not a replicate"


def test_seed_overlap_is_the_mean_over_seed_pairs_with_a_t_band():
    # three seeds keep 4 of 8 weights: {0,1,2,3}, {0,1,2,4}, {0,1,5,6}
    # pairs: (s0,s1) 3/5, (s0,s2) 2/6, (s1,s2) 2/6; chance for p = q = 1/2 is 1/3
    masks = pd.DataFrame(
        [_row("imp", 0, 1, [0, 1, 2, 3]), _row("imp", 1, 1, [0, 1, 2, 4]), _row("imp", 2, 1, [0, 1, 5, 6])]
    )
    (got,) = seed_overlap(masks).to_dict("records")
    values = [3 / 5, 1 / 3, 1 / 3]
    mean = sum(values) / 3
    sd = (sum((v - mean) ** 2 for v in values) / 2) ** 0.5
    assert got["mean"] == pytest.approx(mean) and got["n"] == 3 and got["layer"] == "fc"
    assert got["hi"] == pytest.approx(mean + 4.303 * sd / 3**0.5)
    assert got["chance"] == pytest.approx(1 / 3)


def test_series_overlap_pairs_seeds_at_equal_sparsity_only():
    masks = pd.DataFrame(
        [
            _row("imp", 0, 1, [0, 1, 2, 3]),
            _row("random", 0, 1, [2, 3, 4, 5]),  # ∩ {2,3}, ∪ {0..5}: 2/6
            _row("imp", 0, 2, [0, 1]),
            _row("random", 0, 2, [0, 1, 2]),  # 25% vs 37.5% kept: not the same sparsity, left out
        ]
    )
    (got,) = series_overlap(masks, "imp", "random").to_dict("records")
    assert got["round"] == 1 and got["mean"] == pytest.approx(1 / 3) and got["series"] == "imp ∩ random"
    # a one-shot strategy reaches 25% in its round 1: it pairs with IMP's round 2 at that sparsity
    oneshot = pd.DataFrame([*masks.to_dict("records"), _row("oneshot", 0, 1, [1, 7])])  # ∩ {1}, ∪ {0, 1, 7}
    (got,) = series_overlap(oneshot, "imp", "oneshot").to_dict("records")
    assert got["round"] == 2 and got["mean"] == pytest.approx(1 / 3)


def test_round_overlap_of_nested_masks_is_the_share_kept():
    masks = pd.DataFrame(
        [_row("imp", 0, 0, range(8)), _row("imp", 0, 1, [0, 1, 2, 3, 4, 5]), _row("imp", 0, 2, [0, 2])]
    ).assign(branch=None)
    got = round_overlap(masks).set_index("round")
    assert got.loc[1, "mean"] == pytest.approx(6 / 8) and got.loc[2, "mean"] == pytest.approx(2 / 6)
    assert (got["mean"] == got["chance"]).all(), "nested masks sit exactly on the nested baseline"
    assert 0 not in got.index
    moved = pd.DataFrame([_row("snip", 0, 1, [0, 1, 2, 3]), _row("snip", 0, 2, [3, 4])]).assign(branch=None)
    (row,) = round_overlap(moved).to_dict("records")  # ∩ {3}, ∪ {0..4}: 1/5, below the nested 2/4
    assert row["mean"] == pytest.approx(1 / 5) and row["chance"] == pytest.approx(1 / 2)
    branch = masks.assign(branch="random_prune", series="imp.random_prune")
    assert round_overlap(branch).empty, "a branch's rounds are independent draws"


def test_the_masks_a_lineage_reports_unpack_to_the_masks_it_trained_with():
    spec = lineage_spec_from_dict(synthetic_spec_dict(rounds=2, branches=["random_prune"]))
    masks, resets, branch_resets = [], {}, {}
    hooks = LineageHooks(
        on_mask=masks.append,
        on_reset=lambda r, model, mask: resets.setdefault(r, {n: m.clone() for n, m in mask.items()}),
        on_branch_reset=lambda r, b, model, mask: branch_resets.setdefault(r, {n: m.clone() for n, m in mask.items()}),
    )
    rows = run_lineage(spec, hooks=hooks, context=ONE_THREAD)
    assert [(m.round, m.branch) for m in masks] == [
        (0, None),
        (1, None),
        (1, "random_prune"),
        (2, None),
        (2, "random_prune"),
    ]
    for m in masks:
        trained_with = (branch_resets if m.branch else resets)[m.round]
        for name, mask in trained_with.items():
            bits = np.unpackbits(np.frombuffer(m.layer_bits[name], dtype=np.uint8))[: m.layer_size[name]]
            assert torch.equal(torch.from_numpy(bits.astype(bool)).view_as(mask), mask), (m.round, m.branch, name)
            assert m.layer_kept[name] == int(mask.sum())
    assert [m.remaining_pct for m in masks if m.branch is None] == [r.remaining_pct for r in rows]


def test_the_lake_holds_one_mask_row_per_lineage_round(tmp_path):
    from study.lake.recorder import run_to_lake

    spec = lineage_spec_from_dict(synthetic_spec_dict(rounds=2, branches=["random_reinit"]))
    run_to_lake(spec, tmp_path, study="m", context=ONE_THREAD)
    got = sorted((str(r["strategy"]), r["round"]) for r in raw_rows(tmp_path, "masks"))
    assert got == [("imp", 0), ("imp", 1), ("imp", 2), ("imp.random_reinit", 1), ("imp.random_reinit", 2)]
    sizes = {r["round"]: dict(r["layer_size"]) for r in raw_rows(tmp_path, "masks") if r["branch"] is None}
    assert sizes[0] == {"fc1.weight": 784 * 300, "fc2.weight": 300 * 100, "fc3.weight": 100 * 10}
