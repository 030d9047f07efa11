"""Compare two results lakes row by row: did a change of the code change what a study writes?

Every table of `schema.TABLES` is read from both lakes (the canonical reader) and its rows are
matched by a key that holds no run-specific id: (study, optuna trial number, lineage id, seed,
branch, round) for the per-round tables, (study, optuna trial number, lineage id) for lineages,
the study for studies. Then every column is compared exactly, but those a re-run necessarily
changes: timestamps, wall times, the Tune trial id (random per run), the Ray node id, the code
version, and in the study row the storage paths. Floats must be equal bit for bit (same
machine, same code path); use --rel for a tolerance.

    python bench/compare_lakes.py BEFORE_LAKE AFTER_LAKE [--study NAME] [--rel 0]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from study.lake.reader import read_table
from study.lake.schema import TABLES

RUN_SPECIFIC = {"written_at", "updated_at", "started_at", "wall_seconds", "trial_id", "node_id", "code_version"}


def _number_of(lineages: list[dict]) -> dict[str, Any]:
    return {r["trial_id"]: r["optuna_trial_number"] for r in lineages}


def _key(kind: str, row: dict, number: dict[str, Any]) -> tuple:
    trial = number.get(row.get("trial_id"), row.get("trial_id"))
    if kind == "studies":
        return (row["study"],)
    if kind == "lineages":
        return (row["study"], trial, row["lineage_id"])
    return (row["study"], trial, row["lineage_id"], row["seed"], row.get("branch"), row["round"])


def _comparable(kind: str, row: dict) -> dict:
    out = {k: v for k, v in row.items() if k not in RUN_SPECIFIC}
    if kind == "studies" and out.get("spec_json"):
        spec = json.loads(out["spec_json"])
        spec.pop("storage", None)  # where the lake lives differs by design
        out["spec_json"] = spec
    return out


def _same(a: Any, b: Any, rel: float) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return True
        return a == b if rel == 0 else math.isclose(a, b, rel_tol=rel, abs_tol=rel)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y, rel) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], rel) for k in a)
    return a == b


def compare(before: str, after: str, study: str | None, rel: float) -> tuple[list[str], dict[str, tuple[int, int]]]:
    """The differences found, and per table (rows compared, columns compared)."""
    problems: list[str] = []
    counted: dict[str, tuple[int, int]] = {}
    lineages = {
        side: read_table(root, "lineages", study).table.to_pylist() for side, root in (("a", before), ("b", after))
    }
    numbers = {**_number_of(lineages["a"]), **_number_of(lineages["b"])}  # Tune trial ids are unique per run
    for kind in TABLES:
        sides = []
        for root in (before, after):
            read = read_table(root, kind, study)
            problems += [f"{root}: unreadable {p}" for p in read.skipped]
            sides.append({_key(kind, r, numbers): _comparable(kind, r) for r in read.table.to_pylist()})
        a, b = sides
        if a.keys() != b.keys():
            problems.append(
                f"{kind}: rows only before {sorted(a.keys() - b.keys())[:3]}, only after {sorted(b.keys() - a.keys())[:3]}"
            )
        columns = set()
        for key in sorted(a.keys() & b.keys(), key=repr):
            for column in a[key].keys() | b[key].keys():
                columns.add(column)
                if not _same(a[key].get(column), b[key].get(column), rel):
                    problems.append(f"{kind} {key}: {column} {a[key].get(column)!r} != {b[key].get(column)!r}")
        counted[kind] = (len(a.keys() & b.keys()), len(columns))
    return problems, counted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--study")
    parser.add_argument("--rel", type=float, default=0.0, help="relative tolerance for floats (default: exact)")
    args = parser.parse_args()
    problems, counted = compare(args.before, args.after, args.study, args.rel)
    for kind, (rows, columns) in counted.items():
        print(f"{kind}: {rows} rows x {columns} columns compared (excluded: {', '.join(sorted(RUN_SPECIFIC))})")
    for p in problems[:50]:
        print("DIFF", p)
    print(f"{len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
