"""The incremental reader returns exactly what a full read returns (same rows, same order, same
skipped files) after every kind of change a lake sees, and reads only what changed."""

import datetime as dt
import shutil
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from study.lake.files import lineage_path, round_path, write_atomic, write_lineage, write_round
from study.lake.incremental import IncrementalLake
from study.lake.reader import read_lineages, read_rounds, read_studies

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def identity(trial, strategy):
    return {"study": "s", "strategy": strategy, "trial_id": trial, "lineage_id": f"lin-{trial}", "config_hash": "h"}


def round_row(trial, rnd, strategy="imp", acc=0.5, seconds=0):
    return {
        **identity(trial, strategy),
        "round": rnd,
        "remaining_pct": 100.0 * 0.8**rnd,
        "val_acc": acc,
        "test_acc": acc,
        "curve_iteration": [0, 10, 20],
        "layer_remaining_pct": {"fc1.weight": 100.0 * 0.8**rnd},
        "written_at": T0 + dt.timedelta(seconds=seconds),
    }


def lineage_row(trial, status, strategy="imp", seconds=0):
    return {
        **identity(trial, strategy),
        "status": status,
        "rounds_done": 1,
        "updated_at": T0 + dt.timedelta(seconds=seconds),
    }


def raising(error):
    """A stand-in for a function that fails with `error`."""

    def fail(*args, **kwargs):
        raise error

    return fail


def same_as_full_read(lake, root):
    reads, _ = lake.refresh()
    for kind, full in (
        ("rounds", read_rounds(root)),
        ("lineages", read_lineages(root)),
        ("studies", read_studies(root)),
    ):
        assert reads[kind].table.equals(full.table), kind
        assert reads[kind].skipped == full.skipped, kind
        assert reads[kind].files == full.files, kind
    return reads


def test_the_incremental_reader_equals_a_full_read_after_every_kind_of_change(tmp_path):
    for trial, strategy in (("a", "imp"), ("b", "imp"), ("c", "random_reinit")):
        for rnd in range(3):
            write_round(tmp_path, round_row(trial, rnd, strategy))
        write_lineage(tmp_path, lineage_row(trial, "running", strategy))
    lake = IncrementalLake(tmp_path)
    reads = same_as_full_read(lake, tmp_path)
    assert reads["rounds"].table.num_rows == 9 and lake.files_read == 12

    # nothing changed: nothing read
    _, changed = lake.refresh()
    assert not changed and lake.files_read == 0

    # a new round lands: one file read
    write_round(tmp_path, round_row("a", 3, seconds=5))
    reads = same_as_full_read(lake, tmp_path)
    assert lake.files_read == 1 and reads["rounds"].table.num_rows == 10

    # a round re-written in place (a retried round) replaces the old row
    write_round(tmp_path, round_row("b", 1, acc=0.9, seconds=9))
    reads = same_as_full_read(lake, tmp_path)
    assert lake.files_read == 1
    b1 = [r for r in reads["rounds"].table.to_pylist() if r["trial_id"] == "b" and r["round"] == 1]
    assert [r["val_acc"] for r in b1] == [0.9]

    # a status update
    write_lineage(tmp_path, lineage_row("a", "finished", seconds=9))
    reads = same_as_full_read(lake, tmp_path)
    assert {r["trial_id"]: r["status"] for r in reads["lineages"].table.to_pylist()}["a"] == "finished"

    # a corrupt file and a foreign file: skipped and named, the same as a full read says
    Path(round_path(tmp_path, "s", "imp", "d", 0)).write_bytes(b"PAR1 not parquet at all")
    pq.write_table(pq.read_table(round_path(tmp_path, "s", "imp", "a", 0)).select(["val_acc"]),
                   round_path(tmp_path, "s", "imp", "e", 0))  # fmt: skip
    reads = same_as_full_read(lake, tmp_path)
    assert len(reads["rounds"].skipped) == 2

    # a compaction that crashed after writing its file: every row twice on disk, once in the read
    folder = tmp_path / "rounds" / "study=s" / "strategy=imp"
    rows = read_rounds(tmp_path).table
    write_atomic(rows.filter(pc.equal(rows["strategy"].cast("string"), "imp")), folder / "compact-1.parquet")
    reads = same_as_full_read(lake, tmp_path)
    assert reads["rounds"].table.num_rows == 10

    # ... and the compaction finishing: the per-round files removed
    for path in folder.glob("[abe]-r*.parquet"):
        path.unlink()
    reads = same_as_full_read(lake, tmp_path)
    assert reads["rounds"].table.num_rows == 10

    # a whole folder removed (a superseded trial's strategy partition)
    shutil.rmtree(tmp_path / "rounds" / "study=s" / "strategy=random_reinit")
    Path(lineage_path(tmp_path, "s", "random_reinit", "c")).unlink()
    reads = same_as_full_read(lake, tmp_path)
    assert set(reads["rounds"].table["strategy"].cast("string").to_pylist()) == {"imp"}


