import datetime as dt
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from study.engine.lineage import RunContext
from study.errors import SpecError
from study.lake.compact import compact
from study.lake.files import round_path, write_round
from study.lake.reader import duckdb_rounds_sql, read_lineages, read_rounds
from study.lake.recorder import run_to_lake
from study.lake.schema import LINEAGES_SCHEMA, ROUNDS_SCHEMA, SCHEMA_VERSION


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """A small real lake: two strategies, two seeds each, written by the engine."""
    from conftest import synthetic_spec_dict

    from study.engine.spec import lineage_spec_from_dict

    root = tmp_path_factory.mktemp("lake")
    for strategy in ("imp", "random_reinit"):
        for seed in (0, 1):
            spec = lineage_spec_from_dict(synthetic_spec_dict(strategy=strategy, seed=seed, rounds=2))
            run_to_lake(spec, root, study="demo", context=RunContext(threads=1))
    return root


def test_each_finished_lineage_is_one_file_with_schema_version(lake):
    files = sorted((lake / "rounds").rglob("*.parquet"))
    assert len(files) == 4 and all(p.name.endswith(".rounds.parquet") for p in files)
    assert [pq.read_table(p).num_rows for p in files] == [3, 3, 3, 3]
    assert not [p for p in lake.rglob(".*") if p.is_file()], "no temp files left behind"
    meta = pq.read_schema(files[0]).metadata
    assert meta[b"study.schema_version"] == SCHEMA_VERSION.encode()
    assert files[0].parent.name.startswith("strategy=")


def test_reader_applies_canonical_schema(lake):
    read = read_rounds(lake)
    assert read.table.schema.equals(ROUNDS_SCHEMA, check_metadata=False)
    assert read.table.num_rows == 12 and not read.skipped
    df = read.table.to_pandas()
    assert set(df["strategy"].astype(str)) == {"imp", "random_reinit"}
    assert df["val_perplexity"].isna().all()
    lineages = read_lineages(lake).table
    assert lineages.schema.equals(LINEAGES_SCHEMA, check_metadata=False)
    assert set(lineages["status"].to_pylist()) == {"finished"}
    assert set(lineages["rounds_planned"].to_pylist()) == {2}


