"""Results you can trust: lineage identity, a reader that never merges or loses lineages,
failure semantics, and the reset rules and masking checked against independent computations."""

import dataclasses
import hashlib
import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import torch
import yaml
from conftest import raw_rows, run_capturing, synthetic_spec_dict

from study.engine.data import load_task
from study.engine.failures import LineageFailure
from study.engine.lineage import Lineage, RunContext
from study.engine.spec import LineageSpec, TrainSpec, lineage_spec_from_dict
from study.engine.train import CaptureWeights, TrainCallback, train
from study.lake.files import to_table, write_atomic, write_round
from study.lake.reader import read_rounds
from study.lake.schema import ROUNDS_SCHEMA


def cli(*args, check_rc=None):
    proc = subprocess.run(
        [sys.executable, "-m", "study.cli", *map(str, args)], capture_output=True, text=True, timeout=300
    )
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stderr[-2000:]
    return proc


def spec_file(tmp_path, name="spec.yaml", **kw):
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"lineage": synthetic_spec_dict(**kw)}))
    return path


# ---------------------------------------------------------------- identity


def test_config_hash_follows_openlths_rule_by_hand():
    """Only model, dataset, strategy, seed and the settings that differ from their defaults are
    hashed: transcribed here by hand, not from the code's own dict."""
    spec = lineage_spec_from_dict(
        synthetic_spec_dict(rounds=3, train={"lr": 1e-3, "iterations": 60, "eval_every": 20, "batch_size": 32})
    )
    expected = {
        "model": "lenet_300_100",
        "dataset": "synthetic",
        "strategy": "imp",
        "seed": 0,
        "rounds": 3,
        "train": {"lr": 1e-3, "iterations": 60, "eval_every": 20, "batch_size": 32},
        "data": {"validation_size": 300, "synthetic_size": 1200},
    }
    blob = json.dumps(expected, sort_keys=True, separators=(",", ":"))
    assert spec.config_hash() == hashlib.sha256(blob.encode()).hexdigest()[:16]
    # a setting given at its default value does not change the id; where the data lives does not either
    same = lineage_spec_from_dict(
        synthetic_spec_dict(
            rounds=3, chance_margin=0.02, rewind_iteration=0, data={"root": "/tmp"}, train={"optimizer": "adam"}
        )
    )
    assert same.lineage_id() == spec.lineage_id()
    assert lineage_spec_from_dict(synthetic_spec_dict(rounds=3, chance_margin=0.05)).lineage_id() != spec.lineage_id()
    # the model's own defaults (paper rates, init, model arguments) are no change either, and 0 is 0.0
    paper = lineage_spec_from_dict(
        synthetic_spec_dict(rounds=3, init="glorot_normal", prune={"rates": {"fc": 0.2, "output": 0.1}})
    )
    assert paper.lineage_id() == spec.lineage_id()
    lm = {"model": "onlstm_lm", "dataset": "pcfg", "rounds": 1, "train": {"lr": 1e-3, "iterations": 10}}
    ids = {
        lineage_spec_from_dict({**lm, "model_args": args}).lineage_id()
        for args in ({}, {"hidden": 400}, {"dropout": 0.3}, {"chunk_size": 10})
    }
    assert len(ids) == 1
    assert (
        lineage_spec_from_dict({**lm, "model_args": {"dropout": 0}}).lineage_id()
        == lineage_spec_from_dict({**lm, "model_args": {"dropout": 0.0}}).lineage_id()
        not in ids
    )
    assert lineage_spec_from_dict(synthetic_spec_dict(rounds=3, seed=1)).lineage_id() != spec.lineage_id()


def _with_new_train_field(spec: LineageSpec, **value) -> LineageSpec:
    """The same spec under a TrainSpec that has grown a new defaulted field (a later version)."""
    newer = dataclasses.make_dataclass(
        "TrainSpec", [("label_smoothing", float, dataclasses.field(default=0.0))], bases=(TrainSpec,), frozen=True
    )
    return dataclasses.replace(spec, train=newer(**dataclasses.asdict(spec.train), **value))


