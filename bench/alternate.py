"""Old code against new, alternating in one run: each measurement a fresh process with one
source tree first on sys.path, ABAB..., so load drifts hit both alike.

    python bench/alternate.py OLD_TREE NEW_TREE [--rounds 4] [--iterations 1500]

Measures (one CPU thread each): the lone loop (`bench/train_throughput.project_loop`, dense and
80% masked) and a pack of 3 LeNet-300-100 lineages (`bench/gpu_pack.packed_rate` on CPU)."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

PROBES = {
    "lone dense": "from train_throughput import project_loop as f; r = f({n})",
    "lone masked": "from train_throughput import project_loop as f; r = f({n}, True)",
    "packed K=3": (
        "import torch; torch.set_num_threads(1); from gpu_pack import packed_rate as f; "
        "r = f('lenet_300_100', 3, {n} // 5, torch.device('cpu'))"
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
