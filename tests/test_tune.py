"""Studies on a real local Ray (RAY_AUTH_MODE=disabled), small synthetic data."""

import itertools
import json
import os
import subprocess
import sys
import time

import duckdb
import pytest
import ray
import yaml
from conftest import kill_once_and_rerun, loopback_cluster, raw_rows, round_stamps, synthetic_spec_dict

from study.analysis.objectives import pareto_front
from study.engine.lineage import RunContext
from study.lake.reader import duckdb_rounds_sql, read_lineages, read_rounds
from study.search.study_spec import load_study_spec
from study.search.tune import FAULT_ENV, run_study

pytestmark = pytest.mark.timeout(600)


def write_study(tmp_path, name="s", rounds=2, **study_kw):
    raw = {
        "name": name,
        "base": synthetic_spec_dict(rounds=rounds, train={"iterations": 60, "eval_every": 20}),
        "search": {
            "train.lr": {"type": "log_float", "low": 3e-4, "high": 3e-3},
            "prune.rates.fc": {"type": "float", "low": 0.1, "high": 0.5},
        },
        "budget": {"num_samples": 4},
        "max_concurrent": 2,
        "storage": {"results": str(tmp_path / "lake")},
    }
    raw.update(study_kw)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"study": raw}))
    return path


@pytest.fixture
def local_ray(request):
    """A local Ray of 2 CPUs; the next test keeps it when it asks for one too (conftest's
    pytest_runtest_teardown), as every study ends its trials and tasks before it returns."""
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if not getattr(request.node, "next_uses_local_ray", False):
        ray.shutdown()


def test_four_trials_by_three_rounds_write_twelve_rows(local_ray, tmp_path):
    study = load_study_spec(write_study(tmp_path))
    outcome = run_study(study)
    lake = tmp_path / "lake"
    assert outcome.errors == 0
    rounds = read_rounds(lake, "s").table
    assert rounds.num_rows == 12 and len(raw_rows(lake)) == 12
    assert len(list((lake / "rounds").rglob("*.parquet"))) == 4, "each finished lineage folded into one file"
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

    from study.search.tune import optuna_storage

    ostudy = optuna.load_study(study_name="s", storage=optuna_storage(outcome.optuna_storage))
    assert len(ostudy.trials) == 4 and outcome.optuna_storage.endswith("s.journal")
    best = min(t.values[0] for t in ostudy.trials)
    assert outcome.best[0]["values"][0] == best


def test_multi_objective_study_returns_its_pareto_set(local_ray, tmp_path):
    path = write_study(
        tmp_path,
        name="pareto",
        objective={"name": "pareto"},
        sampler="nsga2",
        search={
            "prune.rates.fc": {"type": "float", "low": 0.1, "high": 0.7},
            "rounds": {"type": "int", "low": 1, "high": 3},
        },
    )
    outcome = run_study(load_study_spec(path))
    done = [t for t in outcome.trials if t["state"] == "COMPLETE"]
    assert len(done) == 4
    front = [done[i]["number"] for i in pareto_front([tuple(t["values"]) for t in done], ["max", "min"])]
    assert sorted(t["number"] for t in outcome.best) == sorted(front) and front
    for t in outcome.best:
        assert 0 < t["values"][1] < 100 and 0 <= t["values"][0] <= 1


def test_asha_stops_trials_on_the_sparsity_attribute_and_the_lake_says_so(local_ray, tmp_path):
    path = write_study(
        tmp_path,
        name="asha",
        base=synthetic_spec_dict(rounds=3, train={"iterations": 600, "eval_every": 200}),
        objective={"name": "auc"},
        scheduler={"type": "asha", "grace_pruned_pct": 15, "reduction_factor": 2},
        budget={"num_samples": 6},
    )
    outcome = run_study(load_study_spec(path))
    assert outcome.errors == 0
    assert {t["state"] for t in outcome.trials} == {"COMPLETE"}, "stopped trials reach Optuna as COMPLETE"
    lineages = read_lineages(tmp_path / "lake", "asha").table.to_pylist()
    assert len(lineages) == 6 and {r["status"] for r in lineages} <= {"finished", "stopped"}
    rounds = read_rounds(tmp_path / "lake", "asha").table
    per_trial = {}
    for trial, rnd in zip(rounds["trial_id"].to_pylist(), rounds["round"].to_pylist(), strict=True):
        per_trial.setdefault(trial, set()).add(rnd)
    for r in lineages:
        full = per_trial[r["trial_id"]] == {0, 1, 2, 3}
        assert full == (r["status"] == "finished"), r
    assert "stopped" in {r["status"] for r in lineages}, "ASHA stopped some trial while its lineage ran"


