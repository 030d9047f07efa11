"""Branches off an IMP trunk (issue 13, parts 1 and 5): each branch trains once per pruning round
from the trunk's state, its rows are tagged and paired, and the paired difference's band is over
per-seed differences."""

import pandas as pd
import pytest
import torch
from conftest import synthetic_spec_dict

from study.engine.lineage import LineageHooks, RunContext, run_lineage
from study.engine.spec import lineage_spec_from_dict
from study.errors import SpecError

ONE_THREAD = RunContext(threads=1)


def spec(**kw):
    return lineage_spec_from_dict(synthetic_spec_dict(**kw))


def capture_branches(s):
    """Run a lineage; keep the rows of every lineage and what each branch started from."""
    rows, resets, branch_resets = [], {}, {}

    def on_reset(round_, model, mask):
        resets.setdefault(round_, ({n: m.clone() for n, m in mask.items()}, _weights(model)))

    def on_branch_reset(round_, branch, model, mask):
        branch_resets[round_, branch] = ({n: m.clone() for n, m in mask.items()}, _weights(model))

    hooks = LineageHooks(on_round=rows.append, on_reset=on_reset, on_branch_reset=on_branch_reset)
    run_lineage(s, hooks=hooks, context=ONE_THREAD)
    return rows, resets, branch_resets


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.numerics
def test_random_reinit_branch_reproduces_the_random_reinit_strategy_without_its_imp_track():
    """The branch is the LTH control computed the cheap way: the same rows, to the last digit, as
    an independent random_reinit lineage (which trains its own IMP track for the masks)."""
    rows, _, _ = capture_branches(spec(branches=["random_reinit"]))
    branch = [r for r in rows if r.branch == "random_reinit"]
    independent = run_lineage(spec(strategy="random_reinit"), context=ONE_THREAD)
    assert [r.round for r in branch] == [1, 2, 3]
    for mine, theirs in zip(branch, independent[1:], strict=True):
        assert (mine.val_acc, mine.test_acc, mine.early_stop_iteration, mine.remaining_pct) == (
            theirs.val_acc,
            theirs.test_acc,
            theirs.early_stop_iteration,
            theirs.remaining_pct,
        )
    trunk = [r for r in rows if r.branch is None]
    assert all(r.trunk_lineage_id == trunk[0].lineage_id for r in branch)
    assert {r.strategy for r in branch} == {"imp.random_reinit"}
    assert {r.lineage_id for r in branch} == {f"{trunk[0].lineage_id}.random_reinit"}
    # the saving: per pruning round one training instead of two (its own retraining + its IMP track)
    assert sum(r.iterations for r in branch) < sum(r.iterations for r in independent)


def test_branch_masks_and_restart_weights_by_hand():
    from study.engine.plan import build_lineage_model
    from study.engine.seeding import derive_seed

    s = spec(branches=["random_reinit", "random_prune", "inverted"], rewind_iteration=20)
    rows, resets, branch_resets = capture_branches(s)
    names = ["fc1.weight", "fc2.weight", "fc3.weight"]
    for round_ in (1, 2, 3):
        trunk_mask, trunk_weights = resets[round_]
        # random_reinit: the trunk's mask on a fresh model seeded by (seed, 'reinit', round)
        mask, weights = branch_resets[round_, "random_reinit"]
        fresh = build_lineage_model(s, (1, 28, 28), 10, derive_seed(s.seed, "reinit", round_), {}).state_dict()
        for n in names:
            assert torch.equal(mask[n], trunk_mask[n])
            assert torch.equal(weights[n], fresh[n] * trunk_mask[n])
        # random_prune: per-layer counts of the trunk's mask, other places, the trunk's θ_k values
        mask, weights = branch_resets[round_, "random_prune"]
        for n in names:
            assert int(mask[n].sum()) == int(trunk_mask[n].sum())
            if int(trunk_mask[n].sum()) < trunk_mask[n].numel():
                assert not torch.equal(mask[n], trunk_mask[n])
            kept = mask[n] & trunk_mask[n]
            assert torch.equal(weights[n][kept], trunk_weights[n][kept]), "same restart weights where both keep"
    # inverted at round 1: the trunk keeps the largest |w| of the dense trained weights, the
    # branch the smallest, per layer (layerwise scope): computed here with topk
    dense = run_lineage(spec(rounds=0, rewind_iteration=20), context=ONE_THREAD)
    assert dense[0].test_acc == rows[0].test_acc  # the same dense round: its trained weights are the trunk's
    trained = _dense_trained(s)
    mask, _ = branch_resets[1, "inverted"]
    for n in names:
        k = int(resets[1][0][n].sum())
        smallest = torch.topk(trained[n].abs().flatten(), k, largest=False).indices
        expected = torch.zeros(trained[n].numel(), dtype=torch.bool)
        expected[smallest] = True
        assert torch.equal(mask[n].flatten(), expected), n


