"""`study lineage` against OpenLTH's `lottery` on the same work, both as whole processes.

LeNet-300-100 on Fashion-MNIST, 3 pruning levels after the dense run (4 trainings) of 3,000
iterations each (batch 60, Adam 1.2e-3), global magnitude pruning of 20% per level, rewinding to
initialisation. The two commands alternate (ours, theirs, ours, ...) so drifts of this machine's
speed fall on both; each time is a whole process from start to exit (imports, data, training,
evaluation, writing). OpenLTH is not part of this project: pass a checkout of
https://github.com/facebookresearch/open_lth that imports in this venv (plain Python; its last
commit predates torch 2 and numpy 2, so a checkout may need local fixes to run here). Its
MNIST loader reads torchvision's MNIST layout, so Fashion-MNIST's files (the same IDX format) are
placed there; its results and datasets roots follow $HOME, which is a temp folder here.

    python bench/vs_openlth.py --openlth /path/to/open_lth [--pairs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FASHION = Path("/usr/share/datasets/fashion-mnist")
LEVELS, ITERATIONS, BATCH, LR, RATE = 3, 3000, 60, 1.2e-3, 0.2

SPEC = f"""model: lenet_300_100
dataset: fashion_mnist
strategy: imp
rounds: {LEVELS}
seed: 0
prune: {{scope: global, rate: {RATE}}}
train: {{optimizer: adam, lr: {LR}, batch_size: {BATCH}, iterations: {ITERATIONS}, eval_every: 500}}
"""


def openlth_home(root: Path) -> Path:
    """A $HOME whose ~/open_lth_datasets/mnist/MNIST/raw holds Fashion-MNIST's IDX files."""
    raw = root / "open_lth_datasets" / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for gz in FASHION.glob("*-ubyte.gz"):
        with gzip.open(gz) as source, open(raw / gz.name[: -len(".gz")], "wb") as target:
            shutil.copyfileobj(source, target)
    return root


def timed(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed:\n{done.stderr[-3000:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--openlth", type=Path, required=True, help="a checkout of facebookresearch/open_lth")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for both (default 1)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not (args.openlth / "open_lth.py").is_file():
        raise SystemExit(f"{args.openlth} holds no open_lth.py: pass a checkout of facebookresearch/open_lth")
    scratch = Path(tempfile.mkdtemp(prefix="vs-openlth-"))
    spec = scratch / "lineage.yaml"
    spec.write_text(SPEC)
    home = openlth_home(scratch / "home")
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    study = str(Path(sys.executable).with_name("study"))
    theirs_argv = [
        sys.executable, "open_lth.py", "lottery", "--default_hparams=mnist_lenet_300_100", f"--levels={LEVELS}",
        f"--training_steps={ITERATIONS}it", f"--batch_size={BATCH}", "--optimizer_name=adam", f"--lr={LR}",
        f"--pruning_fraction={RATE}", "--platform=local",
    ]  # fmt: skip
    ours, theirs = [], []
    try:
        for pair in range(args.pairs):
            lake = scratch / f"lake{pair}"
            ours.append(
                timed([study, "lineage", str(spec), "--results", str(lake), "--quiet", "--threads", threads], env)
            )
            shutil.rmtree(home / "open_lth_data", ignore_errors=True)  # no cached run to skip to
            theirs.append(timed(theirs_argv, {**env, "HOME": str(home)}, cwd=args.openlth))
            print(f"pair {pair + 1}: study lineage {ours[-1]:.1f} s, OpenLTH lottery {theirs[-1]:.1f} s", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ratios = [t / o for o, t in zip(ours, theirs, strict=True)]
    summary = {
        "ours_s": ours,
        "openlth_s": theirs,
        "ratios": ratios,
        "median_ratio": statistics.median(ratios),
        "work": f"{LEVELS} levels x {ITERATIONS} its, batch {BATCH}, adam {LR}, global {RATE:.0%}",
    }
    print(
        f"study lineage median {statistics.median(ours):.1f} s, OpenLTH median {statistics.median(theirs):.1f} s; "
        f"OpenLTH / ours per pair {', '.join(f'{r:.2f}' for r in ratios)} (median {summary['median_ratio']:.2f}x)"
    )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
