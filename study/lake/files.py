"""Where lake files live and how they are written: whole or not at all (`store.Store`), under
names checked to be safe file names and hive partition values. Paths are strings: local paths or
s3:// URIs."""

from __future__ import annotations

import fnmatch
import hashlib
import re
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa

from study.lake.reader import read_one
from study.lake.schema import LINEAGES_SCHEMA, ROUND_KEYS, STATUSES, STUDIES_SCHEMA, TABLES
from study.lake.store import CheckpointPlace, Stamp, join, lake_identity, parent, store_for

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")


def check_name(kind: str, value: str) -> None:
    """A study or trial name must be a safe file name in the lake (and a hive partition value)."""
    if not isinstance(value, str) or not _SAFE.match(value):
        raise ValueError(
            f"{kind} {value!r} is not allowed: use 1-100 ASCII letters, digits, '_', '-', '.' or '+', "
            f"starting with a letter or digit"
        )


ROUND_TABLES = tuple(kind for kind, (_, keys) in TABLES.items() if keys == ROUND_KEYS)  # a file per lineage-round


def result_path(root: str | Path, kind: str, study: str, strategy: str, trial_id: str, round_: int) -> str:
    """Where one lineage-round's row of table `kind` (rounds, instability, masks) lives."""
    return join(root, kind, f"study={study}", f"strategy={strategy}", f"{trial_id}-r{round_:03d}.parquet")


def round_path(root: str | Path, study: str, strategy: str, trial_id: str, round_: int) -> str:
    return result_path(root, "rounds", study, strategy, trial_id, round_)


def checkpoint_dir(root: str | Path, study: str, trial_id: str) -> str:
    """Where a lineage run into the lake keeps its resume state (never read as a table)."""
    return join(root, "_checkpoints", f"study={study}", trial_id)