def test_a_new_defaulted_field_keeps_ids_and_resumes_old_checkpoints(tmp_path):
    old = lineage_spec_from_dict(synthetic_spec_dict(rounds=2))
    lineage = Lineage(old, workdir=tmp_path, context=RunContext(threads=1))
    first = next(lineage)  # round 0 done and checkpointed by the spec that lacks the field
    new = _with_new_train_field(old)
    assert new.config_hash() == old.config_hash() and new.lineage_id() == old.lineage_id()
    assert _with_new_train_field(old, label_smoothing=0.1).config_hash() != old.config_hash()
    resumed = Lineage(new, workdir=tmp_path, context=RunContext(threads=1))
    assert [r.round for r in resumed.previous] == [0] and resumed.previous[0] == first
    assert [r.round for r in resumed] == [1, 2]


def test_changed_config_under_a_trial_id_is_refused_before_anything_is_written(tmp_path):
    lake = tmp_path / "lake"
    spec = spec_file(tmp_path, rounds=2)
    cli("lineage", spec, "--results", lake, "--trial", "t2", "--quiet", "--threads", "1", check_rc=0)
    before = {p: p.read_bytes() for p in lake.rglob("*.parquet")}
    assert len(before) == 3  # the finished lineage's folded rounds and masks, and its lineage row
    for extra in (["--strategy", "random_prune"], ["--seed", "3"]):
        proc = cli("lineage", spec, "--results", lake, "--trial", "t2", "--quiet", *extra)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "already holds lineage" in proc.stderr and "--fresh" in proc.stderr
    changed = spec_file(tmp_path, "changed.yaml", rounds=2, train={"lr": 2e-3})
    proc = cli("lineage", changed, "--results", lake, "--trial", "t2", "--quiet")
    assert proc.returncode == 2 and "already holds lineage" in proc.stderr
    assert {p: p.read_bytes() for p in lake.rglob("*.parquet")} == before, "not a byte changed"
    assert [r["status"] for r in raw_rows(lake, "lineages")] == ["finished"]


def test_fresh_supersedes_the_old_lineage_as_a_whole(tmp_path):
    lake = tmp_path / "lake"
    cli(
        "lineage",
        spec_file(tmp_path, rounds=3),
        "--results",
        lake,
        "--trial",
        "t2",
        "--quiet",
        "--threads",
        "1",
        check_rc=0,
    )
    old_id = raw_rows(lake)[0]["lineage_id"]
    # a changed config with fewer rounds: no round of the old lineage may survive next to it
    new_spec = spec_file(tmp_path, "new.yaml", rounds=1, train={"lr": 2e-3})
    cli("lineage", new_spec, "--results", lake, "--trial", "t2", "--quiet", "--threads", "1", "--fresh", check_rc=0)
    rows = raw_rows(lake)
    assert len(rows) == 2 and {r["lineage_id"] for r in rows} == {
        lineage_spec_from_dict(synthetic_spec_dict(rounds=1, train={"lr": 2e-3})).lineage_id()
    }
    assert [r["round"] for r in read_rounds(lake).table.sort_by("round").to_pylist()] == [0, 1]
    lineages = raw_rows(lake, "lineages")
    assert len(lineages) == 1 and lineages[0]["status"] == "finished" and lineages[0]["rounds_done"] == 2
    kept = list((lake / "_superseded").rglob("*.parquet"))
    kept_rounds = [r for p in kept if "rounds" in p.parts for r in pq.read_table(p).to_pylist()]
    assert sorted(r["round"] for r in kept_rounds) == [0, 1, 2, 3] and len(kept) == 3  # rounds, masks, lineage
    assert {pq.read_table(p)["lineage_id"][0].as_py() for p in kept} == {old_id}, (
        "the old lineage is kept aside, not deleted"
    )
    # another strategy under the same trial id, superseding: only its rows remain visible
    cli(
        "lineage",
        new_spec,
        "--results",
        lake,
        "--trial",
        "t2",
        "--quiet",
        "--threads",
        "1",
        "--fresh",
        "--strategy",
        "random_prune",
        check_rc=0,
    )
    assert {r["strategy"] for r in raw_rows(lake)} == {"random_prune"}