def test_optuna_holds_validation_derived_values_never_test(local_ray, tmp_path):
    """The values Optuna stores are the objective on seed-mean validation accuracy, recomputed
    here from the raw round files with the paper-style area formula transcribed by hand. The
    lineages grow a random_reinit branch: its rows are the trunk's control, never its objective."""
    import math

    import optuna

    from study.search.tune import optuna_storage

    path = write_study(
        tmp_path, name="auc", rounds=2, seeds=[0, 1], objective={"name": "auc"}, budget={"num_samples": 3}
    )
    raw = yaml.safe_load(path.read_text())
    raw["study"]["base"]["branches"] = ["random_reinit"]
    path.write_text(yaml.safe_dump(raw))
    outcome = run_study(load_study_spec(path))
    lineages = raw_rows(tmp_path / "lake", "lineages")
    assert sorted(str(r["strategy"]) for r in lineages) == ["imp"] * 6 + ["imp.random_reinit"] * 6
    assert {r["status"] for r in lineages} == {"finished"}
    from study.app.lake import load_lake
    from study.app.search import study_info, study_trials

    view = load_lake(tmp_path / "lake")
    trials = study_trials(view, "auc", study_info(view, "auc"))  # the app's Search page: trunks only
    assert list(trials["seeds"]) == [2, 2, 2] and list(trials["rounds done"]) == [3, 3, 3]
    rows = by_trial_number(tmp_path / "lake")
    ostudy = optuna.load_study(study_name="auc", storage=optuna_storage(outcome.optuna_storage))

    def area(number, which):
        mean = [[sum(rows[(number, s, r)][i] for s in (0, 1)) / 2 for i in (0, 1, 2)] for r in (0, 1, 2)]
        return sum(math.log10(a[2] / b[2]) * (a[which] + b[which]) / 2 for a, b in itertools.pairwise(mean))

    assert len(ostudy.trials) == 3
    for t in ostudy.trials:
        assert t.state.name == "COMPLETE"
        assert t.values[0] == pytest.approx(area(t.number, 0), abs=1e-12), "validation-derived"
        assert t.values[0] != pytest.approx(area(t.number, 1), abs=1e-9), "not test-derived"
    best = max(ostudy.trials, key=lambda t: t.values[0])
    assert outcome.best[0]["number"] == best.number
    assert outcome.best[0]["reported"]["test_auc"] == pytest.approx(area(best.number, 1), abs=1e-12)


def test_a_round_longer_than_the_stall_timeout_is_not_a_stall(local_ray, tmp_path):
    """A trial holds no CPU, so a running trial proves nothing; a lineage task that runs is
    progress however long its round takes (it beats while it lives)."""
    base = synthetic_spec_dict(rounds=0, train={"iterations": 16000, "eval_every": 8000})
    path = write_study(tmp_path, name="slow", base=base, stall_timeout_s=10, budget={"num_samples": 1})
    assert run_study(load_study_spec(path)).errors == 0
    rows = raw_rows(tmp_path / "lake")
    assert len(rows) == 1 and rows[0]["wall_seconds"] > 10, "the round outlasted the stall timeout"
    assert {r["status"] for r in raw_rows(tmp_path / "lake", "lineages")} == {"finished"}


