"""How long a study takes to start working: from `study tune` starting (a whole process, as a
user runs it) to its first lineage's first training step, and to the end of that short study.

A study of 2 trials x 2 seeds of LeNet-300-100 on Fashion-MNIST (1 round, 200 iterations) on a
local Ray with 2 CPUs. The first training step's time is read from the lake: a round row's
`written_at` minus its `wall_seconds` is when its training started (the data were loaded and
the model built before). Runs alternate with `--runs`; medians are printed.

    python bench/study_startup.py [--runs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUDY = """study:
  name: startup
  sampler: grid
  max_concurrent: 2
  seeds: [0, 1]
  budget: {{num_samples: 2}}
  resources: {{cpu: 1}}
  storage: {{results: {root}}}
  search:
    prune.rates.fc: {{type: categorical, choices: [0.2, 0.3]}}
  base:
    model: lenet_300_100
    dataset: fashion_mnist
    strategy: imp
    rounds: 1
    train: {{optimizer: adam, lr: 1.2e-3, batch_size: 60, iterations: 200, eval_every: 200}}
"""


def one_run(scratch: Path) -> dict[str, float]:
    import pyarrow.parquet as pq

    root = scratch / "lake"
    shutil.rmtree(root, ignore_errors=True)
    spec = scratch / "study.yaml"
    spec.write_text(STUDY.format(root=root))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ""}
    study = str(Path(sys.executable).with_name("study"))
    start = time.time()
    done = subprocess.run([study, "tune", str(spec)], env=env, capture_output=True, text=True)
    end = time.time()
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    rows = [r for p in (root / "rounds").rglob("*.parquet") for r in pq.read_table(p).to_pylist()]
    starts = sorted(r["written_at"].timestamp() - r["wall_seconds"] for r in rows)
    return {"first_step_s": starts[0] - start, "last_start_s": starts[-1] - start, "total_s": end - start}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="study-startup-"))
    runs = []
    try:
        for i in range(args.runs):
            runs.append(one_run(scratch))
            r = runs[-1]
            print(
                f"run {i + 1}: first training step after {r['first_step_s']:.1f} s, last lineage's after "
                f"{r['last_start_s']:.1f} s, study done after {r['total_s']:.1f} s",
                flush=True,
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    medians = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print("median: " + ", ".join(f"{k} {v:.1f}" for k, v in medians.items()))
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "medians": medians}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