def _round_row(lineage_id, strategy, acc, written_at):
    import datetime as dt

    return {
        "study": "s",
        "strategy": strategy,
        "trial_id": "t",
        "lineage_id": lineage_id,
        "config_hash": "h",
        "round": 0,
        "val_acc": acc,
        "test_acc": acc,
        "written_at": dt.datetime(2026, 1, 1, 0, 0, written_at, tzinfo=dt.UTC),
    }


def test_reader_never_merges_two_lineages_under_one_trial_id(tmp_path):
    write_round(tmp_path, _round_row("lin-a", "imp", 0.5, 1))
    write_round(tmp_path, _round_row("lin-b", "random_prune", 0.6, 2))
    assert len(raw_rows(tmp_path)) == 2
    got = read_rounds(tmp_path).table.to_pylist()
    assert sorted((r["lineage_id"], r["val_acc"]) for r in got) == [("lin-a", 0.5), ("lin-b", 0.6)]


def test_reader_keeps_only_the_newest_copy_of_a_rewritten_round(tmp_path):
    """Two files hold the same lineage-round (a compacted copy beside the per-round file, after a
    crash between the two steps of compact): readers return the newest, once."""
    write_round(tmp_path, _round_row("lin-a", "imp", 0.5, 1))
    write_atomic(
        to_table([_round_row("lin-a", "imp", 0.7, 9)], ROUNDS_SCHEMA),
        tmp_path / "rounds" / "study=s" / "strategy=imp" / "compact-x.parquet",
    )
    assert len(raw_rows(tmp_path)) == 2
    got = read_rounds(tmp_path).table.to_pylist()
    assert [r["val_acc"] for r in got] == [0.7]


# ---------------------------------------------------------------- failures


def test_a_chance_level_dense_round_makes_the_lineage_degenerate(tmp_path):
    lake = tmp_path / "lake"
    proc = cli(
        "lineage", spec_file(tmp_path, rounds=2, train={"lr": 1e6}), "--results", lake, "--quiet", "--threads", "1"
    )
    assert proc.returncode == 2 and proc.stderr.startswith("degenerate:") and proc.stderr.count("\n") == 1
    (lineage,) = raw_rows(lake, "lineages")
    assert lineage["status"] == "degenerate" and "does not beat chance" in lineage["error"]
    (dense,) = raw_rows(lake)
    assert dense["round"] == 0, "the dense round is kept, nothing after it runs"
    # chance is the majority-class rate of the validation split, computed here from the data
    spec = lineage_spec_from_dict(synthetic_spec_dict())
    task = load_task("synthetic", spec.data, batch_size=32, seed=0)
    majority = max(torch.bincount(task.val_y).tolist()) / len(task.val_y)
    assert dense["chance_val_acc"] == pytest.approx(majority)
    assert dense["val_acc"] < majority + 0.02


def test_a_diverging_lineage_is_recorded_diverged_and_keeps_its_rows(tmp_path):
    lake = tmp_path / "lake"
    good = spec_file(tmp_path, rounds=1)
    cli("lineage", good, "--results", lake, "--quiet", "--threads", "1", "--trial", "ok", check_rc=0)
    kept = {p: p.read_bytes() for p in lake.rglob("*.parquet")}
    bad = spec_file(tmp_path, "bad.yaml", rounds=1, train={"lr": 1e8, "optimizer": "sgd"})
    proc = cli("lineage", bad, "--results", lake, "--quiet", "--threads", "1", "--trial", "bad")
    assert proc.returncode == 2 and proc.stderr.startswith("diverged:")
    status = {r["trial_id"]: (r["status"], r["error"]) for r in raw_rows(lake, "lineages")}
    assert status["ok"][0] == "finished" and status["bad"][0] == "diverged" and "train loss nan" in status["bad"][1]
    assert all(p.read_bytes() == b for p, b in kept.items()), "earlier results untouched"


# ---------------------------------------------------------------- reset rules and masking


def _replay_dense(spec, theta0):
    """Round 0 trained again by hand from θ0 with the plain loop: the trained weights and θ_k."""
    from study.engine.models import build_model

    task = load_task(spec.dataset, spec.data, batch_size=spec.train.batch_size, seed=spec.seed)
    model = build_model(spec.model, task.input_shape, task.num_classes, 0)
    model.load_state_dict(theta0)
    torch.manual_seed(0)
    theta_k = CaptureWeights(spec.rewind_iteration)
    train(model, task, spec.train, callbacks=[theta_k])
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, theta_k.state