def _dense_trained(s):
    """The dense round's trained weights, from a separate one-round run of the same spec."""
    from study.engine.lineage import Lineage

    lineage = Lineage(s.replace(rounds=0, branches=()), context=ONE_THREAD)
    next(lineage)
    return lineage.state.trained


def test_inverted_branch_of_a_pruning_at_init_trunk_keeps_the_lowest_scores():
    from study.engine.pruning_at_init import snip_scores

    s = spec(strategy="snip", rounds=1, branches=["inverted", "random_prune", "random_reinit"])
    rows, resets, branch_resets = capture_branches(s)
    theta0 = resets[0][1]
    inverted, start = branch_resets[1, "inverted"]
    from study.engine.lineage import Lineage

    scratch = Lineage(s, context=ONE_THREAD)
    scratch.model.load_state_dict(theta0)
    scores = snip_scores(scratch.model, scratch.task, scratch.plan.params)
    for n in ("fc1.weight", "fc2.weight", "fc3.weight"):
        k = int(inverted[n].sum())
        assert k == int(resets[1][0][n].sum())
        assert scores[n][inverted[n]].max() <= scores[n][~inverted[n]].min(), "the lowest scores are kept"
        assert torch.equal(start[n], theta0[n] * inverted[n]), "from θ0, like the trunk"
    assert {r.strategy for r in rows} == {"snip", "snip.inverted", "snip.random_prune", "snip.random_reinit"}


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"branches": ["random_reinitt"]}, "did you mean 'random_reinit'"),
        ({"branches": ["random_prune", "random_prune"]}, "lists a branch twice"),
        ({"branches": ["inverted"], "strategy": "random_prune"}, "scores no weights"),
        ({"branches": ["random_reinit"], "rounds": 0}, "rounds is 0"),
    ],
)
def test_impossible_branches_are_one_line_errors(kw, message):
    with pytest.raises(SpecError, match=message) as e:
        spec(**kw)
    assert "\n" not in str(e.value)


def test_branches_are_part_of_the_identity_and_a_spec_without_keeps_its_id():
    assert spec().lineage_id() == spec(branches=[]).lineage_id()
    assert spec().lineage_id() != spec(branches=["random_reinit"]).lineage_id()


