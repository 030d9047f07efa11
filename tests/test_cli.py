import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
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
