"""The lake reader: which files it reads, how it names the ones it skips, and which copy of a
duplicated row it keeps (newest written_at / updated_at, then the later file), in what order."""

import datetime as dt

import pyarrow.parquet as pq

from study.lake import store
from study.lake.files import to_table, trial_files, write_atomic
from study.lake.reader import read_lineages, read_rounds, table_files
from study.lake.schema import LINEAGES_SCHEMA, ROUNDS_SCHEMA


def at(hour):
    return dt.datetime(2026, 3, 1, hour, tzinfo=dt.UTC)


def rnd(trial, lineage, round_, hour, acc, study="s", strategy="imp"):
    return {
        "study": study,
        "strategy": strategy,
        "trial_id": trial,
        "lineage_id": lineage,
        "config_hash": "h",
        "round": round_,
        "val_acc": acc,
        "written_at": at(hour),
    }


def put(root, rel, rows, schema=ROUNDS_SCHEMA):
    return write_atomic(to_table(rows, schema), root / rel)


R = "rounds/study=s/strategy=imp"


def test_newest_copy_wins_then_the_later_file_and_rows_keep_file_order(tmp_path):
    # file order: compact-a < t1-r000 < t1-r001 < t2-r000
    put(
        tmp_path,
        f"{R}/compact-a.parquet",
        [
            rnd("t1", "L1", 0, 10, 0.125),  # row 0
            rnd("t1", "L1", 1, 12, 0.25),  # row 1: newer than t1-r001
            rnd("t2", "L2", 0, 10, 0.375),
        ],
    )  # row 2: same time as t2-r000
    put(tmp_path, f"{R}/t1-r000.parquet", [rnd("t1", "L1", 0, 11, 0.5)])  # row 3: newer than row 0
    put(tmp_path, f"{R}/t1-r001.parquet", [rnd("t1", "L1", 1, 11, 0.625)])  # row 4: older than row 1
    put(tmp_path, f"{R}/t2-r000.parquet", [rnd("t2", "L2", 0, 10, 0.75)])  # row 5: tie, later file wins
    read = read_rounds(tmp_path)
    assert read.files == 4 and read.skipped == []
    got = [(r["trial_id"], r["round"], r["val_acc"]) for r in read.table.to_pylist()]
    assert got == [("t1", 1, 0.25), ("t1", 0, 0.5), ("t2", 0, 0.75)]  # rows 1, 3, 5 in that order


def test_two_copies_of_one_row_read_as_one_and_lineages_are_never_merged(tmp_path):
    put(tmp_path, f"{R}/a.parquet", [rnd("t", "L1", 0, 9, 0.25)])
    put(tmp_path, f"{R}/b.parquet", [rnd("t", "L1", 0, 8, 0.5)])
    assert [r["val_acc"] for r in read_rounds(tmp_path).table.to_pylist()] == [0.25]
    put(tmp_path, f"{R}/c.parquet", [rnd("t", "L2", 0, 7, 0.75)])  # same trial and round, another lineage
    put(tmp_path, "rounds/study=s/strategy=random_prune/d.parquet", [rnd("t", "L1", 1, 7, 0.875)])
    got = [(r["lineage_id"], r["round"], r["val_acc"]) for r in read_rounds(tmp_path).table.to_pylist()]
    assert got == [("L1", 0, 0.25), ("L2", 0, 0.75), ("L1", 1, 0.875)]


def lin(trial, hour, status, study="s"):
    return {
        "study": study,
        "strategy": "imp",
        "trial_id": trial,
        "lineage_id": "L",
        "config_hash": "h",
        "status": status,
        "updated_at": at(hour),
    }


def test_lineages_keep_the_latest_update(tmp_path):
    L = "lineages/study=s/strategy=imp"
    put(tmp_path, f"{L}/a.parquet", [lin("t1", 12, "finished"), lin("t2", 10, "running")], LINEAGES_SCHEMA)
    put(tmp_path, f"{L}/t1.parquet", [lin("t1", 11, "running")], LINEAGES_SCHEMA)
    put(tmp_path, f"{L}/t2.parquet", [lin("t2", 11, "failed")], LINEAGES_SCHEMA)
    put(tmp_path, "lineages/study=other/strategy=imp/t1.parquet", [lin("t1", 13, "stopped", "other")], LINEAGES_SCHEMA)
    read = read_lineages(tmp_path, "s")
    assert read.files == 3
    assert [(r["trial_id"], r["status"]) for r in read.table.to_pylist()] == [("t1", "finished"), ("t2", "failed")]
    everything = read_lineages(tmp_path).table.to_pylist()
    assert [(r["study"], r["trial_id"], r["status"]) for r in everything] == [
        ("other", "t1", "stopped"),
        ("s", "t1", "finished"),
        ("s", "t2", "failed"),
    ]


def test_study_filter_and_an_empty_lake(tmp_path):
    assert read_rounds(tmp_path).table.num_rows == 0 and read_rounds(tmp_path).files == 0
    assert read_rounds(tmp_path).table.schema == ROUNDS_SCHEMA
    assert read_lineages(tmp_path).table.schema == LINEAGES_SCHEMA
    put(tmp_path, f"{R}/t-r000.parquet", [rnd("t", "L", 0, 1, 0.25)])
    put(tmp_path, "rounds/study=s2/strategy=imp/t-r000.parquet", [rnd("t", "L", 0, 1, 0.5, study="s2")])
    assert [r["val_acc"] for r in read_rounds(tmp_path, "s").table.to_pylist()] == [0.25]
    assert [r["val_acc"] for r in read_rounds(tmp_path, "s2").table.to_pylist()] == [0.5]
    assert [r["val_acc"] for r in read_rounds(tmp_path).table.to_pylist()] == [0.25, 0.5]
    assert read_rounds(tmp_path, "nope").files == 0


