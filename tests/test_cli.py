import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import requires_fashion_mnist, synthetic_spec_dict

from study.cli import main
from study.engine.spec import load_lineage_spec

ROOT = Path(__file__).resolve().parents[1]


def write_spec(tmp_path, **kw):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"lineage": synthetic_spec_dict(**kw)}))
    return path


def test_lineage_prints_a_round_table_and_results_summarises(tmp_path, capsys):
    spec = write_spec(tmp_path, rounds=2)
    lake = tmp_path / "lake"
    assert main(["lineage", str(spec), "--results", str(lake), "--quiet", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "% remaining" in out and "64.1" in out and "early-stop" in out
    assert main(["results", str(lake)]) == 0
    out = capsys.readouterr().out
    assert "adhoc" in out and "imp" in out and "finished" in out
    # run again: it resumes from the checkpoint, trains nothing and prints the same rounds
    assert main(["lineage", str(spec), "--results", str(lake), "--quiet"]) == 0
    assert "64.1" in capsys.readouterr().out
    files = list((lake / "rounds").rglob("*.parquet"))
    assert len(files) == 1 and pq.read_table(files[0]).num_rows == 3, "one folded file, no duplicate rows"


def test_bad_spec_is_one_line_and_nothing_runs(tmp_path):
    raw = synthetic_spec_dict()
    raw["train"]["lrr"] = 0.1
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    lake = tmp_path / "lake"
    proc = subprocess.run(
        [sys.executable, "-m", "study.cli", "lineage", str(path), "--results", str(lake)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "unknown key 'train.lrr'" in proc.stderr and "did you mean 'lr'" in proc.stderr
    assert not lake.exists()


def test_plan_and_empty_results(tmp_path, capsys):
    spec = write_spec(tmp_path, rounds=2)
    assert main(["plan", str(spec), "--no-estimate"]) == 0
    assert "150,528" in capsys.readouterr().out  # fc1 kept after round 2 (0.8² of 235,200), thousands separated
    assert main(["plan", str(spec), "--no-estimate", "--format", "json"]) == 0
    groups = {g["group"]: g for g in json.loads(capsys.readouterr().out)["groups"]}
    assert groups["fc1.weight"]["kept per round"] == [235200, 188160, 150528]
    assert main(["results", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no results lake at" in err


def test_every_ready_spec_validates_and_plans():
    from study.engine.plan import plan_lineage

    specs = sorted(p for p in (ROOT / "search_spaces").rglob("*.yaml") if "studies" not in p.parts)
    assert len(specs) >= 9
    for path in specs:
        spec = load_lineage_spec(path)
        plan = plan_lineage(spec)
        assert plan.rounds[0] == 0 and len(plan.rounds) >= 2, path
    lenet = load_lineage_spec(ROOT / "search_spaces/paper/lenet300_mnist.yaml")
    assert (lenet.train.lr, lenet.train.batch_size, lenet.train.iterations) == (1.2e-3, 60, 50000)
    conv6 = load_lineage_spec(ROOT / "search_spaces/paper/conv6_cifar10.yaml")
    assert conv6.prune.rates == {"conv": 0.15, "fc": 0.2, "output": 0.1} and conv6.train.lr == 3e-4


@requires_fashion_mnist
def test_fashion_mnist_lineage_end_to_end(tmp_path, capsys):
    """A short real LeNet-300-100 lineage on Fashion-MNIST through the CLI."""
    raw = yaml.safe_load((ROOT / "search_spaces/fashion_mnist/lenet300_demo.yaml").read_text())["lineage"]
    raw.update(rounds=2)
    raw["train"].update(iterations=400, eval_every=100)
    path = tmp_path / "fm.yaml"
    path.write_text(yaml.safe_dump({"lineage": raw}))
    assert main(["lineage", str(path), "--results", str(tmp_path / "lake"), "--quiet", "--threads", "1"]) == 0
    from study.lake.reader import read_rounds

    rows = read_rounds(tmp_path / "lake").table.sort_by("round").to_pylist()
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert all(r["test_acc"] > 0.75 for r in rows), [r["test_acc"] for r in rows]
    assert rows[2]["remaining_pct"] < 65


def test_every_ready_study_validates():
    from study.search.study_spec import load_study_spec

    studies = sorted((ROOT / "search_spaces" / "studies").glob("*.yaml"))
    assert len(studies) >= 4
    for path in studies:
        study = load_study_spec(path)
        assert study.search and study.base_spec().model


def test_baselines_lists_every_corpus_with_trees(capsys):
    """`study baselines`: one row per dataset with gold trees; on the English-like grammar
    right-branching is the strongest trivial tree and the binarized gold far above all."""
    assert main(["baselines", "--sentences", "400"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.startswith("│")}
    assert set(rows) == {"pcfg", "english_pcfg", "logical_inference", "listops"}
    right, left, balanced, random_, gold = (float(v) for v in rows["english_pcfg"].split("│")[3:8])
    assert max(right, left, balanced, random_) == right < 0.5 and gold > 0.85
    assert main(["baselines", "--sentences", "0"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def run_cli(*argv, columns=None):
    """`study ...` in a subprocess, its output piped (not a terminal), with COLUMNS when given."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | ({"COLUMNS": str(columns)} if columns else {})
    proc = subprocess.run([sys.executable, "-m", "study.cli", *argv], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_plan_fits_the_columns_it_is_given_and_names_every_layer_whole():
    """Piped output takes COLUMNS (it was a fixed 160); a layer is a row, its name never cut."""
    spec = str(ROOT / "search_spaces/paper/conv6_cifar10.yaml")
    for columns in (70, 120):  # at 70 the table must squeeze its numbers' headers to fit
        out = run_cli("plan", spec, "--no-estimate", columns=columns)
        assert max(len(line) for line in out.splitlines()) <= columns
        for layer in ("conv.0.weight", "conv.10.weight", "conv.12.weight", "fc1.weight", "fc3.weight"):
            assert f" {layer} " in out, layer
        assert "1,048,576" in out and "2,261,184" in out, "thousands separated (fc1, and the whole net)"


def test_plan_of_a_study_yaml_csv_json_and_version():
    import csv
    import io

    study = str(ROOT / "search_spaces/studies/fashion_mnist_demo.yaml")
    out = run_cli("plan", study, "--no-estimate", columns=120)
    assert "study fashion-mnist-demo: the plan of its base lineage" in out and "12 lineages" in out
    rows = list(csv.DictReader(io.StringIO(run_cli("plan", study, "--no-estimate", "--format", "csv"))))
    assert [int(r["round"]) for r in rows] == [0, 1, 2, 3, 4, 5]
    assert int(rows[1]["weights kept"]) == 70_560 + 9_000 + 900, "of the prunable weights: fc at 0.7, output at 0.1"
    doc = json.loads(run_cli("plan", study, "--no-estimate", "--format", "json"))
    assert {g["group"] for g in doc["groups"]} == {"fc1.weight", "fc2.weight", "fc3.weight"}
    assert run_cli("--version").startswith("study 0.1.0 (code ")


def test_a_resumed_study_counts_the_trials_it_finished_before(tmp_path):
    """`study tune` of a study whose journal already holds its trials starts its progress table
    from them (it printed "0/2 trials" before "2 complete"), and says the study is finished."""
    import optuna
    from rich.console import Console

    from study.cli import _trials_so_far
    from study.search.progress import StudyProgress
    from study.search.study_spec import load_study_spec
    from study.search.tune import optuna_storage

    path = tmp_path / "study.yaml"
    raw = {"name": "done", "base": synthetic_spec_dict(rounds=1), "budget": {"num_samples": 2}}
    raw |= {"search": {"train.lr": {"type": "log_float", "low": 1e-4, "high": 1e-2}}}
    path.write_text(yaml.safe_dump({"study": raw | {"storage": {"results": str(tmp_path / "lake")}}}))
    study = load_study_spec(path)
    assert _trials_so_far(study) == (0, 0)
    (tmp_path / "lake" / "_optuna").mkdir(parents=True)
    journal = optuna.create_study(
        study_name="done", storage=optuna_storage(str(tmp_path / "lake/_optuna/done.journal"))
    )
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    journal.add_trial(optuna.trial.create_trial(params={"train.lr": 1e-3}, distributions={"train.lr": lr}, value=50.0))
    journal.add_trial(
        optuna.trial.create_trial(
            params={"train.lr": 5e-3}, distributions={"train.lr": lr}, state=optuna.trial.TrialState.FAIL
        )
    )
    assert _trials_so_far(study) == (1, 1)
    console = Console(record=True, width=120)
    console.print(StudyProgress("objective", "min", 2, finished=1, failed=1).render())
    row = console.export_text().splitlines()[-2].split("│")
    assert [c.strip() for c in row[1:5]] == ["2/2", "0", "1", "1"], "trials, running, done, failed"


def test_the_demo_searches_only_the_ticket_and_pairs_it_with_its_control():
    """The README's demo: paired random_reinit branches, no control among the searched values, and
    prune rates that reach under 1% of the fc weights by the last round (so the 1-point tolerance
    is crossed, not cut off by the round count)."""
    from study.engine.plan import plan_lineage
    from study.search.study_spec import load_study_spec

    study = load_study_spec(ROOT / "search_spaces/studies/fashion_mnist_demo.yaml")
    base = study.base_spec()
    assert list(base.branches) == ["random_reinit"]
    controls = {"random_reinit", "random_prune"}
    assert "strategy" not in study.search or not controls & set(study.search["strategy"].choices or ())
    assert base.strategy == "imp"
    gentlest = base.replace(prune=dataclasses.replace(base.prune, rates={"fc": study.search["prune.rates.fc"].low}))
    plan = plan_lineage(gentlest)
    kept = plan.counts[-1]["fc1.weight"] / plan.counts[0]["fc1.weight"]
    assert kept == pytest.approx(0.4**5, rel=1e-3) and kept < 0.011


def test_the_time_estimate_counts_every_training_and_evaluation_of_the_plan(make_spec):
    """round_seconds by hand: a pruning round of the demo trains its trunk and its branch (1,500
    iterations each, k = 0) and evaluates each every 250 iterations and at its start."""
    from study.engine.estimate import TimeEstimate, measure
    from study.engine.plan import plan_lineage
    from study.search.study_spec import load_study_spec

    spec = load_study_spec(ROOT / "search_spaces/studies/fashion_mnist_demo.yaml").base_spec()
    plan = plan_lineage(spec)
    estimate = TimeEstimate(step_seconds=0.001, eval_seconds=0.1, threads=1, device="cpu")
    assert estimate.round_seconds(spec, plan, 0) == pytest.approx(1500 * 0.001 + (1500 / 250 + 1) * 0.1)
    assert estimate.round_seconds(spec, plan, 1) == pytest.approx(3000 * 0.001 + (3000 / 250 + 2) * 0.1)
    assert estimate.lineage_seconds(spec, plan) == pytest.approx(2.2 + 5 * 4.4)
    timed = measure(make_spec(), threads=1)
    assert timed.step_seconds > 0 and timed.eval_seconds > 0 and timed.threads == 1
