"""The benchmarks are not run by the suite, but what they ask of the platform is checked here, so
a change that makes a benchmark's spec invalid fails a test instead of the next benchmark run."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_overhead_benchmark_study_is_valid_and_matches_its_bare_lineages(tmp_path):
    bench = load("study_overhead")
    study = bench.overhead_study(4, 3, 3000, str(tmp_path))
    configs = [study.lineage_spec({"data.split_seed": s}, seed=0) for s in range(4)]
    from study.engine.spec import lineage_spec_from_dict

    bare = [lineage_spec_from_dict(bench.base_lineage(3, 3000, s)) for s in range(4)]
    assert [c.lineage_id() for c in configs] == [b.lineage_id() for b in bare]  # the same work both ways
    assert len({c.lineage_id() for c in configs}) == 4


def test_the_unequal_trials_benchmark_study_is_valid(tmp_path):
    bench = load("study_overhead")
    study = bench.unequal_study(3, 3000, str(tmp_path))
    specs = [study.lineage_spec({"strategy": s}, seed) for s in ("imp", "random_reinit") for seed in study.seeds]
    assert len({s.lineage_id() for s in specs}) == 6
    halves = bench.balanced_halves([s.to_dict() for s in specs])
    assert sorted(len(h) for h in halves) == [3, 3]  # balanced by work: 2 random_reinit + 1 imp against 1 + 2


def test_the_packed_throughput_benchmark_runs_on_cpu_at_small_k(tmp_path):
    """bench/gpu_pack.py on CPU: a lineage per process, then packs of 1 and 2, one LeNet each."""
    import json
    import subprocess
    import sys

    out = tmp_path / "pack.json"
    argv = ["--device", "cpu", "--models", "lenet_300_100", "--ks", "1,2", "--procs", "1", "--iterations", "20"]
    run = subprocess.run([sys.executable, str(BENCH / "gpu_pack.py"), *argv, "--json", str(out)], capture_output=True)
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    figures = json.loads(out.read_text())["figures"]
    assert [(f["model"], f["k"]) for f in figures] == [("lenet_300_100", 1), ("lenet_300_100", 2)]
    assert all(f["rate"] > 0 and f["one_per_process"] > 0 for f in figures)