def test_corrupt_files_are_skipped_and_named_with_the_first_line_of_the_error(tmp_path, monkeypatch):
    put(tmp_path, f"{R}/a-r000.parquet", [rnd("a", "L", 0, 1, 0.25)])
    bad = tmp_path / R / "b-r000.parquet"
    bad.write_bytes(b"PAR1 not parquet")
    silent = tmp_path / R / "c-r000.parquet"
    silent.write_bytes(b"")
    real = pq.read_table

    def read_table(path, **kw):
        if path == str(silent):
            raise OSError("")  # an error with no message: named by its type
        if path == str(bad):
            raise OSError("\n  first line\nsecond line")
        return real(path, **kw)

    monkeypatch.setattr(store.pq, "read_table", read_table)
    read = read_rounds(tmp_path)
    assert read.files == 3
    assert read.skipped == [f"{bad}: first line", f"{silent}: OSError"]
    assert [r["val_acc"] for r in read.table.to_pylist()] == [0.25]


def test_only_corrupt_files_give_an_empty_table_that_still_names_them(tmp_path):
    bad = tmp_path / R / "b-r000.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"PAR1 not parquet")
    read = read_rounds(tmp_path)
    assert read.files == 1 and read.table.num_rows == 0 and read.table.schema == ROUNDS_SCHEMA
    assert len(read.skipped) == 1 and read.skipped[0].startswith(f"{bad}: ") and "\n" not in read.skipped[0]
    assert len(read.skipped[0]) > len(f"{bad}: ")


def touch(root, rel):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_files_ignores_dot_and_underscore_paths_and_is_sorted(tmp_path):
    want = [
        touch(tmp_path, f"{R}/z-r000.parquet"),
        touch(tmp_path, f"{R}/a-r000.parquet"),
        touch(tmp_path, "rounds/study=s/strategy=grasp/a-r000.parquet"),
        touch(tmp_path, "rounds/study=s2/strategy=imp/a-r000.parquet"),
    ]
    for rel in (
        f"{R}/.a-r001.parquet",
        f"{R}/_a-r002.parquet",
        f"{R}/_tmp/a-r003.parquet",
        f"{R}/.staging/a-r004.parquet",
        "rounds/_superseded/study=s/strategy=imp/a-r000.parquet",
        "rounds/.trash/a-r000.parquet",
        f"{R}/a-r000.json",
        "lineages/study=s/strategy=imp/a.parquet",
    ):
        touch(tmp_path, rel)
    base = tmp_path / "rounds"
    assert table_files(tmp_path, "rounds", None) == [
        str(base / "study=s/strategy=grasp/a-r000.parquet"),
        str(base / "study=s/strategy=imp/a-r000.parquet"),
        str(base / "study=s/strategy=imp/z-r000.parquet"),
        str(base / "study=s2/strategy=imp/a-r000.parquet"),
    ]
    assert table_files(tmp_path, "rounds", "s2") == [str(want[3])]
    assert table_files(tmp_path, "rounds", "missing") == []
    assert table_files(tmp_path / "nowhere", "rounds", None) == []
    # a root folder that itself starts with "_" or "." is fine: only paths below the table count
    inner = tmp_path / "_lake" / ".x"
    touch(inner, f"{R}/a-r000.parquet")
    assert table_files(inner, "rounds", "s") == [str(inner / R / "a-r000.parquet")]


def test_trial_files_finds_every_strategy_and_nothing_else(tmp_path):
    for rel in (
        "rounds/study=s/strategy=imp/t1-r000.parquet",
        "rounds/study=s/strategy=imp/t1-r012.parquet",
        "rounds/study=s/strategy=grasp/t1-r001.parquet",
        "lineages/study=s/strategy=imp/t1.parquet",
        # not t1's, or not a round/lineage file:
        "rounds/study=s/strategy=imp/t10-r000.parquet",
        "rounds/study=s/strategy=imp/t1-r0001.parquet",
        "rounds/study=s/strategy=imp/t1-rabc.parquet",
        "rounds/study=s/strategy=imp/compact-x.parquet",
        "rounds/study=s2/strategy=imp/t1-r000.parquet",
        "lineages/study=s/strategy=imp/t10.parquet",
        "lineages/study=s2/strategy=imp/t1.parquet",
    ):
        touch(tmp_path, rel)
    assert trial_files(tmp_path, "s", "t1") == [
        f"{tmp_path}/lineages/study=s/strategy=imp/t1.parquet",
        f"{tmp_path}/rounds/study=s/strategy=grasp/t1-r001.parquet",
        f"{tmp_path}/rounds/study=s/strategy=imp/t1-r000.parquet",
        f"{tmp_path}/rounds/study=s/strategy=imp/t1-r012.parquet",
    ]
    assert trial_files(str(tmp_path), "s", "nobody") == []


def test_a_foreign_parquet_file_is_skipped_and_named_and_later_files_still_read(tmp_path):
    import pyarrow as pa

    foreign = tmp_path / R / "a-foreign.parquet"
    foreign.parent.mkdir(parents=True)
    pq.write_table(pa.table({"x": [1, 2]}), foreign)
    put(tmp_path, f"{R}/b-r000.parquet", [rnd("b", "L", 0, 1, 0.25)])
    read = read_rounds(tmp_path)
    assert read.skipped == [
        f"{foreign}: not a rounds file (no study, strategy, trial_id, lineage_id, config_hash, round)"
    ]
    assert read.files == 2 and [r["val_acc"] for r in read.table.to_pylist()] == [0.25]
