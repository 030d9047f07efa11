"""The tolerant reader: every table read against its canonical schema, unreadable or foreign files
skipped and named, and one row per key (the latest written)."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from study.lake.schema import FAILED_STATUSES, TABLES
from study.lake.store import Stamp, Store, StoreUnavailable, join, store_for


@dataclass
class LakeRead:
    """What a read found: the table (canonical schema) and the files it had to skip, with why."""

    table: pa.Table
    skipped: list[str] = field(default_factory=list)
    files: int = 0


def table_stamps(root: str | Path, kind: str, study: str | None) -> dict[str, Stamp]:
    """The table's files (`<root>/<kind>[/study=<s>]/**/*.parquet`, none under a '.' or '_'
    name) with their stamps, in path order."""
    base = join(root, kind) if study is None else join(root, kind, f"study={study}")
    cut = len(base) + 1
    return {
        path: stamp
        for path, stamp in sorted(store_for(root).files(base).items())
        if path.endswith(".parquet") and not any(part.startswith((".", "_")) for part in path[cut:].split("/"))
    }


def table_files(root: str | Path, kind: str, study: str | None) -> list[str]:
    return list(table_stamps(root, kind, study))


def read_one(path: str, schema: pa.Schema, store: Store | None = None) -> tuple[pa.Table | None, str | None]:
    """One file against `schema`: its table, or None and why it was skipped (a truncated or
    corrupt file, or a foreign Parquet file that has none of our keys). A store that does not
    answer raises (StoreUnavailable): the file is not known to be bad."""
    try:
        table = (store or store_for(path)).read_table(path, schema=schema)
    except StoreUnavailable:
        raise
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return None, first
    lacking = [f.name for f in schema if not f.nullable and table[f.name].null_count]
    if lacking:
        return None, f"not a {schema.metadata[b'study.table'].decode()} file (no {', '.join(lacking)})"
    return table, None


def read_many(paths: list[str], schema: pa.Schema) -> list[tuple[pa.Table | None, str | None]]:
    """`read_one` for each path, in order, a few files at a time (an object store: more at a time,
    as each read waits on the network)."""
    if not paths:
        return []
    store = store_for(paths[0])
    if len(paths) <= 8:
        return [read_one(p, schema, store) for p in paths]
    with ThreadPoolExecutor(store.read_threads) as pool:
        return list(pool.map(lambda p: read_one(p, schema, store), paths))


def merge(tables: list[pa.Table], schema: pa.Schema, keys: list[str]) -> pa.Table:
    """The tables (in file order) as one, one row per key."""
    if not tables:
        return schema.empty_table()
    return _latest(pa.concat_tables(tables).unify_dictionaries().combine_chunks(), keys)


def read_files(files: Iterable[str], schema: pa.Schema, keys: list[str]) -> LakeRead:
    paths = list(files)
    tables, skipped = [], []
    for path, (table, why) in zip(paths, read_many(paths, schema), strict=True):
        if table is None:
            skipped.append(f"{path}: {why}")
        else:
            tables.append(table)
    return LakeRead(merge(tables, schema, keys), skipped, len(paths))


def _latest(table: pa.Table, keys: list[str]) -> pa.Table:
    """One row per key: the most recently written (a retried round, a compacted copy)."""
    if table.num_rows <= 1:
        return table
    time_col = "written_at" if "written_at" in table.column_names else "updated_at"
    idx = pa.array(range(table.num_rows), pa.int64())
    keyed = pa.table(
        {
            **{k: table[k].cast(pa.string()) if pa.types.is_dictionary(table[k].type) else table[k] for k in keys},
            "_t": table[time_col],
            "_i": idx,
        }
    )
    keyed = keyed.sort_by([(k, "ascending") for k in keys] + [("_t", "descending"), ("_i", "descending")])
    first = keyed.group_by(keys, use_threads=False).aggregate([("_i", "first")])
    keep = pc.sort_indices(first["_i_first"])
    return table.take(pc.take(first["_i_first"], keep))


def read_table(root: str | Path, kind: str, study: str | None = None) -> LakeRead:
    """One table of the lake (`schema.TABLES`), one row per key."""
    schema, keys = TABLES[kind]
    return read_files(table_files(root, kind, study), schema, keys)


def read_rounds(root: str | Path, study: str | None = None) -> LakeRead:
    return read_table(root, "rounds", study)


def read_lineages(root: str | Path, study: str | None = None) -> LakeRead:
    return read_table(root, "lineages", study)


def read_studies(root: str | Path, study: str | None = None) -> LakeRead:
    return read_table(root, "studies", study)


def excluded_lineages(lineages: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(study, trial_id, lineage_id) of every lineage whose rows must not count: the failed,
    diverged and degenerate ones, and the sibling seeds of a searched trial that failed (the
    trial as a whole is filed FAIL)."""

    def number(row: dict[str, Any]) -> int | None:
        n = row.get("optuna_trial_number")
        return None if n is None or n != n else int(n)  # n != n: a NaN from pandas

    failed_trials = {  # a branch (a control) that fails on its own fails no trial: its trunk went on
        (r["study"], number(r))
        for r in lineages
        if r["status"] in FAILED_STATUSES and number(r) is not None and not isinstance(r.get("branch"), str)
    }
    return {
        (r["study"], r["trial_id"], r["lineage_id"])
        for r in lineages
        if r["status"] in FAILED_STATUSES or (r["study"], number(r)) in failed_trials
    }


def duckdb_rounds_sql(root: str | Path) -> str:
    """DuckDB's view of the rounds (an s3:// lake needs DuckDB's httpfs extension and an S3 secret)."""
    return f"read_parquet('{join(root, 'rounds')}/**/*.parquet', hive_partitioning=true, union_by_name=true)"
