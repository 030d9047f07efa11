"""Instability analysis (issue 13, part 2): the linear path between two copies of a round's
network, its barrier checked by hand on a network whose answer is known, and the lineage and
lake plumbing around it."""

import math

import pytest
import torch
from conftest import synthetic_spec_dict
from torch import nn

from study.engine.instability import alphas, barrier, interpolate, linear_path
from study.engine.lineage import LineageHooks, RunContext, run_lineage
from study.engine.spec import lineage_spec_from_dict
from study.errors import SpecError

ONE_THREAD = RunContext(threads=1)


class TwoUnits(nn.Module):
    """x -> two ReLU units -> logits (f, 0.5 − f) with f = out · hidden."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(1, 2, bias=False)
        self.out = nn.Linear(2, 1, bias=False)

    def forward(self, x):
        f = self.out(torch.relu(self.hidden(x)))
        return torch.cat([f, 0.5 - f], dim=1)


def test_barrier_by_hand_on_two_permuted_copies_of_one_function():
    """Copy a computes f(x) = relu(x) − relu(−x) = x; copy b is the same function with its two
    hidden units swapped. On the line, both weights shrink by (1 − 2α), so f(1) = (1 − 2α)²: the
    one example (x = 1, label 0) is right iff f > 0.25, i.e. α < 0.25 or α > 0.75. With 11
    points the error is 1 at α = 0.3 ... 0.7 and 0 elsewhere: barrier 1. The loss is
    log(1 + exp(0.5 − 2f)): ends log(1 + e^−1.5), middle log(1 + e^0.5)."""
    model = TwoUnits()
    a = {"hidden.weight": torch.tensor([[1.0], [-1.0]]), "out.weight": torch.tensor([[1.0, -1.0]])}
    b = {"hidden.weight": torch.tensor([[-1.0], [1.0]]), "out.weight": torch.tensor([[-1.0, 1.0]])}
    x, y = torch.tensor([[1.0]]), torch.tensor([0])

    def evaluate(m, split):
        with torch.no_grad():
            out = m(x)
        return float(nn.functional.cross_entropy(out, y)), float((out.argmax(1) == y).float().mean())

    path = linear_path(model, a, b, 11, evaluate)
    assert [p.alpha for p in path] == pytest.approx([i / 10 for i in range(11)])
    errors = [p.error["val"] for p in path]
    assert errors == [0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0]
    assert barrier(errors) == 1.0
    losses = [p.loss["test"] for p in path]
    assert losses[5] == pytest.approx(math.log(1 + math.exp(0.5)))
    assert barrier(losses) == pytest.approx(math.log(1 + math.exp(0.5)) - math.log(1 + math.exp(-1.5)))
    assert torch.equal(model.hidden.weight, a["hidden.weight"]), "the model is left holding copy a"


def test_the_same_network_twice_has_no_barrier_and_interpolation_keeps_integer_buffers():
    a = {"w": torch.tensor([1.0, 2.0]), "steps": torch.tensor(7)}
    b = {"w": torch.tensor([3.0, 6.0]), "steps": torch.tensor(9)}
    mid = interpolate(a, b, 0.25)
    assert torch.equal(mid["w"], torch.tensor([1.5, 3.0])) and int(mid["steps"]) == 7
    assert barrier([0.2, 0.2, 0.2]) == 0.0 and barrier([0.1, 0.2, 0.3]) == pytest.approx(0.1)
    assert alphas(3) == [0.0, 0.5, 1.0]


def spec(**kw):
    return lineage_spec_from_dict(synthetic_spec_dict(**kw))


@pytest.mark.numerics
def test_a_lineage_measures_the_rounds_it_lists_from_its_own_copy_to_a_second_one():
    measured = []
    s = spec(rewind_iteration=20, instability={"rounds": [0, 2]})
    rows = run_lineage(s, context=ONE_THREAD, hooks=LineageHooks(on_instability=measured.append))
    assert [m.round for m in measured] == [0, 2]
    by_round = {r.round: r for r in rows}
    for m in measured:
        row = by_round[m.round]
        assert len(m.alphas) == 11 and m.alphas[0] == 0.0 and m.alphas[-1] == 1.0
        # α = 1 is a second copy: another data order gives other weights
        assert m.val_loss[-1] != m.val_loss[0]
        assert m.val_error_barrier == pytest.approx(max(m.val_error) - (m.val_error[0] + m.val_error[-1]) / 2)
        assert (row.val_error_barrier, row.test_error_barrier) == (m.val_error_barrier, m.test_error_barrier)
        assert m.remaining_pct == row.remaining_pct and m.rewind_iteration == 20 and m.error is None
    # round 2: α = 0 is the lineage's own trained network (its final accuracies); one copy from k on
    assert measured[1].val_error[0] == pytest.approx(1 - by_round[2].final_val_acc, abs=1e-12)
    assert measured[1].test_error[0] == pytest.approx(1 - by_round[2].final_test_acc, abs=1e-12)
    assert measured[1].iterations == 60 - 20
    # round 0 with k > 0: the lineage reached θ_k with a warm optimizer, so both copies restart from θ_k
    assert measured[0].iterations == 2 * (60 - 20)
    assert measured[0].val_error[0] != pytest.approx(1 - by_round[0].final_val_acc, abs=1e-12)
    assert by_round[1].val_error_barrier is None, "round 1 is not listed"
    plain = run_lineage(spec(rewind_iteration=20), context=ONE_THREAD)
    assert [r.test_acc for r in plain] == [r.test_acc for r in rows], "measuring never changes the lineage"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"instability": {"rounds": [0], "points": 5}}, "instability.points must be in"),
        ({"instability": {"rounds": [4]}}, "past the lineage's last round 3"),
        ({"instability": {"rounds": [1, 1]}}, "distinct rounds"),
        ({"instability": {"rounds": [2]}, "strategy": "oneshot"}, "past the lineage's last round 1"),
        ({"instability": {"round": [2]}}, "round"),
    ],
)
def test_impossible_instability_settings_are_one_line_errors(kw, message):
    with pytest.raises(SpecError, match=message) as e:
        spec(**kw)
    assert "\n" not in str(e.value)


def test_a_target_remaining_lineage_refuses_rounds_past_its_plan():
    from study.engine.plan import plan_lineage

    s = lineage_spec_from_dict(
        {**synthetic_spec_dict(), "rounds": None, "target_remaining": 60.0, "instability": {"rounds": [9]}}
    )
    with pytest.raises(SpecError, match="past the lineage's last round"):
        plan_lineage(s)


def test_the_lake_holds_one_instability_row_per_measured_round_and_fresh_supersedes_them(tmp_path):
    from conftest import raw_rows

    from study.lake.reader import read_table
    from study.lake.recorder import run_to_lake

    s = spec(rounds=1, instability={"rounds": [0, 1]})
    run_to_lake(s, tmp_path, study="i", context=ONE_THREAD)
    raw = raw_rows(tmp_path, "instability")
    assert sorted(r["round"] for r in raw) == [0, 1]
    assert {r["lineage_id"] for r in raw} == {s.lineage_id()} and all(r["written_at"] for r in raw)
    assert read_table(tmp_path, "instability", "i").table.num_rows == 2
    again = spec(rounds=1, instability={"rounds": [1]})
    run_to_lake(again, tmp_path, study="i", trial_id=s.lineage_id(), fresh=True)
    assert sorted(r["round"] for r in raw_rows(tmp_path, "instability")) == [1], "the old rows moved to _superseded"
    assert list(tmp_path.glob("_superseded/*/instability/study=i/strategy=imp/*.parquet"))
    assert [p.name for p in tmp_path.glob("instability/**/*.parquet")] == [f"{s.lineage_id()}.rounds.parquet"], "folded"


def test_a_searched_trial_reads_its_seeds_mean_barrier_for_the_stable_objective(tmp_path):
    """trial_points (what a study's outcome ranks on) carries each round's seed-mean validation
    barrier, only where every seed measured it; recomputed here from the raw files."""
    from conftest import raw_rows

    from study.analysis.objectives import sparsest_within
    from study.lake.recorder import run_to_lake
    from study.search.tune import trial_points

    for seed in (0, 1):
        s = spec(seed=seed, rounds=2, instability={"rounds": [0, 2] if seed == 0 else [0, 1, 2]})
        run_to_lake(s, tmp_path, study="t", trial_id=f"trial-s{seed}", optuna_trial_number=7, context=ONE_THREAD)
    (points,) = trial_points(str(tmp_path), "t").values()
    raw = {(r["seed"], r["round"]): r for r in raw_rows(tmp_path)}
    for round_, point in enumerate(points):
        barriers = [raw[(s, round_)]["val_error_barrier"] for s in (0, 1)]
        expected = None if None in barriers else sum(barriers) / 2
        assert point.val_error_barrier == (pytest.approx(expected) if expected is not None else None)
        assert point.val_acc == pytest.approx(sum(raw[(s, round_)]["val_acc"] for s in (0, 1)) / 2)
    assert points[1].val_error_barrier is None, "seed 0 did not measure round 1"
    generous = sparsest_within(points, 1.0, max_barrier=1.0)
    assert generous == points[2].remaining_pct, "round 1 is unmeasured: the sparsest stable round is 2"


@pytest.mark.numerics
def test_round_0_at_k_0_measures_from_the_lineage_own_copy():
    measured = []
    rows = run_lineage(
        spec(rounds=1, instability={"rounds": [0]}),
        context=ONE_THREAD,
        hooks=LineageHooks(on_instability=measured.append),
    )
    (m,) = measured
    assert m.iterations == 60 and m.val_error[0] == pytest.approx(1 - rows[0].final_val_acc, abs=1e-12)


def test_a_copy_that_diverges_leaves_the_round_unmeasured_and_the_lineage_goes_on(monkeypatch):
    import study.engine.train as train_mod
    from study.engine.failures import TrainingDiverged
    from study.engine.seeding import derive_seed

    real = train_mod.train
    second_order = derive_seed(0, "instability_order", 1) % 2**31  # the second copy's data order

    def second_copy_diverges(model, task, *args, **kw):
        if task.seed == second_order:
            raise TrainingDiverged("training diverged by iteration 20 (train loss nan); lower train.lr or add warm-up")
        return real(model, task, *args, **kw)

    monkeypatch.setattr(train_mod, "train", second_copy_diverges)
    measured = []
    s = spec(rounds=2, instability={"rounds": [1]})
    rows = run_lineage(s, context=ONE_THREAD, hooks=LineageHooks(on_instability=measured.append))
    assert [r.round for r in rows] == [0, 1, 2]
    assert rows[1].val_error_barrier is None and rows[1].test_error_barrier is None
    (m,) = measured
    assert m.error.startswith("diverged: training diverged") and m.alphas == [] and m.val_error_barrier is None
    monkeypatch.undo()
    plain = run_lineage(spec(rounds=2), context=ONE_THREAD)
    assert [r.test_acc for r in rows] == [r.test_acc for r in plain], "the lineage's own rows are untouched"


def test_instability_rounds_are_a_set():
    assert spec(instability={"rounds": [0, 2]}).lineage_id() == spec(instability={"rounds": [2, 0]}).lineage_id()
