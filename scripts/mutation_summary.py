"""Per-module kill summary of the last `mutmut run` (read from mutants/**/*.py.meta).

    python scripts/mutation_summary.py [GLOB ...]

Only mutants whose names match one of the GLOBs (fnmatch, as given to `mutmut run`) are counted;
no GLOB counts all. Prints killed/survived/other/total and the kill rate per module, then every
mutant that was not killed. Exits 0 whatever the score: this is a report, not a gate.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from fnmatch import fnmatch
from pathlib import Path

# mutmut 3's exit codes (mutmut/stats.py): 1 and 3 are kills, 0 a survivor, None not run.
KILLED = {
    1: "killed",
    3: "killed",
    0: "survived",
    None: "not checked",
    33: "no tests",
    5: "no tests",
    34: "skipped",
    36: "timeout",
    24: "timeout",
    -24: "timeout",
    152: "timeout",
    255: "timeout",
    37: "caught by type check",
    -9: "segfault",
    -11: "segfault",
}


def main(globs: list[str]) -> int:
    by_module: dict[str, Counter] = defaultdict(Counter)
    not_killed: list[tuple[str, str]] = []
    for meta in sorted(Path("mutants").rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        for name, code in codes.items():
            if globs and not any(fnmatch(name, g) for g in globs):
                continue
            status = KILLED.get(code, "suspicious")
            module = name.split(".x", 1)[0]
            by_module[module][status] += 1
            if status != "killed":
                not_killed.append((name, status))
    if not by_module:
        print("no mutation results: run `make mutants` (mutmut run) first")
        return 1
    print(f"{'module':<20} {'killed':>7} {'survived':>9} {'other':>6} {'total':>6} {'kill rate':>10}")
    totals: Counter = Counter()
    for module, c in sorted(by_module.items()):
        totals.update(c)
        _row(module, c)
    _row("all", totals)
    if not_killed:
        print("\nnot killed:")
        for name, status in not_killed:
            print(f"    {name}: {status}")
    return 0


def _row(label: str, c: Counter) -> None:
    total = sum(c.values())
    other = total - c["killed"] - c["survived"]
    print(f"{label:<20} {c['killed']:>7} {c['survived']:>9} {other:>6} {total:>6} {100.0 * c['killed'] / total:>9.1f}%")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