def scratch_dir(root: str, study: str, trial_id: str) -> Path:
    """Where a lineage of an object-store lake keeps its checkpoint on this node (the lake's
    `checkpoint_dir` holds the durable copy, uploaded after every round)."""
    lake = hashlib.sha256(lake_identity(root).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / "study-checkpoints" / lake / f"study={study}" / trial_id


def checkpoint_place(root: str | Path, study: str, trial_id: str, workdir: Path | None = None) -> CheckpointPlace:
    """Where a lineage of the lake keeps its resume state (its store decides: see `CheckpointPlace`)."""
    return store_for(root).checkpoint_place(
        checkpoint_dir(root, study, trial_id), scratch_dir(str(root), study, trial_id), workdir
    )


def lineage_path(root: str | Path, study: str, strategy: str, trial_id: str) -> str:
    return join(root, "lineages", f"study={study}", f"strategy={strategy}", f"{trial_id}.parquet")


def to_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    missing = [f.name for f in schema if not f.nullable and any(r.get(f.name) is None for r in rows)]
    if missing:
        raise ValueError(f"rows lack required columns {missing}")
    unknown = {k for r in rows for k in r} - set(schema.names)
    if unknown:
        raise ValueError(
            f"rows carry columns not in the schema: {sorted(unknown)}; add them to the schema as nullable columns"
        )
    columns = {}
    for f in schema:
        values = [r.get(f.name) for r in rows]
        if pa.types.is_map(f.type):
            values = [list(v.items()) if isinstance(v, dict) else v for v in values]  # or already pairs
        if pa.types.is_dictionary(f.type):
            columns[f.name] = pa.array(values, pa.string()).dictionary_encode().cast(f.type)
        else:
            columns[f.name] = pa.array(values, f.type)
    return pa.table(columns, schema=schema)


def write_atomic(table: pa.Table, path: str | Path) -> str:
    """Write `table` to `path` whole or not at all; a re-write replaces the file."""
    store_for(path).write_table(table, str(path))
    return str(path)


def write_result(root: str | Path, kind: str, row: dict[str, Any]) -> str:
    """Write one lineage-round's row of table `kind` (one of ROUND_TABLES)."""
    for key in ("study", "strategy", "trial_id"):
        check_name(key, row[key])
    path = result_path(root, kind, row["study"], row["strategy"], row["trial_id"], int(row["round"]))
    return write_atomic(to_table([row], TABLES[kind][0]), path)


def write_round(root: str | Path, row: dict[str, Any]) -> str:
    return write_result(root, "rounds", row)


def write_lineage(root: str | Path, row: dict[str, Any]) -> str:
    for key in ("study", "strategy", "trial_id"):
        check_name(key, row[key])
    if row.get("status") not in STATUSES:
        raise ValueError(f"lineage status must be one of {STATUSES}, got {row.get('status')}")
    path = lineage_path(root, row["study"], row["strategy"], row["trial_id"])
    return write_atomic(to_table([row], LINEAGES_SCHEMA), path)


def study_path(root: str | Path, study: str) -> str:
    return join(root, "studies", f"study={study}", "study.parquet")


def write_study(root: str | Path, row: dict[str, Any]) -> str:
    check_name("study", row["study"])
    return write_atomic(to_table([row], STUDIES_SCHEMA), study_path(root, row["study"]))


FOLDED_SUFFIX = ".rounds.parquet"  # a finished lineage's rows of a table, one file: <trial>.rounds.parquet


def folded_path(root: str | Path, study: str, strategy: str, trial_id: str, kind: str = "rounds") -> str:
    return join(root, kind, f"study={study}", f"strategy={strategy}", f"{trial_id}{FOLDED_SUFFIX}")


def matching(root: str | Path, folder: str, patterns: list[str]) -> list[str]:
    """The files under `root/folder` whose path below it matches one of the glob `patterns`
    (fnmatch: '*' also spans '/'; our names hold none)."""
    base = join(root, folder)
    cut = len(base) + 1
    return sorted(p for p in store_for(root).files(base) if any(fnmatch.fnmatchcase(p[cut:], pat) for pat in patterns))


def trial_round_files(root: str | Path, study: str, trial_id: str, kind: str = "rounds") -> list[str]:
    """The files of one trial id in a per-round table (rounds, instability, masks), per-round and
    folded, whatever its strategy."""
    return matching(
        root,
        f"{kind}/study={study}",
        [f"strategy=*/{trial_id}-r[0-9][0-9][0-9].parquet", f"strategy=*/{trial_id}{FOLDED_SUFFIX}"],
    )


def trial_files(root: str | Path, study: str, trial_id: str) -> list[str]:
    """Every file of one trial id in a study (rounds, instability, masks, lineages), whatever its strategy."""
    return sorted(
        [
            *(p for kind in ROUND_TABLES for p in trial_round_files(root, study, trial_id, kind)),
            *matching(root, f"lineages/study={study}", [f"strategy=*/{trial_id}.parquet"]),
        ]
    )


def fold_rounds(root: str | Path, study: str, strategy: str, trial_id: str, kind: str = "rounds") -> str | None:
    """Fold a finished lineage's per-round files of table `kind` (rounds, instability, masks) into
    one file, so cold reads touch one file per lineage instead of one per round. The folded file is written (atomically) before the
    per-round files are removed; a crash in between leaves copies that readers resolve to one row.
    Nothing is lost: only exact copies (same round, same written_at) are dropped, so a redone
    round stays visible in the raw files. An unreadable file stops the fold (the reader names it);
    so does a file another writer replaced or moved while it was read (a resumed run, `--fresh`,
    a compaction), and a file re-written after it was read is never removed.
    Returns the folded file, or None when there was nothing to fold."""
    store = store_for(root)
    target = folded_path(root, study, strategy, trial_id, kind)
    sources = [p for p in trial_round_files(root, study, trial_id, kind) if parent(p) == parent(target)]
    if not sources or sources == [target]:
        return None
    tables: list[pa.Table] = []
    stamps: dict[str, Stamp | None] = {}
    for path in sources:
        stamps[path] = store.stamp(path)
        table, _ = read_one(path, TABLES[kind][0])
        if stamps[path] is None or table is None:
            return None
        tables.append(table)
    rows = pa.concat_tables(tables).unify_dictionaries().combine_chunks()
    seen: set[tuple] = set()
    keep = []
    for i, key in enumerate(zip(*(rows[c].to_pylist() for c in ("lineage_id", "round", "written_at")), strict=True)):
        if key not in seen:
            seen.add(key)
            keep.append(i)
    if any(store.stamp(p) != s for p, s in stamps.items()):
        return None  # another writer (a resumed run, --fresh, a compaction) touched the trial: leave it
    write_atomic(rows.take(pa.array(keep, pa.int64())), target)
    for path in sources:
        if path != target and store.stamp(path) == stamps[path]:  # never a file re-written since it was read
            store.remove(path)
    return target


def superseded_dir(root: str | Path) -> str:
    """A new folder under `<root>/_superseded/` (never read as a table)."""
    return join(root, "_superseded", f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}")


def supersede(root: str | Path, study: str, trial_id: str) -> str | None:
    """Move a trial's round and lineage files out of every reader's sight, into
    `<root>/_superseded/<stamp>/...` (kept, not deleted), so the lineage that replaces it is never
    mixed with it. Returns the folder they went to, or None when there was nothing."""
    files = trial_files(root, study, trial_id)
    if not files:
        return None
    store, base, target = store_for(root), str(root).rstrip("/"), superseded_dir(root)
    for path in files:
        store.move(path, target + path[len(base) :])
    return target
