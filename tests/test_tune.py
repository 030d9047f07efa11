"""Studies on a real local Ray (RAY_AUTH_MODE=disabled), small synthetic data."""
import os
import subprocess
import sys

import duckdb
import pytest
import ray
import yaml

from conftest import assert_study_complete, kill_once_and_rerun, loopback_cluster, synthetic_spec_dict
from study.objectives import pareto_front
from study.results import duckdb_rounds_sql, read_lineages, read_rounds
from study.study_spec import load_study_spec
from study.tune import FAULT_ENV, run_study

pytestmark = pytest.mark.timeout(600)


def write_study(tmp_path, name="s", rounds=2, **study_kw):
    raw = {
        "name": name,
        "base": synthetic_spec_dict(rounds=rounds, train={"iterations": 60, "eval_every": 20}),
        "search": {"train.lr": {"type": "log_float", "low": 3e-4, "high": 3e-3},
                   "prune.rates.fc": {"type": "float", "low": 0.1, "high": 0.5}},
        "budget": {"num_samples": 4},
        "max_concurrent": 2,
        "storage": {"results": str(tmp_path / "lake")},
    }
    raw.update(study_kw)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"study": raw}))
    return path


@pytest.fixture
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_four_trials_by_three_rounds_write_twelve_rows(local_ray, tmp_path):
    study = load_study_spec(write_study(tmp_path))
    outcome = run_study(study)
    lake = tmp_path / "lake"
    assert outcome.errors == 0
    rounds = read_rounds(lake, "s").table
    assert rounds.num_rows == 12 and len(list((lake / "rounds").rglob("*.parquet"))) == 12
    lineages = read_lineages(lake, "s").table.to_pylist()
    assert len(lineages) == 4 and {r["status"] for r in lineages} == {"finished"}
    assert sorted(r["optuna_trial_number"] for r in lineages) == [0, 1, 2, 3]
    assert all(r["node_id"] for r in lineages)
    n = duckdb.connect().sql(f"select count(distinct trial_id) from {duckdb_rounds_sql(lake)}").fetchall()[0][0]
    assert n == 4
    assert len(outcome.best) == 1 and outcome.best[0]["state"] == "COMPLETE"
    assert {t["state"] for t in outcome.trials} == {"COMPLETE"}
    # the Optuna study lives in the journal file, readable with Optuna's own tools
    import optuna

    from study.tune import optuna_storage

    ostudy = optuna.load_study(study_name="s", storage=optuna_storage(outcome.optuna_storage))
    assert len(ostudy.trials) == 4 and outcome.optuna_storage.endswith("s.journal")
    best = min(t.values[0] for t in ostudy.trials)
    assert outcome.best[0]["values"][0] == best


def test_a_trial_that_raises_once_resumes_from_its_checkpoint(tmp_path):
    markers = tmp_path / "markers"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {FAULT_ENV: f"1:{markers}"}})
    try:
        outcome = run_study(load_study_spec(write_study(tmp_path, name="flaky", seeds=[0, 1])))
    finally:
        ray.shutdown()
    assert len(list(markers.iterdir())) == 4, "every trial failed once at round 1"
    assert outcome.errors == 0
    table = read_rounds(tmp_path / "lake", "flaky").table
    keys = list(zip(table["trial_id"].to_pylist(), table["round"].to_pylist()))
    assert len(keys) == 24 == len(set(keys)), "4 trials x 2 seeds x 3 rounds, no duplicates"
    assert len(list((tmp_path / "lake" / "rounds").rglob("*.parquet"))) == 24
    assert {r["status"] for r in read_lineages(tmp_path / "lake", "flaky").table.to_pylist()} == {"finished"}


def test_multi_objective_study_returns_its_pareto_set(local_ray, tmp_path):
    path = write_study(tmp_path, name="pareto", objective={"name": "pareto"}, sampler="nsga2",
                       search={"prune.rates.fc": {"type": "float", "low": 0.1, "high": 0.7},
                               "rounds": {"type": "int", "low": 1, "high": 3}})
    outcome = run_study(load_study_spec(path))
    done = [t for t in outcome.trials if t["state"] == "COMPLETE"]
    assert len(done) == 4
    front = [done[i]["number"] for i in pareto_front([tuple(t["values"]) for t in done], ["max", "min"])]
    assert sorted(t["number"] for t in outcome.best) == sorted(front) and front
    for t in outcome.best:
        assert 0 < t["values"][1] < 100 and 0 <= t["values"][0] <= 1


