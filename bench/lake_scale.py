"""The lake at 1,000 lineages: cold reads, the app's refresh and a DuckDB query.

Writes a synthetic lake with the real writer: `--lineages` lineages x `--rounds` rounds, one
Parquet file per round (what a running study leaves), with curves of the demo's length. Then, in
one run:

  1. per-file cold read: `read_rounds` over the per-round files (what every read cost before);
  2. the same lineages folded, as finished lineages now are (`fold_rounds`), and a cold read;
  3. the app's refresh after one new round lands (a `LiveLake` that has read the lake once);
  4. the app's first paint: Streamlit's AppTest running `app.py` on the folded lake;
  5. a DuckDB group-by over the per-round files and over the folded ones.

    python bench/lake_scale.py [--lineages 1000] [--rounds 20] [--keep DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import tempfile
import time
from pathlib import Path

ENV_DEFAULTS = {"RAY_AUTH_MODE": "disabled"}


def identity(trial: int, strategy: str) -> dict:
    """The columns that identify lineage `trial` (both tables carry them)."""
    return {
        "study": "scale",
        "strategy": strategy,
        "trial_id": f"t{trial:04d}-s0",
        "lineage_id": f"lin-{trial:012d}",
        "config_hash": f"{trial:016d}",
        "model": "lenet_300_100",
        "dataset": "fashion_mnist",
        "seed": 0,
    }


def round_row(trial: int, rnd: int, strategy: str, seconds: int) -> dict:
    curve = list(range(0, 5001, 500))
    return {
        **identity(trial, strategy),
        "round": rnd,
        "remaining_pct": 100.0 * 0.8**rnd,
        "layer_remaining_pct": {"fc1.weight": 100.0 * 0.8**rnd, "fc2.weight": 100.0 * 0.8**rnd},
        "group_remaining_pct": {"fc": 100.0 * 0.8**rnd, "output": 100.0 * 0.9**rnd},
        "scope": "layerwise",
        "prune_rate": 0.2 if rnd else 0.0,
        "lr": 1.2e-3,
        "rewind_iteration": 0,
        "early_stop_iteration": 4000,
        "val_acc": 0.85 + 0.0001 * rnd,
        "val_loss": 0.4,
        "test_acc": 0.84,
        "test_loss": 0.41,
        "final_val_acc": 0.85,
        "final_test_acc": 0.84,
        "final_train_loss": 0.3,
        "iterations": 5000,
        "wall_seconds": 6.0,
        "device": "cpu",
        "code_version": "bench",
        "curve_iteration": curve,
        "curve_train_loss": [0.5] * len(curve),
        "curve_val_loss": [0.4] * len(curve),
        "curve_val_acc": [0.85] * len(curve),
        "curve_test_acc": [0.84] * len(curve),
        "chance_val_acc": 0.1 if rnd == 0 else None,
        "written_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds),
    }


def lineage_row(trial: int, strategy: str, rounds: int) -> dict:
    return {
        **identity(trial, strategy),
        "status": "finished",
        "rounds_planned": rounds - 1,
        "rounds_done": rounds,
        "config_json": json.dumps({"strategy": strategy}),
        "started_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "updated_at": dt.datetime(2026, 1, 1, 1, tzinfo=dt.UTC),
    }


def write_lake(root: Path, lineages: int, rounds: int) -> None:
    from tqdm import tqdm

    from study.lake.files import write_lineage, write_round

    strategies = ("imp", "random_reinit", "lr_rewind")
    for trial in tqdm(range(lineages), desc="writing the lake", unit="lineage"):
        strategy = strategies[trial % len(strategies)]
        for rnd in range(rounds):
            write_round(root, round_row(trial, rnd, strategy, trial * rounds + rnd))
        write_lineage(root, lineage_row(trial, strategy, rounds))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def duckdb_query(root: Path) -> float:
    import duckdb

    from study.lake.reader import duckdb_rounds_sql

    _, seconds = timed(
        lambda: duckdb.sql(
            f"select strategy, round, avg(val_acc) from {duckdb_rounds_sql(root)} group by all order by all"
        ).fetchall()
    )
    return seconds


def first_paint(root: Path) -> float:
    from streamlit.testing.v1 import AppTest

    app = Path(__file__).resolve().parents[1] / "app.py"
    at = AppTest.from_file(str(app), default_timeout=300)
    at.session_state["root"] = str(root)
    _, seconds = timed(at.run)
    assert not at.exception, at.exception
    return seconds


def main() -> None:
    import os

    for k, v in ENV_DEFAULTS.items():
        os.environ.setdefault(k, v)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lineages", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--keep", help="write the lake here and keep it (default: a temporary folder)")
    args = ap.parse_args()

    from study.app.lake import LiveLake
    from study.lake.files import fold_rounds, write_round
    from study.lake.reader import read_rounds

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lake-scale-"))
    try:
        write_lake(root, args.lineages, args.rounds)
        n_files = sum(1 for _ in (root / "rounds").rglob("*.parquet"))
        per_file, per_file_s = timed(lambda: read_rounds(root))
        duck_per_file = duckdb_query(root)
        print(
            f"lake: {args.lineages} lineages x {args.rounds} rounds = {per_file.table.num_rows} rows in {n_files} round files"
        )
        print(f"(1) cold read, one file per round:          {per_file_s:6.2f} s")

        strategies = ("imp", "random_reinit", "lr_rewind")
        _, fold_s = timed(
            lambda: [
                fold_rounds(root, "scale", strategies[t % len(strategies)], f"t{t:04d}-s0")
                for t in range(args.lineages)
            ]
        )
        n_folded = sum(1 for _ in (root / "rounds").rglob("*.parquet"))
        folded, folded_s = timed(lambda: read_rounds(root))
        assert folded.table.num_rows == per_file.table.num_rows and not folded.skipped
        print(f"    folding every lineage (as each finishes): {fold_s:6.2f} s in all -> {n_folded} files")
        print(f"(2) cold read, folded lineages:             {folded_s:6.2f} s   ({per_file_s / folded_s:.1f}x faster)")

        live = LiveLake(root)
        _, live_first_s = timed(live.current)
        write_round(root, round_row(args.lineages, 0, "imp", 10**7))  # a new lineage's first round lands
        lake, refresh_s = timed(live.current)
        assert len(lake.rounds) == per_file.table.num_rows + 1 and live.reader.files_read == 1
        print(f"(3) app refresh after one new round:        {refresh_s:6.2f} s   (first read {live_first_s:.2f} s)")
        paint_s = first_paint(root)
        print(f"(4) app first paint (AppTest, app.py):      {paint_s:6.2f} s")
        print(f"(5) DuckDB group-by: per-round files {duck_per_file:.2f} s, folded {duckdb_query(root):.2f} s")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