def test_a_different_study_under_an_existing_name_is_refused(local_ray, tmp_path):
    from study.errors import SpecError

    run_study(load_study_spec(write_study(tmp_path, name="named", rounds=1, budget={"num_samples": 1})))
    again = load_study_spec(write_study(tmp_path, name="named", rounds=1, budget={"num_samples": 1}, max_concurrent=1))
    changed = load_study_spec(write_study(tmp_path, name="named", rounds=2, budget={"num_samples": 1}))
    with pytest.raises(SpecError, match="already exists .* with a different base"):
        run_study(changed)
    bigger = load_study_spec(write_study(tmp_path, name="named", rounds=1, budget={"num_samples": 3}))
    with pytest.raises(SpecError, match="with a different budget"):
        run_study(bigger)
    assert len(run_study(again).trials) == 1, "the same study (other concurrency) resumes"
    # an experiment Tune saved with code that has since moved (a module of an older layout)
    saved = tmp_path / "lake" / "_tune" / "old-layout" / "tuner.pkl"
    saved.parent.mkdir(parents=True)
    saved.write_bytes(b"cstudy.tune\nOldTuner\n)\x81.")  # pickle: an object of study.tune.OldTuner
    old = load_study_spec(write_study(tmp_path, name="old-layout", rounds=1, budget={"num_samples": 1}))
    with pytest.raises(SpecError, match="written by another version .* No module named 'study.tune'.* new name"):
        run_study(old)


@pytest.mark.numerics
def test_parallel_seeds_write_the_rows_serial_runs_write_and_overlap_in_time(local_ray, tmp_path):
    """Four seeds of one trial run as parallel Ray tasks on 2 CPUs: every row equals the row of
    the same lineage run serially in this process (run_lineage, no Ray), and the seeds' rounds
    overlapped in time: their summed round seconds exceed the time from the first round's start
    to the last round's end, which seeds run one after another cannot do."""
    from study.engine.lineage import run_lineage

    base = synthetic_spec_dict(rounds=2, train={"iterations": 600, "eval_every": 200})
    path = write_study(
        tmp_path,
        name="par",
        base=base,
        seeds=[0, 1, 2, 3],
        sampler="grid",
        budget={"num_samples": 1},
        search={"prune.rates.fc": {"type": "categorical", "choices": [0.3]}},
    )
    study = load_study_spec(path)
    assert run_study(study).errors == 0
    rows = raw_rows(tmp_path / "lake")
    assert len(rows) == 12 == len({(r["seed"], r["round"]) for r in rows})
    compared = ["lineage_id", "config_hash", "remaining_pct", "val_acc", "val_loss", "test_acc", "test_loss"]
    compared += ["final_val_acc", "final_test_acc", "final_train_loss", "early_stop_iteration", "iterations"]
    for seed in study.seeds:
        serial = run_lineage(study.lineage_spec({"prune.rates.fc": 0.3}, seed), context=RunContext(threads=1))
        parallel = sorted((r for r in rows if r["seed"] == seed), key=lambda r: r["round"])
        assert [{k: r[k] for k in compared} for r in parallel] == [
            {k: getattr(r, k) for k in compared} for r in serial
        ], f"seed {seed}"
    busy = sum(r["wall_seconds"] for r in rows)
    first = min(r["written_at"].timestamp() - r["wall_seconds"] for r in rows)
    span = max(r["written_at"].timestamp() for r in rows) - first
    assert busy > 1.4 * span, f"{busy:.1f} s of rounds in {span:.1f} s: the seeds did not run in parallel"