def test_a_branch_round_that_diverges_has_no_row_and_the_trunk_and_other_rounds_go_on(tmp_path, monkeypatch):
    from study.engine.lineage import Lineage
    from study.lake.reader import excluded_lineages, read_lineages, read_rounds
    from study.lake.recorder import run_to_lake

    real = Lineage._fresh_init

    def nan_in_round_2(self, round_):  # only the random_reinit branch draws a fresh init
        weights = real(self, round_)
        return {k: v * float("nan") if round_ == 2 and v.is_floating_point() else v for k, v in weights.items()}

    monkeypatch.setattr(Lineage, "_fresh_init", nan_in_round_2)
    s = spec(branches=["random_reinit", "random_prune"])
    trunk = run_to_lake(s, tmp_path, study="b", context=ONE_THREAD)
    assert [r.round for r in trunk] == [0, 1, 2, 3]
    lineages = {r["strategy"]: r for r in read_lineages(tmp_path, "b").table.to_pylist()}
    assert {k: v["status"] for k, v in lineages.items()} == {
        "imp": "finished",
        "imp.random_prune": "finished",
        "imp.random_reinit": "finished",
    }
    assert lineages["imp.random_reinit"]["error"].startswith("round 2 diverged: training diverged")
    assert lineages["imp.random_prune"]["error"] is None
    rounds = read_rounds(tmp_path, "b").table.to_pylist()
    got = sorted((str(r["strategy"]), r["round"]) for r in rounds)
    assert got == sorted(
        [("imp", r) for r in range(4)]
        + [("imp.random_prune", r) for r in (1, 2, 3)]
        + [("imp.random_reinit", 1), ("imp.random_reinit", 3)]
    ), "its round 3 trains off the trunk's round 3 as if nothing happened"
    assert excluded_lineages(list(lineages.values())) == set(), "the healthy rounds count"


def test_branches_are_a_set_and_random_prune_needs_a_trunk_that_rewinds():
    assert (
        spec(branches=["random_prune", "random_reinit"]).lineage_id()
        == spec(branches=["random_reinit", "random_prune"]).lineage_id()
    )
    for strategy in ("lr_rewind", "finetune"):
        with pytest.raises(SpecError, match="restarts from trained weights, which are 0 there"):
            spec(strategy=strategy, branches=["random_prune"])
    spec(strategy="lr_rewind", branches=["random_reinit", "inverted"])  # those keep to the trunk's survivors


@pytest.mark.numerics
def test_branches_resume_exactly_and_the_lake_holds_one_row_each(tmp_path):
    import itertools

    from study.lake.reader import read_lineages, read_rounds
    from study.lake.recorder import LakeLineage

    s = spec(branches=["random_reinit"])
    first = LakeLineage(s, tmp_path, study="r", context=ONE_THREAD)
    list(itertools.islice(first, 2))  # rounds 0 and 1, then the process "dies"
    again = LakeLineage(s, tmp_path, study="r", context=ONE_THREAD)
    assert [r.round for r in again.previous] == [0, 1]
    assert [r.round for r in again.lineage.state.branch_results] == [1]
    list(again)
    rows = pd.DataFrame(read_rounds(tmp_path, "r").table.to_pylist())
    raw = pd.concat(
        [pd.read_parquet(p) for p in sorted(tmp_path.glob("rounds/**/*.parquet"))], ignore_index=True
    )  # the files themselves: no de-duplicating reader between the test and the lake
    assert sorted(zip(raw["strategy"].astype(str), raw["round"], strict=True)) == sorted(
        [("imp", r) for r in range(4)] + [("imp.random_reinit", r) for r in (1, 2, 3)]
    )
    uninterrupted = run_lineage(spec(strategy="random_reinit"), context=ONE_THREAD)
    resumed = rows[rows["strategy"] == "imp.random_reinit"].sort_values("round")
    assert list(resumed["test_acc"]) == [r.test_acc for r in uninterrupted[1:]]
    status = {r["strategy"]: (r["status"], r["rounds_done"]) for r in read_lineages(tmp_path, "r").table.to_pylist()}
    assert status == {"imp": ("finished", 4), "imp.random_reinit": ("finished", 4)}