def test_bad_study_yaml_is_rejected_before_ray_starts(tmp_path):
    path = write_study(tmp_path, name="bad", search={"prune.rates.fc": {"type": "float", "low": 0.5, "high": 1.0}})
    code = (f"import sys; from study.cli import main; rc = main(['tune', {str(path)!r}]); "
            f"print('RAY', 'ray' in sys.modules, rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "RAY False 2" in proc.stdout
    assert "search.prune.rates.fc=1.0" in proc.stderr and "impossible" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert not (tmp_path / "lake").exists()
    typo = write_study(tmp_path, name="typo", budgett={"num_samples": 2})
    proc = subprocess.run([sys.executable, "-m", "study.cli", "tune", str(typo)], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown key 'study.budgett'" in proc.stderr and "did you mean 'budget'" in proc.stderr


def test_driver_killed_mid_study_resumes_without_duplicates(tmp_path):
    path = write_study(tmp_path, name="killed", rounds=3,
                       base=synthetic_spec_dict(rounds=3, train={"iterations": 600, "eval_every": 200}))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    rerun = kill_once_and_rerun([sys.executable, "-m", "study.cli", "tune", str(path)], env, tmp_path / "lake")
    assert_study_complete(tmp_path / "lake", "killed", rounds={0, 1, 2, 3})
    assert "best configuration" in rerun.stdout


def test_two_node_loopback_cluster_runs_one_study_into_one_lake(tmp_path):
    """`ray start --head` plus a second `ray start --address` on loopback, one CPU each: the
    study's trials land on both nodes and all results go to one lake."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    with loopback_cluster(head_cpus=1, worker_cpus=1) as address:
        path = write_study(tmp_path, name="twonode")
        proc = subprocess.run([sys.executable, "-m", "study.cli", "tune", str(path), "--address", address],
                              env=env, capture_output=True, text=True, timeout=400)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "on the Ray cluster at" in proc.stdout
    lineages = read_lineages(tmp_path / "lake", "twonode").table.to_pylist()
    assert len(lineages) == 4 and len({r["node_id"] for r in lineages}) == 2, "trials ran on both nodes"
    assert read_rounds(tmp_path / "lake", "twonode").table.num_rows == 12


def test_asha_stops_trials_on_the_sparsity_attribute_and_the_lake_says_so(local_ray, tmp_path):
    path = write_study(tmp_path, name="asha", rounds=3, objective={"name": "auc"},
                       scheduler={"type": "asha", "grace_pruned_pct": 15, "reduction_factor": 2},
                       budget={"num_samples": 6})
    outcome = run_study(load_study_spec(path))
    assert outcome.errors == 0
    assert {t["state"] for t in outcome.trials} == {"COMPLETE"}, "stopped trials reach Optuna as COMPLETE"
    lineages = read_lineages(tmp_path / "lake", "asha").table.to_pylist()
    assert len(lineages) == 6 and {r["status"] for r in lineages} <= {"finished", "stopped"}
    rounds = read_rounds(tmp_path / "lake", "asha").table
    per_trial = {}
    for trial, rnd in zip(rounds["trial_id"].to_pylist(), rounds["round"].to_pylist()):
        per_trial.setdefault(trial, set()).add(rnd)
    for r in lineages:
        full = per_trial[r["trial_id"]] == {0, 1, 2, 3}
        assert full == (r["status"] == "finished"), r


def test_lake_finalizer_marks_running_lineages_of_an_ended_trial_stopped(tmp_path):
    from study.results import write_lineage
    from study.tune import LakeFinalizer

    for trial, status in (("t1-s0", "running"), ("t1-s1", "running"), ("t2-s0", "running"), ("t3-s0", "finished")):
        write_lineage(tmp_path, {"study": "s", "strategy": "imp", "trial_id": trial, "lineage_id": "l",
                                 "config_hash": "h", "status": status, "rounds_done": 2})
    assert LakeFinalizer(str(tmp_path), "s").close("t1", "stopped") == 2
    assert LakeFinalizer(str(tmp_path), "s").close("t3", "stopped") == 0
    status = {r["trial_id"]: r["status"] for r in read_lineages(tmp_path, "s").table.to_pylist()}
    assert status == {"t1-s0": "stopped", "t1-s1": "stopped", "t2-s0": "running", "t3-s0": "finished"}