def test_a_refresh_reads_only_the_files_that_changed_in_a_large_lake(tmp_path):
    for trial in range(40):
        for rnd in range(5):
            write_round(tmp_path, round_row(f"t{trial}", rnd))
    lake = IncrementalLake(tmp_path)
    lake.refresh()
    assert lake.files_read == 200
    write_round(tmp_path, round_row("t7", 2, acc=0.75, seconds=3))
    write_round(tmp_path, round_row("t41", 0))
    reads = same_as_full_read(lake, tmp_path)
    assert lake.files_read == 2 and reads["rounds"].table.num_rows == 201


def test_one_study_only(tmp_path):
    write_round(tmp_path, round_row("a", 0))
    write_round(tmp_path, {**round_row("b", 0), "study": "other"})
    lake = IncrementalLake(tmp_path, study="other")
    reads, _ = lake.refresh()
    assert reads["rounds"].table.equals(read_rounds(tmp_path, "other").table)
    assert reads["rounds"].table["trial_id"].to_pylist() == ["b"]


def test_the_apps_live_lake_follows_the_files_and_hands_out_its_own_frames(tmp_path):
    from study.app.lake import LiveLake, load_lake

    write_round(tmp_path, round_row("a", 0))
    write_lineage(tmp_path, lineage_row("a", "running"))
    live = LiveLake(tmp_path)
    first = live.current()
    first.rounds["series"] = "mine"  # a page adding a column to its frame
    assert "series" not in live.current().rounds.columns
    write_round(tmp_path, round_row("a", 1, seconds=2))
    write_lineage(tmp_path, lineage_row("a", "finished", seconds=2))
    now, full = live.current(), load_lake(tmp_path)
    assert now.rounds.drop(columns="row").equals(full.rounds.drop(columns="row"))
    assert now.lineages.equals(full.lineages) and list(now.rounds["round"]) == [0, 1]
    assert live.reader.files_read == 2


def test_folding_a_finished_lineage_keeps_every_row_and_drops_only_copies(tmp_path):
    from study.lake.files import fold_rounds, folded_path, supersede, trial_files

    for rnd in range(4):
        write_round(tmp_path, round_row("a", rnd))
    write_round(tmp_path, round_row("b", 0))
    before = read_rounds(tmp_path).table
    target = Path(fold_rounds(tmp_path, "s", "imp", "a"))
    assert str(target) == folded_path(tmp_path, "s", "imp", "a") and target.name == "a.rounds.parquet"
    folder = target.parent
    assert sorted(p.name for p in folder.iterdir()) == ["a.rounds.parquet", "b-r000.parquet"]
    assert pq.read_table(target).num_rows == 4
    assert (
        read_rounds(tmp_path)
        .table.sort_by([("trial_id", "ascending"), ("round", "ascending")])
        .equals(before.sort_by([("trial_id", "ascending"), ("round", "ascending")]))
    )
    assert fold_rounds(tmp_path, "s", "imp", "a") is None  # already one file

    # a crash between writing the folded file and removing the per-round files leaves copies:
    # folding again drops the exact copies; a redone round (another written_at) stays on disk
    write_round(tmp_path, round_row("a", 2))  # an exact copy of round 2
    write_round(tmp_path, round_row("a", 3, acc=0.9, seconds=7))  # round 3 redone
    fold_rounds(tmp_path, "s", "imp", "a")
    raw = pq.read_table(target).to_pylist()
    assert sorted((r["round"], r["val_acc"]) for r in raw) == [(0, 0.5), (1, 0.5), (2, 0.5), (3, 0.5), (3, 0.9)]
    a = [r for r in read_rounds(tmp_path).table.to_pylist() if r["trial_id"] == "a"]
    assert [(r["round"], r["val_acc"]) for r in sorted(a, key=lambda r: r["round"])][-1] == (3, 0.9)

    # an unreadable round file stops the fold (nothing removed)
    Path(round_path(tmp_path, "s", "imp", "b", 1)).write_bytes(b"PAR1 broken")
    assert fold_rounds(tmp_path, "s", "imp", "b") is None
    assert sorted(p.name for p in folder.glob("b-*")) == ["b-r000.parquet", "b-r001.parquet"]

    # the folded file belongs to its trial: superseding moves it
    assert str(target) in trial_files(tmp_path, "s", "a")
    supersede(tmp_path, "s", "a")
    assert not target.exists()