def test_duckdb_reads_the_lake_with_hive_partitioning(lake):
    con = duckdb.connect()
    rows = con.sql(
        f"select strategy, count(*) as n, min(remaining_pct) as lo from {duckdb_rounds_sql(lake)} "
        f"group by strategy order by strategy"
    ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [("imp", 6), ("random_reinit", 6)]
    assert rows[0][2] == pytest.approx(64.06, abs=0.01)
    study = con.sql(f"select distinct study from {duckdb_rounds_sql(lake)}").fetchall()
    assert study == [("demo",)]
    per_layer = con.sql(
        f"select layer_remaining_pct['fc3.weight'] from {duckdb_rounds_sql(lake)} where round = 1 limit 1"
    ).fetchall()[0][0]
    assert per_layer == pytest.approx(90.0)


def test_pandas_reads_the_lake_directly(lake):
    df = pd.read_parquet(lake / "rounds")
    assert len(df) == 12 and set(df["study"].astype(str)) == {"demo"}
    assert df.groupby("strategy", observed=True).size().to_dict() == {"imp": 6, "random_reinit": 6}


def _row(**kw):
    base = {
        "study": "s",
        "strategy": "imp",
        "trial_id": "t1",
        "lineage_id": "lin-x",
        "config_hash": "h",
        "round": 0,
        "remaining_pct": 100.0,
        "test_acc": 0.5,
        "written_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    }
    return {**base, **kw}


def test_a_rerun_round_replaces_its_own_file(tmp_path):
    write_round(tmp_path, _row(test_acc=0.5))
    write_round(tmp_path, _row(test_acc=0.7, written_at=dt.datetime(2026, 1, 2, tzinfo=dt.UTC)))
    table = read_rounds(tmp_path).table
    assert table.num_rows == 1 and table["test_acc"][0].as_py() == 0.7


def test_corrupt_and_foreign_files_are_skipped_and_named(tmp_path):
    write_round(tmp_path, _row())
    bad = Path(round_path(tmp_path, "s", "imp", "t2", 0))
    bad.write_bytes(b"PAR1 this is not parquet")
    half = Path(round_path(tmp_path, "s", "imp", "t3", 0))
    good = Path(round_path(tmp_path, "s", "imp", "t1", 0)).read_bytes()
    half.write_bytes(good[: len(good) // 2])
    read = read_rounds(tmp_path)
    assert read.table.num_rows == 1 and read.files == 3
    assert len(read.skipped) == 2 and any("t2-r000" in s for s in read.skipped)


def test_old_files_missing_new_columns_read_as_nulls(tmp_path):
    old = ROUNDS_SCHEMA.remove(ROUNDS_SCHEMA.get_field_index("parse_f1"))
    path = Path(round_path(tmp_path, "s", "imp", "old", 0))
    path.parent.mkdir(parents=True)
    from study.lake.files import to_table

    pq.write_table(to_table([_row(trial_id="old")], old), path)
    write_round(tmp_path, _row(trial_id="new", parse_f1={"layer1": 0.4}))
    table = read_rounds(tmp_path).table.sort_by("trial_id")
    assert table["parse_f1"].to_pylist() == [[("layer1", 0.4)], None]
    con = duckdb.connect()
    n = con.sql(f"select count(*) from {duckdb_rounds_sql(tmp_path)}").fetchall()[0][0]
    assert n == 2


def test_orphan_lineage_without_final_row_is_tolerated(tmp_path):
    from study.lake.files import write_lineage

    write_lineage(
        tmp_path,
        {
            "study": "s",
            "strategy": "imp",
            "trial_id": "orphan",
            "lineage_id": "l",
            "config_hash": "h",
            "status": "running",
            "rounds_done": 0,
        },
    )
    read = read_lineages(tmp_path)
    assert read.table.num_rows == 1 and read_rounds(tmp_path).table.num_rows == 0
    with pytest.raises(ValueError, match="status"):
        write_lineage(
            tmp_path,
            {
                "study": "s",
                "strategy": "imp",
                "trial_id": "x",
                "lineage_id": "l",
                "config_hash": "h",
                "status": "weird",
            },
        )


def test_compact_rewrites_a_finished_study_into_one_file_per_strategy(lake, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(lake, root)
    before = read_rounds(root).table.sort_by([("trial_id", "ascending"), ("round", "ascending")])
    written = compact(root, "demo")
    assert written == {"imp": 6, "random_reinit": 6}
    files = sorted((root / "rounds").rglob("*.parquet"))
    assert len(files) == 2 and all(f.name.startswith("compact-") for f in files)
    after = read_rounds(root).table.sort_by([("trial_id", "ascending"), ("round", "ascending")])
    assert after.equals(before)
    n = duckdb.connect().sql(f"select count(*) from {duckdb_rounds_sql(root)}").fetchall()[0][0]
    assert n == 12


def test_rows_reject_unknown_columns(tmp_path):
    with pytest.raises(ValueError, match="not in the schema"):
        write_round(tmp_path, _row(bogus=1))
    with pytest.raises(ValueError, match="is not allowed"):
        write_round(tmp_path, _row(study="../evil"))


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_an_interrupted_lineage_is_filed_stopped_and_a_rerun_resumes_it(tmp_path, interrupt):
    """Ctrl-C, or a task being stopped, is not a failure (failed lineages leave every summary):
    the lineage is filed 'stopped' with why, and the same run resumes and finishes it."""
    from conftest import synthetic_spec_dict

    from study.engine.spec import lineage_spec_from_dict
    from study.lake.recorder import LakeLineage

    spec = lineage_spec_from_dict(synthetic_spec_dict(rounds=2))

    def stop_at_round_1(result):
        if result.round == 1:
            raise interrupt()

    lineage = LakeLineage(spec, tmp_path, study="s", trial_id="t", on_round=stop_at_round_1).open()
    with pytest.raises(interrupt):
        list(lineage)
    (row,) = read_lineages(tmp_path, "s").table.to_pylist()
    assert row["status"] == "stopped" and f"interrupted ({interrupt.__name__})" in row["error"]
    rounds = run_to_lake(spec, tmp_path, study="s", trial_id="t")
    assert [r.round for r in rounds] == [0, 1, 2]
    assert read_lineages(tmp_path, "s").table.to_pylist()[0]["status"] == "finished"


def test_a_lineage_is_filed_finished_before_its_last_row_is_handed_on(tmp_path):
    """Whoever receives a lineage's last row (a trial, which may be stopped at that report and
    kill the task) finds it filed finished and folded already: a lineage with every round in the
    lake is never left 'running' to be filed 'stopped'."""
    from conftest import synthetic_spec_dict

    from study.engine.spec import lineage_spec_from_dict
    from study.lake.recorder import LakeLineage

    lineage = LakeLineage(
        lineage_spec_from_dict(synthetic_spec_dict(rounds=2)), tmp_path, study="s", context=RunContext(threads=1)
    ).open()
    statuses = []
    for row in lineage:
        (status,) = read_lineages(tmp_path, "s").table.to_pylist()
        statuses.append((row.round, status["status"], status["rounds_done"]))
    assert statuses == [(0, "running", 1), (1, "running", 2), (2, "finished", 3)]
    assert len(list(tmp_path.glob("rounds/study=s/strategy=imp/*.rounds.parquet"))) == 1
    (status,) = read_lineages(tmp_path, "s").table.to_pylist()
    assert status["status"] == "finished"


def test_a_lake_lineage_writes_nothing_until_it_is_opened(tmp_path):
    """Building a LakeLineage checks its names and resolves where it lives, nothing more: no
    folder, no status row, no probe. `open()` runs the checks and files it 'running'."""
    from conftest import synthetic_spec_dict

    from study.engine.spec import lineage_spec_from_dict
    from study.lake.recorder import LakeLineage

    lake = tmp_path / "lake"
    lineage = LakeLineage(lineage_spec_from_dict(synthetic_spec_dict(rounds=1)), lake, study="s", trial_id="t")
    assert not lake.exists() and lineage.workdir == lake / "_checkpoints" / "study=s" / "t"
    with pytest.raises(SpecError, match="trial id 'bad/name' is not allowed"):
        LakeLineage(lineage_spec_from_dict(synthetic_spec_dict(rounds=1)), lake, trial_id="bad/name")
    assert lineage.open() is lineage
    (row,) = read_lineages(lake, "s").table.to_pylist()
    assert (row["status"], row["rounds_done"]) == ("running", 0)