@pytest.mark.numerics
@pytest.mark.parametrize("strategy", ["imp", "lr_rewind"])
def test_round_one_starts_from_the_weights_its_strategy_names(strategy):
    """imp resets survivors to θ_k; lr_rewind keeps the trained weights (Renda et al.). Both
    checked against round 0 replayed independently, and the mask against magnitudes by hand."""
    spec = lineage_spec_from_dict(synthetic_spec_dict(rounds=1, strategy=strategy, rewind_iteration=20))
    _, resets = run_capturing(spec)
    trained, theta_k = _replay_dense(spec, resets[0][1])
    mask, start = resets[1]
    expected = theta_k if strategy == "imp" else trained
    other = trained if strategy == "imp" else theta_k
    for name, m in mask.items():
        rate = 0.1 if name == "fc3.weight" else 0.2
        n = m.numel()
        keep = n - round(rate * n)
        assert int(m.sum()) == keep
        top = torch.argsort(trained[name].abs().flatten(), descending=True, stable=True)[:keep]
        assert torch.equal(m.flatten().nonzero().flatten().sort().values, top.sort().values), "magnitude mask"
        assert torch.equal(start[name][m], expected[name][m]), f"{strategy} survivors of {name}"
        assert not torch.equal(start[name][m], other[name][m])
        assert torch.count_nonzero(start[name][~m]) == 0


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_pruned_weights_get_zero_gradients_at_every_step(make_spec, optimizer):
    """Gradients are masked before the step, so optimizer averages of pruned weights stay zero
    (re-zeroing the weights after the step alone would hide unmasked gradients)."""
    spec = make_spec(train={"optimizer": optimizer, "momentum": 0.9 if optimizer == "sgd" else 0.0})
    task = load_task(spec.dataset, spec.data, batch_size=spec.train.batch_size, seed=0)
    from study.engine.models import build_model

    model = build_model(spec.model, task.input_shape, task.num_classes, 0)
    g = torch.Generator().manual_seed(0)
    mask = {n: torch.rand(p.shape, generator=g) > 0.5 for n, p in model.named_parameters() if n.endswith("weight")}
    steps = []

    class StepCheck(TrainCallback):
        def on_step(self, it, m):
            for name, keep in mask.items():
                p = dict(m.named_parameters())[name]
                assert torch.count_nonzero(p.grad[~keep]) == 0, (it, name, "gradient")
                assert torch.count_nonzero(p[~keep]) == 0, (it, name, "weight")
                assert torch.count_nonzero(p.grad[keep]) > 0
            steps.append(it)

    train(model, task, spec.train, mask=mask, callbacks=[StepCheck()])
    assert steps == list(range(spec.train.iterations))


def test_a_failed_trial_takes_its_sibling_seeds_out_of_every_number():
    from study.lake.reader import excluded_lineages

    def row(study, trial, lineage, status, number):
        return {
            "study": study,
            "trial_id": trial,
            "lineage_id": lineage,
            "status": status,
            "optuna_trial_number": number,
        }

    nan = float("nan")
    rows = [
        row("s", "t1-s0", "a", "degenerate", 1),
        row("s", "t1-s1", "b", "stopped", 1),
        row("s", "t2-s0", "c", "finished", 2),
        row("s", "x", "d", "failed", nan),
        row("s", "y", "e", "finished", nan),
        row("other", "t1-s1", "b", "finished", 1),
    ]
    assert excluded_lineages(rows) == {("s", "t1-s0", "a"), ("s", "t1-s1", "b"), ("s", "x", "d")}


def test_a_lineage_that_raised_is_over(tmp_path):
    """After a degenerate (or diverged) round the lineage stops for good: asking again neither
    re-raises nor runs the next round from a half-updated state."""
    spec = lineage_spec_from_dict(synthetic_spec_dict(rounds=2, train={"lr": 50.0}, chance_margin=0.9))
    lineage = Lineage(spec, workdir=tmp_path, context=RunContext(threads=1))
    with pytest.raises(LineageFailure):
        next(lineage)
    assert lineage.ended and next(lineage, None) is None and [r.round for r in lineage.state.results] == [0]
