"""Where lake files live and how they are written: atomically (a dot-prefixed temp file renamed
into place), under names checked to be safe file names and hive partition values."""

from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from study.lake.reader import read_one
from study.lake.schema import LINEAGES_SCHEMA, ROUNDS_SCHEMA, STATUSES, STUDIES_SCHEMA

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")


def check_name(kind: str, value: str) -> None:
    """A study or trial name must be a safe file name in the lake (and a hive partition value)."""
    if not isinstance(value, str) or not _SAFE.match(value):
        raise ValueError(
            f"{kind} {value!r} is not allowed: use 1-100 ASCII letters, digits, '_', '-', '.' or '+', "
            f"starting with a letter or digit"
        )


def round_path(root: Path, study: str, strategy: str, trial_id: str, round_: int) -> Path:
    return Path(root) / "rounds" / f"study={study}" / f"strategy={strategy}" / f"{trial_id}-r{round_:03d}.parquet"


def checkpoint_dir(root: str | Path, study: str, trial_id: str) -> Path:
    """Where a lineage run into the lake keeps its resume state (never read as a table)."""
    return Path(root) / "_checkpoints" / f"study={study}" / trial_id


def lineage_path(root: Path, study: str, strategy: str, trial_id: str) -> Path:
    return Path(root) / "lineages" / f"study={study}" / f"strategy={strategy}" / f"{trial_id}.parquet"


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
            values = [None if v is None else list(v.items()) for v in values]
        if pa.types.is_dictionary(f.type):
            columns[f.name] = pa.array(values, pa.string()).dictionary_encode().cast(f.type)
        else:
            columns[f.name] = pa.array(values, f.type)
    return pa.table(columns, schema=schema)


def write_atomic(table: pa.Table, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_round(root: str | Path, row: dict[str, Any]) -> Path:
    for key in ("study", "strategy", "trial_id"):
        check_name(key, row[key])
    path = round_path(Path(root), row["study"], row["strategy"], row["trial_id"], int(row["round"]))
    return write_atomic(to_table([row], ROUNDS_SCHEMA), path)


def write_lineage(root: str | Path, row: dict[str, Any]) -> Path:
    for key in ("study", "strategy", "trial_id"):
        check_name(key, row[key])
    if row.get("status") not in STATUSES:
        raise ValueError(f"lineage status must be one of {STATUSES}, got {row.get('status')}")
    path = lineage_path(Path(root), row["study"], row["strategy"], row["trial_id"])
    return write_atomic(to_table([row], LINEAGES_SCHEMA), path)


def write_study(root: str | Path, row: dict[str, Any]) -> Path:
    check_name("study", row["study"])
    return write_atomic(
        to_table([row], STUDIES_SCHEMA), Path(root) / "studies" / f"study={row['study']}" / "study.parquet"
    )


FOLDED_SUFFIX = ".rounds.parquet"  # a finished lineage's rounds in one file: <trial>.rounds.parquet


def folded_path(root: Path, study: str, strategy: str, trial_id: str) -> Path:
    return Path(root) / "rounds" / f"study={study}" / f"strategy={strategy}" / f"{trial_id}{FOLDED_SUFFIX}"


def trial_round_files(root: str | Path, study: str, trial_id: str) -> list[Path]:
    """The round files of one trial id, per-round and folded, whatever its strategy."""
    root = Path(root)
    return sorted(
        [
            *root.glob(f"rounds/study={study}/strategy=*/{trial_id}-r[0-9][0-9][0-9].parquet"),
            *root.glob(f"rounds/study={study}/strategy=*/{trial_id}{FOLDED_SUFFIX}"),
        ]
    )


def trial_files(root: str | Path, study: str, trial_id: str) -> list[Path]:
    """Every round and lineage file of one trial id in a study, whatever its strategy."""
    root = Path(root)
    return sorted(
        [*trial_round_files(root, study, trial_id), *root.glob(f"lineages/study={study}/strategy=*/{trial_id}.parquet")]
    )


def fold_rounds(root: str | Path, study: str, strategy: str, trial_id: str) -> Path | None:
    """Fold a finished lineage's round files into one file, so cold reads touch one file per
    lineage instead of one per round. The folded file is written (atomically) before the
    per-round files are removed; a crash in between leaves copies that readers resolve to one row.
    Nothing is lost: only exact copies (same round, same written_at) are dropped, so a redone
    round stays visible in the raw files. An unreadable file stops the fold (the reader names it);
    so does a file another writer replaced or moved while it was read (a resumed run, `--fresh`,
    a compaction), and a file re-written after it was read is never removed.
    Returns the folded file, or None when there was nothing to fold."""
    root = Path(root)
    target = folded_path(root, study, strategy, trial_id)
    sources = [p for p in trial_round_files(root, study, trial_id) if p.parent == target.parent]
    if not sources or sources == [target]:
        return None
    tables, stamps = [], {}
    for path in sources:
        stamps[path] = file_stamp(path)
        table, _ = read_one(path, ROUNDS_SCHEMA)
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
    if any(file_stamp(p) != s for p, s in stamps.items()):
        return None  # another writer (a resumed run, --fresh, a compaction) touched the trial: leave it
    write_atomic(rows.take(pa.array(keep, pa.int64())), target)
    for path in sources:
        if path != target and file_stamp(path) == stamps[path]:  # never a file re-written since it was read
            path.unlink(missing_ok=True)
    return target


Stamp = tuple[int, int, int, int]  # (inode, ctime_ns, mtime_ns, size)


def file_stamp(path: Path) -> Stamp | None:
    """What changes whenever a lake file is (re)written: files are replaced by rename, so a new
    inode and ctime even when mtime and size repeat. None: the file is gone."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_ctime_ns, st.st_mtime_ns, st.st_size


def supersede(root: str | Path, study: str, trial_id: str) -> Path | None:
    """Move a trial's round and lineage files out of every reader's sight, into
    `<root>/_superseded/<stamp>/...` (kept, not deleted), so the lineage that replaces it is never
    mixed with it. Returns the folder they went to, or None when there was nothing."""
    root = Path(root)
    files = trial_files(root, study, trial_id)
    if not files:
        return None
    target = root / "_superseded" / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    for path in files:
        dest = target / path.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
    return target