def test_a_lineage_run_to_the_lake_ends_folded(tmp_path):
    from conftest import synthetic_spec_dict

    from study.engine.lineage import RunContext
    from study.engine.spec import lineage_spec_from_dict
    from study.lake.recorder import run_to_lake

    spec = lineage_spec_from_dict(synthetic_spec_dict(rounds=2))
    results = run_to_lake(spec, tmp_path, study="s", context=RunContext(threads=1))
    files = list((tmp_path / "rounds").rglob("*.parquet"))
    assert [p.name for p in files] == [f"{spec.lineage_id()}.rounds.parquet"]
    assert [r["round"] for r in pq.read_table(files[0]).to_pylist()] == [r.round for r in results] == [0, 1, 2]
    # a re-run finds the lineage finished and its rows in place
    again = run_to_lake(spec, tmp_path, study="s", context=RunContext(threads=1))
    assert again == results and [p.name for p in (tmp_path / "rounds").rglob("*.parquet")] == [files[0].name]


def test_runs_of_one_folder_split_by_a_subfolder_keep_the_full_reads_order(tmp_path):
    write_round(tmp_path, round_row("a", 0))
    write_round(tmp_path, round_row("z", 0))
    nested = tmp_path / "rounds" / "study=s" / "strategy=imp" / "sub" / "m-r000.parquet"
    nested.parent.mkdir()
    shutil.copy(round_path(tmp_path, "s", "imp", "a", 0), nested)  # the same key again, same written_at
    write_round(tmp_path, round_row("m", 0))
    lake = IncrementalLake(tmp_path)
    same_as_full_read(lake, tmp_path)
    write_round(tmp_path, round_row("b", 0))
    same_as_full_read(lake, tmp_path)


def test_a_refresh_that_raised_leaves_the_reader_as_it_was(tmp_path, monkeypatch):
    from study.app.lake import LiveLake
    from study.lake import incremental

    for trial in "abc":
        write_round(tmp_path, round_row(trial, 0))
    lake = IncrementalLake(tmp_path)
    same_as_full_read(lake, tmp_path)
    Path(round_path(tmp_path, "s", "imp", "a", 0)).unlink()
    write_round(tmp_path, round_row("b", 0, acc=0.9, seconds=4))
    with monkeypatch.context() as patch:
        patch.setattr(incremental, "read_many", raising(MemoryError("once")))
        with pytest.raises(MemoryError):
            lake.refresh()
    same_as_full_read(lake, tmp_path)

    live = LiveLake(tmp_path)
    live.current()
    write_round(tmp_path, round_row("d", 0))
    from study.app import lake as app_lake

    with monkeypatch.context() as patch:
        patch.setattr(app_lake, "lake_from_reads", raising(ValueError("once")))
        with pytest.raises(ValueError):
            live.current()
    assert sorted(live.current().rounds["trial_id"]) == ["b", "c", "d"]


def test_a_fold_leaves_files_another_writer_replaced_while_it_read(tmp_path, monkeypatch):
    from study.lake import files

    for rnd in range(3):
        write_round(tmp_path, round_row("a", rnd))
    from study.lake import store

    real = store.pq.read_table

    def read_then_rewrite(path, **kw):
        table = real(path, **kw)
        if str(path).endswith("a-r001.parquet"):  # a resumed run re-writes round 1 meanwhile
            write_round(tmp_path, round_row("a", 1, acc=0.99, seconds=9))
        return table

    monkeypatch.setattr(store.pq, "read_table", read_then_rewrite)
    assert files.fold_rounds(tmp_path, "s", "imp", "a") is None
    monkeypatch.setattr(store.pq, "read_table", real)
    folder = Path(round_path(tmp_path, "s", "imp", "a", 0)).parent
    assert sorted(p.name for p in folder.iterdir()) == ["a-r000.parquet", "a-r001.parquet", "a-r002.parquet"]
    assert files.fold_rounds(tmp_path, "s", "imp", "a") is not None  # the next fold takes the new row
    assert sorted(r["val_acc"] for r in read_rounds(tmp_path).table.to_pylist()) == [0.5, 0.5, 0.99]