def test_paired_difference_band_is_over_per_seed_differences():
    """Hand-made rows: per seed the trunk beats its branch by 0.02, 0.04, 0.06 while the seeds
    themselves vary a lot; the paired band is mean 0.04 ± t(2)·sd/√3, and a branch row without
    its trunk row pairs with nothing."""
    from study.analysis.paired import paired_differences

    rows = []
    for seed, (trunk_acc, gap) in enumerate([(0.70, 0.02), (0.90, 0.04), (0.80, 0.06)]):
        trial = f"t-s{seed}"
        rows.append(_row(trial, "lin-a", None, None, "imp", 1, trunk_acc, 80.0))
        rows.append(_row(trial, "lin-a.rr", "random_reinit", "lin-a", "imp.random_reinit", 1, trunk_acc - gap, 80.0))
    rows.append(_row("t-s9", "lin-z.rr", "random_reinit", "lin-z", "imp.random_reinit", 1, 0.0, 80.0))  # orphan
    out = paired_differences(pd.DataFrame(rows), by=("strategy",))
    assert len(out) == 1
    got = out.iloc[0]
    half = 4.303 * 0.02 / 3**0.5  # sd of (0.02, 0.04, 0.06) is 0.02
    assert got["pair"] == "imp − imp.random_reinit" and got["n"] == 3 and got["round"] == 1
    assert got["mean"] == pytest.approx(0.04)
    assert (got["lo"], got["hi"]) == (pytest.approx(0.04 - half), pytest.approx(0.04 + half))
    assert got["remaining_pct"] == 80.0


def _row(trial, lineage, branch, trunk, strategy, round_, acc, remaining):
    return {
        "study": "s",
        "trial_id": trial,
        "lineage_id": lineage,
        "branch": branch,
        "trunk_lineage_id": trunk,
        "strategy": strategy,
        "round": round_,
        "test_acc": acc,
        "remaining_pct": remaining,
    }


def test_a_trial_is_all_finished_by_its_seeds_trunks_whatever_its_branches():
    from study.lake.schema import LineageRow
    from study.search.lineage_tasks import all_finished

    def row(seed, status, branch=None):
        lineage = "lin-a" if branch is None else f"lin-a.{branch}"
        return LineageRow("s", "imp", f"t-s{seed}", lineage, "h", "m", "d", seed, status=status, branch=branch)

    trunks = [row(0, "finished"), row(1, "finished")]
    assert all_finished([*trunks, row(0, "finished", "random_reinit"), row(1, "diverged", "random_reinit")], seeds=2)
    assert not all_finished([row(0, "finished"), row(0, "finished", "random_reinit")], seeds=2)
    assert not all_finished([row(0, "finished"), row(1, "running")], seeds=2)


def test_study_results_prints_the_paired_table_from_the_cli(tmp_path, capsys):
    """Two seeds of an IMP trunk with a random_reinit branch, run by `study lineage`; `study
    results` prints trunk − branch per round, recomputed here from the raw files."""
    import yaml
    from conftest import raw_rows

    from study.cli import main

    for seed in (0, 1):
        path = tmp_path / f"s{seed}.yaml"
        path.write_text(
            yaml.safe_dump({"lineage": synthetic_spec_dict(seed=seed, rounds=1, branches=["random_reinit"])})
        )
        assert main(["lineage", str(path), "--results", str(tmp_path / "lake"), "--quiet", "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["results", str(tmp_path / "lake")]) == 0
    out = capsys.readouterr().out
    acc = {(r["seed"], str(r["strategy"])): r["test_acc"] for r in raw_rows(tmp_path / "lake") if r["round"] == 1}
    diffs = [acc[(s, "imp")] - acc[(s, "imp.random_reinit")] for s in (0, 1)]
    line = next(line for line in out.splitlines() if "imp − imp.random_reinit" in line)
    assert f"{sum(diffs) / 2:+.4f}" in line and "80.0" in line


def test_configurations_are_named_by_the_settings_that_tell_them_apart():
    import json

    from study.analysis.configs import config_labels

    def cfg(**kw):
        return json.dumps({"strategy": "imp", "seed": 0, "train": {"lr": 0.001, "iterations": 60}, **kw})

    labels = config_labels(
        {"a": cfg(rewind_iteration=0), "b": cfg(rewind_iteration=300), "c": cfg(strategy="snip"), "d": None}
    )
    assert labels == {"a": "rewind_iteration=0", "b": "rewind_iteration=300", "c": "c", "d": "d"}
    lr = config_labels({"a": cfg(train={"lr": 0.001}), "b": cfg(train={"lr": 0.002})})
    assert lr == {"a": "train.lr=0.001", "b": "train.lr=0.002"}