@pytest.mark.numerics
def test_a_packed_trial_trains_its_seeds_in_one_task_and_writes_their_packed_rows(local_ray, tmp_path):
    """resources.pack: on (what a share of a GPU does by default): a trial's three seeds train packed in
    one Ray task; every row is, bit for bit, the row of the same three lineages packed in this
    process (the same kernels: one thread each, one pack), each lineage is filed finished, and the
    seeds' rounds took the very same wall time (one pack trained them: lone tasks never tie). That
    a pack trains each member as the lone loop does is a claim of mathematical equivalence, held
    in float64 by tests/test_packed.py (float32 rounds differently per CPU's SIMD kernels)."""
    from study.engine.data import SharedTasks
    from study.engine.lineage import Lineage, LineageHooks
    from study.engine.packing import run_packed

    base = synthetic_spec_dict(rounds=2, train={"iterations": 60, "eval_every": 20})
    path = write_study(
        tmp_path,
        name="packed",
        base=base,
        seeds=[0, 1, 2],
        sampler="grid",
        budget={"num_samples": 1},
        search={"prune.rates.fc": {"type": "categorical", "choices": [0.3]}},
        resources={"cpu": 1, "pack": "on"},
    )
    study = load_study_spec(path)
    assert study.pack_size() == 3 and study.tasks_per_trial() == 1
    assert run_study(study).errors == 0
    rows = raw_rows(tmp_path / "lake")
    assert len(rows) == 9 == len({(r["seed"], r["round"]) for r in rows})
    assert {r["status"] for r in raw_rows(tmp_path / "lake", "lineages")} == {"finished"}
    here: dict[int, list] = {}
    context = RunContext(threads=1, tasks=SharedTasks())
    specs = [study.lineage_spec({"prune.rates.fc": 0.3}, seed) for seed in study.seeds]
    members = [
        Lineage(spec, context=context, hooks=LineageHooks(on_round=here.setdefault(i, []).append))
        for i, spec in enumerate(specs)
    ]
    assert [e for e in run_packed(members) if e[1] is None] == [(0, None), (1, None), (2, None)]
    compared = ["lineage_id", "remaining_pct", "early_stop_iteration", "val_loss", "val_acc", "test_loss"]
    compared += ["test_acc", "final_train_loss", "final_val_acc", "final_test_acc", "curve_val_loss"]
    for i, seed in enumerate(study.seeds):
        packed = sorted((r for r in rows if r["seed"] == seed), key=lambda r: r["round"])
        assert [{k: r[k] for k in compared} for r in packed] == [{k: getattr(r, k) for k in compared} for r in here[i]]
    for round_ in (0, 1, 2):
        assert len({r["wall_seconds"] for r in rows if r["round"] == round_}) == 1


def test_a_cancelled_lineage_task_is_gone_before_its_trial_files_it_stopped(local_ray, tmp_path):
    """How a trial ends its seeds (stopped by Tune, or a sibling failed): the task is killed and
    waited for, so nothing it does can follow; it files nothing itself (not 'failed'), and the
    'stopped' the trial then files stays."""
    from study.lake.files import checkpoint_dir
    from study.search.lineage_tasks import LineageJob, LineageTask, close_running, stop_all

    spec = synthetic_spec_dict(rounds=8, train={"iterations": 400, "eval_every": 200})
    root = str(tmp_path)
    job = LineageJob(spec, root, "s", "t1-s0", checkpoint_dir(root, "s", "t1-s0"), "cpu", 1, None)
    (lineage,) = LineageTask([job], 1, 0).lineages
    assert lineage.started.previous == [] and next(lineage).round == 0
    assert stop_all([lineage])
    with pytest.raises((ray.exceptions.TaskCancelledError, ray.exceptions.WorkerCrashedError)):
        ray.get(lineage.task._stream.completed(), timeout=0)
    files = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.parquet")}
    assert close_running(root, "s", "t1", "stopped", "the test stopped it") == 1
    time.sleep(3)
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.parquet")}
    assert set(after) == set(files) and all(after[p] == files[p] for p in files if "lineages" not in p.parts)
    (row,) = read_lineages(tmp_path, "s").table.to_pylist()
    assert row["status"] == "stopped" and row["error"].startswith("the test stopped it (after round")


def test_a_list_valued_choice_is_searched_and_reaches_the_lineage(local_ray, tmp_path):
    """prune.exempt takes a list: a grid over [] and [output] runs both lineages, the exempt one
    never pruning its output layer (Optuna itself only takes scalar choices)."""
    path = write_study(
        tmp_path,
        name="exempt",
        rounds=1,
        search={"prune.exempt": {"type": "categorical", "choices": [[], ["output"]]}},
        sampler="grid",
        budget={"num_samples": 2},
    )
    outcome = run_study(load_study_spec(path))
    assert outcome.errors == 0
    lineages = read_lineages(tmp_path / "lake", "exempt").table.to_pylist()
    exempt = {r["trial_id"]: json.loads(r["config_json"])["prune"].get("exempt", []) for r in lineages}
    assert sorted(map(tuple, exempt.values())) == [(), ("output",)]
    pruned = {r["trial_id"]: r["group_remaining_pct"] for r in raw_rows(tmp_path / "lake") if r["round"] == 1}
    for trial, kinds in exempt.items():
        output = dict(pruned[trial])["output"]
        assert (output == 100.0) == (kinds == ["output"]), (kinds, output)


