"""Old code against new, alternating in one run: each measurement a fresh process with one
source tree first on sys.path, ABAB..., so load drifts hit both alike.

    python bench/alternate.py OLD_TREE NEW_TREE [--rounds 4] [--iterations 1500]

Measures, in iterations per second of CPU time (the main thread's, one torch thread: a loaded
machine slows wall clocks far more than CPU time), LeNet-300-100 batch 60 on synthetic data: the
lone loop (`train.train`, dense and 80% masked) and a pack of 3 lineages (`train_packed`, as
`bench/gpu_pack.py` builds them), evaluation at the ends included, after a warm-up pack (the
first vmapped loss of a process imports torch's symbolic-shape machinery, about 1.2 s once)."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

_LONE = (
    "import time, torch; torch.set_num_threads(1); "
    "from study.engine.data import load_task; from study.engine.models import build_model, prunable_layers; "
    "from study.engine.spec import DataSpec, TrainSpec; from study.engine.train import train; "
    "task = load_task('synthetic', DataSpec(synthetic_size=6000, validation_size=500), batch_size=60, seed=0); "
    "model = build_model('lenet_300_100', task.input_shape, 10, seed=0); g = torch.Generator().manual_seed(0); "
    "mask = dict((n, torch.rand(p.shape, generator=g) < 0.2) for n, p in model.named_parameters() "
    "if n in prunable_layers(model)) if {masked} else None; "
    "spec = TrainSpec(lr=1.2e-3, iterations={n} + 50, batch_size=60, eval_every=10**9); "
    "train(model, task, spec, mask=mask, end=50); c = time.thread_time(); "
    "train(model, task, spec, mask=mask, start=50); r = {n} / (time.thread_time() - c)"
)
PROBES = {  # each prints iterations per second of the main thread's CPU time (one torch thread)
    "lone dense": _LONE.format(n="{n}", masked=False),
    "lone masked": _LONE.format(n="{n}", masked=True),
    "packed K=3": (
        "import time, torch; torch.set_num_threads(1); from gpu_pack import requests; "
        "from study.engine.packed_train import train_packed; "
        "train_packed(requests('lenet_300_100', 3, 5, torch.device('cpu'))); "  # warm-up: one-time imports
        "reqs = requests('lenet_300_100', 3, {n} // 5, torch.device('cpu')); c = time.thread_time(); "
        "train_packed(reqs); r = 3 * ({n} // 5) / (time.thread_time() - c)"
    ),
}


def measure(tree: str, probe: str, iterations: int) -> float:
    code = (
        f"import sys; sys.path[:0] = [{tree!r}, {tree + '/bench'!r}]; import study; "
        f"assert study.__file__.startswith({tree!r}), study.__file__; "
        + PROBES[probe].format(n=iterations)
        + "; print(r)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tree)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=1500)
    args = parser.parse_args()
    rates: dict[str, dict[str, list[float]]] = {p: {"old": [], "new": []} for p in PROBES}
    for r in range(args.rounds):
        for probe in PROBES:
            order = ("old", "new") if r % 2 == 0 else ("new", "old")
            for side in order:
                rates[probe][side].append(measure(getattr(args, side), probe, args.iterations))
            print(
                f"round {r} {probe}: old {rates[probe]['old'][-1]:.0f}, new {rates[probe]['new'][-1]:.0f} it/s",
                flush=True,
            )
    for probe, sides in rates.items():
        old, new = statistics.median(sides["old"]), statistics.median(sides["new"])
        spread = max(max(v) / min(v) for v in sides.values())
        print(
            f"{probe}: old {old:.0f} it/s, new {new:.0f} it/s (medians of {args.rounds}); new/old {new / old:.3f}; "
            f"largest max/min within one side {spread:.2f}"
        )
    print(json.dumps(rates))
    return 0


if __name__ == "__main__":
    sys.exit(main())