def by_trial_number(lake):
    """(optuna trial number, seed, round) -> the round's selection and reporting numbers of the
    searched (trunk) lineages, from raw files; branches' rows are their controls."""
    number = {r["trial_id"]: r["optuna_trial_number"] for r in raw_rows(lake, "lineages")}
    return {
        (number[r["trial_id"]], r["seed"], r["round"]): (r["val_acc"], r["test_acc"], r["remaining_pct"])
        for r in raw_rows(lake)
        if r.get("branch") is None
    }


def test_a_trial_that_raises_once_resumes_from_its_checkpoint(tmp_path):
    markers = tmp_path / "markers"
    two = {"seeds": [0, 1], "sampler": "random", "budget": {"num_samples": 2}}
    clean = write_study(tmp_path, name="clean", **two)
    flaky = write_study(tmp_path, name="flaky", **two, storage={"results": str(tmp_path / "flaky_lake")})
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {FAULT_ENV: f"1:{markers}"}},
    )
    try:
        outcome = run_study(load_study_spec(flaky))
    finally:
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        clean_outcome = run_study(load_study_spec(clean))
    finally:
        ray.shutdown()
    assert len(list(markers.iterdir())) == 2, "every trial failed once at round 1"
    values = {t["number"]: (t["state"], t["values"]) for t in outcome.trials}
    assert values == {t["number"]: (t["state"], t["values"]) for t in clean_outcome.trials}, (
        "Optuna got each retried trial's final result (its seeds ran ahead of the fault), as uninterrupted"
    )
    assert outcome.errors == 0
    lake = tmp_path / "flaky_lake"
    rows = raw_rows(lake)
    keys = [(r["trial_id"], r["round"]) for r in rows]
    assert len(keys) == 12 == len(set(keys)), "2 trials x 2 seeds x 3 rounds: 12 rows on disk, no duplicates"
    assert len(raw_rows(lake, "lineages")) == 4, "no extra lineages"
    assert {r["status"] for r in raw_rows(lake, "lineages")} == {"finished"}
    assert by_trial_number(lake) == by_trial_number(tmp_path / "lake"), "the same rows as an uninterrupted run"
    # resumed, not restarted: every round row written before the fault is the very row the
    # retry left, but for the newest of each seed (its task, running ahead, may have been
    # stopped between that row and its checkpoint, and the retry redid that round)
    written = round_stamps(lake)
    for marker in markers.iterdir():
        at_fault = json.loads(marker.read_text())
        assert {"-r000", "-r001"} <= {n[-5:] for n in at_fault}
        assert len([n for n in at_fault if n.endswith(("-r000", "-r001"))]) == 4, "both seeds reported round 1"
        newest = {}
        for name in at_fault:
            newest[name[:-5]] = max(newest.get(name[:-5], -1), int(name[-3:]))
        for name, when in at_fault.items():
            assert written[name] == when or int(name[-3:]) == newest[name[:-5]], f"{name} was redone"
    assert not list((lake / "_checkpoints").rglob("lineage.pt")), "finished trials leave no resume state behind"


def test_bad_study_yaml_is_rejected_before_ray_starts(tmp_path):
    path = write_study(tmp_path, name="bad", search={"prune.rates.fc": {"type": "float", "low": 0.5, "high": 1.0}})
    code = (
        f"import sys; from study.cli import main; rc = main(['tune', {str(path)!r}]); "
        f"print('RAY', 'ray' in sys.modules, rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "RAY False 2" in proc.stdout
    assert "search.prune.rates.fc=1.0" in proc.stderr and "impossible" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert not (tmp_path / "lake").exists()
    typo = write_study(tmp_path, name="typo", budgett={"num_samples": 2})
    proc = subprocess.run([sys.executable, "-m", "study.cli", "tune", str(typo)], capture_output=True, text=True)
    assert (
        proc.returncode == 2 and "unknown key 'study.budgett'" in proc.stderr and "did you mean 'budget'" in proc.stderr
    )


def test_driver_killed_mid_study_resumes_without_duplicates(tmp_path):
    base = synthetic_spec_dict(rounds=3, train={"iterations": 300, "eval_every": 100})
    path = write_study(tmp_path, name="killed", rounds=3, base=base, sampler="random")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    lake = tmp_path / "lake"
    seen = {}

    def at_kill():
        seen.update(round_stamps(lake))

    rerun = kill_once_and_rerun([sys.executable, "-m", "study.cli", "tune", str(path)], env, lake, after_kill=at_kill)
    assert "best configuration" in rerun.stdout
    rows = raw_rows(lake)
    keys = [(r["trial_id"], r["round"]) for r in rows]
    assert len(keys) == 16 == len(set(keys)), "4 trials x 4 rounds: 16 rows on disk, no duplicates"
    lineages = raw_rows(lake, "lineages")
    assert len(lineages) == 4 and {r["status"] for r in lineages} == {"finished"}, "no extra or orphan lineages"
    assert {k[1] for k in keys} == {0, 1, 2, 3}
    # (that a resumed lineage's rows equal an uninterrupted one's: tests/test_resume.py, by kill -9)
    after = round_stamps(lake)
    redone = [n for n, t in seen.items() if after[n] != t]
    # a round is redone only when the kill fell between its row and its checkpoint: at most the
    # newest round of each trial that was running at the kill
    newest = {}
    for name in seen:
        trial, rnd = name[:-5], int(name[-3:])
        newest[trial] = max(newest.get(trial, -1), rnd)
    assert all(int(n[-3:]) == newest[n[:-5]] for n in redone), (redone, sorted(seen))
    assert len(seen) >= 3 and len(redone) <= 2


def test_two_node_loopback_cluster_runs_one_study_into_one_lake(tmp_path):
    """`ray start --head` plus a second `ray start --address` on loopback, one CPU each: the
    study's trials land on both nodes and all results go to one lake."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    with loopback_cluster(head_cpus=1, worker_cpus=1) as address:
        path = write_study(tmp_path, name="twonode")
        proc = subprocess.run(
            [sys.executable, "-m", "study.cli", "tune", str(path), "--address", address],
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "on the Ray cluster at" in proc.stdout
    lineages = read_lineages(tmp_path / "lake", "twonode").table.to_pylist()
    assert len(lineages) == 4 and len({r["node_id"] for r in lineages}) == 2, "trials ran on both nodes"
    assert read_rounds(tmp_path / "lake", "twonode").table.num_rows == 12


def test_lake_finalizer_marks_running_lineages_of_an_ended_trial_stopped(tmp_path):
    from study.lake.files import write_lineage
    from study.search.lineage_tasks import close_running

    for trial, status in (("t1-s0", "running"), ("t1-s1", "running"), ("t2-s0", "running"), ("t3-s0", "finished")):
        write_lineage(
            tmp_path,
            {
                "study": "s",
                "strategy": "imp",
                "trial_id": trial,
                "lineage_id": "l",
                "config_hash": "h",
                "status": status,
                "rounds_done": 2,
            },
        )
    corrupt = tmp_path / "lineages" / "study=s" / "strategy=imp" / "t1-s9.parquet"
    corrupt.write_bytes(b"PAR1 torn")  # an unreadable file of the trial is skipped, never raised in Tune's loop
    assert close_running(str(tmp_path), "s", "t1", "stopped", "Tune stopped it") == 2
    assert close_running(str(tmp_path), "s", "t3", "stopped", "Tune stopped it") == 0
    status = {r["trial_id"]: r["status"] for r in read_lineages(tmp_path, "s").table.to_pylist()}
    assert status == {"t1-s0": "stopped", "t1-s1": "stopped", "t2-s0": "running", "t3-s0": "finished"}


def test_failed_trials_are_filed_fail_and_can_never_be_best(tmp_path):
    """lr 1e6 trains to chance: the lineage is degenerate, Optuna files the trial FAIL with the
    reason, and the CLI lists it apart, while the sane trial is the best."""
    path = write_study(
        tmp_path,
        name="lrs",
        rounds=1,
        sampler="grid",
        budget={"num_samples": 2},
        search={"train.lr": {"type": "categorical", "choices": [1e-3, 1e6]}},
    )
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run(
        [sys.executable, "-m", "study.cli", "tune", str(path)], env=env, capture_output=True, text=True, timeout=400
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import optuna

    from study.search.tune import optuna_storage

    ostudy = optuna.load_study(study_name="lrs", storage=optuna_storage(str(tmp_path / "lake/_optuna/lrs.journal")))
    states = {t.params["train.lr"]: t for t in ostudy.trials}
    assert states[1e6].state.name == "FAIL" and "degenerate" in states[1e6].user_attrs["lineage_failure"]
    assert states[1e-3].state.name == "COMPLETE"
    assert ostudy.best_trial.params["train.lr"] == 1e-3
    assert "trials that failed" in proc.stdout and "degenerate" in proc.stdout
    status = {r["config_json"].count("1000000.0") > 0: r["status"] for r in raw_rows(tmp_path / "lake", "lineages")}
    assert status == {True: "degenerate", False: "finished"}
    from study.analysis.summary import summarize

    (row,) = summarize(tmp_path / "lake", "lrs").strategies
    assert "1 degenerate" in row["lineages"] and row["rounds"] == 2, "the failed lineage's rows are left out"


@pytest.mark.parametrize("resources,word", [({"gpu": 0.5}, "GPU"), ({"cpu": 64}, "CPU")])
def test_a_trial_that_fits_no_node_fails_in_seconds(tmp_path, resources, word):
    path = write_study(tmp_path, name="big", resources=resources)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "CUDA_VISIBLE_DEVICES": ""}
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "study.cli", "tune", str(path)], env=env, capture_output=True, text=True, timeout=120
    )
    assert time.monotonic() - start < 90
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
    assert "no node of this cluster is that big" in proc.stderr and word in proc.stderr
    assert "lower resources" in proc.stderr
    assert not (tmp_path / "lake" / "rounds").exists()


def test_worker_groups_of_an_autoscaler_count_as_nodes():
    from study.errors import SpecError
    from study.search.preflight import check_fits, worker_groups

    groups = worker_groups({"STUDY_WORKER_GROUPS": "cpu=8,gpu=1; CPU=4"})
    assert groups == [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 4.0, "GPU": 0.0}]
    check_fits(2, 0.5, [{"CPU": 0.0}], groups)  # a head with no CPUs, a GPU group that may scale up
    with pytest.raises(SpecError, match="the most any node has: 8 CPU, 1 GPU"):
        check_fits(2, 2, [{"CPU": 0.0}], groups)
    with pytest.raises(SpecError, match="the most any node has: 8 CPU, 1 GPU"):  # not the GPU node's 4 CPUs
        check_fits(16, 0, [{"CPU": 4, "GPU": 1}, {"CPU": 8}], [])
    for bad in ("cpu8", "cpu=eight", "cpu=8,gpu=1;tpu=2"):
        with pytest.raises(SpecError, match="STUDY_WORKER_GROUPS=.* is not understood .* cpu=N,gpu=M"):
            worker_groups({"STUDY_WORKER_GROUPS": bad})


def test_a_study_that_makes_no_progress_stops_and_says_why(tmp_path):
    from study.search.tune import StudyStalled

    @ray.remote(num_cpus=2)
    class Hog:
        def ping(self):
            return 1

    ray.init(
        address="local", num_cpus=2, include_dashboard=False, log_to_driver=False
    )  # its own: the stalled tasks die with it
    hog = Hog.remote()
    ray.get(hog.ping.remote())  # both CPUs are held: the trials fit a node but are never granted
    path = write_study(tmp_path, name="stall", stall_timeout_s=5, budget={"num_samples": 2})
    start = time.monotonic()
    try:
        with pytest.raises(StudyStalled, match=r"no lineage ran for 5 s \(free now: 0 of 2 CPU\)"):
            run_study(load_study_spec(path))
        assert time.monotonic() - start < 60
    finally:
        ray.kill(hog)
        ray.shutdown()


def test_lockstep_never_mixes_rounds_and_steps_every_seed_to_its_end():
    """A seed killed mid-round resumes one round behind: it is stepped alone until it catches up,
    each round is yielded once every seed has it, and every lineage is stepped until it stops."""
    from types import SimpleNamespace

    from study.search.tune import lockstep

    class Seed:
        def __init__(self, name, done, last):
            self.previous = [SimpleNamespace(seed=name, round=r) for r in range(done)]
            self.todo = iter(SimpleNamespace(seed=name, round=r) for r in range(done, last + 1))
            self.stopped = False

        def __iter__(self):
            return self

        def __next__(self):
            try:
                return next(self.todo)
            except StopIteration:
                self.stopped = True
                raise

    seeds = [Seed("a", 3, 4), Seed("b", 2, 4), Seed("c", 3, 4)]  # b was killed one round behind
    rows = [list(s.previous) for s in seeds]
    got = [[(r.seed, r.round) for r in results] for results in lockstep(seeds, rows)]
    assert got == [[("a", 2), ("b", 2), ("c", 2)], [("a", 3), ("b", 3), ("c", 3)], [("a", 4), ("b", 4), ("c", 4)]]
    assert all(s.stopped for s in seeds), "every lineage reached its end (and so was filed finished)"
    even = [Seed("a", 0, 1), Seed("b", 0, 1)]
    assert [[r.round for r in rs] for rs in lockstep(even, [[], []])] == [[0, 0], [1, 1]]


def test_a_trial_out_of_retries_is_filed_failed_and_a_rerun_resumes_it(tmp_path):
    """A trial that raises with no retries left ends in error: its lineages are filed 'failed'
    (never 'running' forever, never counted); running the study again resumes and finishes them."""
    markers = tmp_path / "markers"
    base = synthetic_spec_dict(rounds=3, train={"iterations": 300, "eval_every": 100})
    path = write_study(tmp_path, name="flaky", base=base, seeds=[0, 1], max_failures=0, budget={"num_samples": 1})
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {FAULT_ENV: f"1:{markers}"}},
    )
    try:
        assert run_study(load_study_spec(path)).errors == 1
    finally:
        ray.shutdown()
    lineages = raw_rows(tmp_path / "lake", "lineages")
    assert len(lineages) == 2 and {r["status"] for r in lineages} == {"failed"}
    assert all("out of retries, max_failures); running the study again finishes" in r["error"] for r in lineages)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert run_study(load_study_spec(path)).errors == 0
    finally:
        ray.shutdown()
    assert {r["status"] for r in raw_rows(tmp_path / "lake", "lineages")} == {"finished"}
    assert len(raw_rows(tmp_path / "lake")) == 8


def test_trials_to_fill_keeps_every_slot_busy_with_one_trial_queued():
    from study.search.lineage_tasks import trials_to_fill

    assert trials_to_fill(1, 0, 3, {"CPU": 2}) == 2  # 3 lineages cover 2 cores, one more trial queued
    assert trials_to_fill(1, 0, 1, {"CPU": 16}) == 17
    assert trials_to_fill(1, 0.5, 2, {"CPU": 64, "GPU": 4}) == 5  # 8 half-GPU slots / 2 seeds + 1
    assert trials_to_fill(1, 0.75, 1, {"CPU": 64, "GPU": 4}) == 5  # a packed task of 3 quarter-GPU seeds per GPU, +1
    assert trials_to_fill(4, 0, 2, {"CPU": 18}) == 3  # 4 slots of 4 CPUs, 2 trials fill them, 1 queued
    assert trials_to_fill(2, 0, 1, {"CPU": 0}) == 2  # an autoscaler's empty head: start small


def test_a_trial_that_fails_after_its_seeds_finished_reports_their_final_round(tmp_path):
    """The seeds run ahead of their trial's reports: when the trial raises at the last round,
    its retry finds every round done and steps nothing, yet Optuna must get the final round's
    values (not the older last report), exactly as in an uninterrupted study."""
    markers = tmp_path / "markers"
    outcomes = {}
    for name, env in (("clean", {}), ("late", {FAULT_ENV: f"2:{markers}"})):
        path = write_study(
            tmp_path,
            name=name,
            seeds=[0, 1],
            sampler="random",
            budget={"num_samples": 2},
            storage={"results": str(tmp_path / name)},
        )
        ray.init(
            address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env}
        )
        try:
            outcomes[name] = run_study(load_study_spec(path))
        finally:
            ray.shutdown()
    assert len(list(markers.iterdir())) == 2, "every trial raised once, at its last round"
    values = {n: {t["number"]: (t["state"], t["values"]) for t in o.trials} for n, o in outcomes.items()}
    assert values["late"] == values["clean"]
    assert {r["status"] for r in raw_rows(tmp_path / "late", "lineages")} == {"finished"}
