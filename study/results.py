"""The results lake: one canonical pyarrow schema per table, an atomic writer, a tolerant reader
and a compaction step.

    <root>/rounds/study=<s>/strategy=<k>/<trial>-r<round:03d>.parquet   one row per lineage-round
    <root>/lineages/study=<s>/strategy=<k>/<trial>.parquet              config, status, ids
    <root>/studies/study=<s>/study.parquet                               a search's space and objective

Files are written to a dot-prefixed temp file in the same folder and renamed into place, so a
re-run round replaces its own file and no reader ever sees half a file. `study` and `strategy`
are stored in the files too (dictionary-encoded, the type hive partitions get), so DuckDB's
`read_parquet(..., hive_partitioning=true, union_by_name=true)`, `pandas.read_parquet(dir)` and
single-file reads all agree. The schema evolves only by adding nullable columns.
"""
from __future__ import annotations

import os
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SCHEMA_VERSION = "1"
_CAT = pa.dictionary(pa.int32(), pa.string())
_F64_MAP = pa.map_(pa.string(), pa.float64())
_TS = pa.timestamp("us", tz="UTC")

ROUND_FIELDS = [
    pa.field("study", _CAT, nullable=False),
    pa.field("strategy", _CAT, nullable=False),
    pa.field("trial_id", pa.string(), nullable=False),
    pa.field("lineage_id", pa.string(), nullable=False),
    pa.field("config_hash", pa.string(), nullable=False),
    pa.field("model", pa.string()),
    pa.field("dataset", pa.string()),
    pa.field("seed", pa.int64()),
    pa.field("round", pa.int64(), nullable=False),
    pa.field("remaining_pct", pa.float64()),
    pa.field("layer_remaining_pct", _F64_MAP),
    pa.field("scope", pa.string()),
    pa.field("prune_rate", pa.float64()),
    pa.field("lr", pa.float64()),
    pa.field("rewind_iteration", pa.int64()),
    pa.field("early_stop_iteration", pa.int64()),
    # selection data: the validation split (5,000 held-out training examples) at the early-stop iteration
    pa.field("val_acc", pa.float64()),
    pa.field("val_loss", pa.float64()),
    # reporting data: the test split at the same iteration, never used to choose anything
    pa.field("test_acc", pa.float64()),
    pa.field("test_loss", pa.float64()),
    pa.field("final_val_acc", pa.float64()),
    pa.field("final_test_acc", pa.float64()),
    pa.field("final_train_loss", pa.float64()),
    pa.field("iterations", pa.int64()),
    pa.field("wall_seconds", pa.float64()),
    pa.field("device", pa.string()),
    pa.field("code_version", pa.string()),
    pa.field("written_at", _TS),
    pa.field("curve_iteration", pa.list_(pa.int64())),
    pa.field("curve_train_loss", pa.list_(pa.float64())),
    pa.field("curve_val_loss", pa.list_(pa.float64())),
    pa.field("curve_val_acc", pa.list_(pa.float64())),
    pa.field("curve_test_acc", pa.list_(pa.float64())),
    # Only some models have these (sequence models): nullable.
    pa.field("val_perplexity", pa.float64()),
    pa.field("test_perplexity", pa.float64()),
    pa.field("parse_f1", _F64_MAP),
    pa.field("parse_baselines", _F64_MAP),
    pa.field("group_remaining_pct", _F64_MAP),
    pa.field("accuracy_by_length", _F64_MAP),
    pa.field("parse_examples_json", pa.string()),
    pa.field("chance_val_acc", pa.float64()),  # majority-class accuracy on validation (degenerate check)
]
LINEAGE_FIELDS = [
    pa.field("study", _CAT, nullable=False),
    pa.field("strategy", _CAT, nullable=False),
    pa.field("trial_id", pa.string(), nullable=False),
    pa.field("lineage_id", pa.string(), nullable=False),
    pa.field("config_hash", pa.string(), nullable=False),
    pa.field("model", pa.string()),
    pa.field("dataset", pa.string()),
    pa.field("seed", pa.int64()),
    pa.field("status", pa.string()),
    pa.field("error", pa.string()),
    pa.field("rounds_planned", pa.int64()),
    pa.field("rounds_done", pa.int64()),
    pa.field("config_json", pa.string()),
    pa.field("optuna_trial_number", pa.int64()),
    pa.field("node_id", pa.string()),
    pa.field("device", pa.string()),
    pa.field("code_version", pa.string()),
    pa.field("started_at", _TS),
    pa.field("updated_at", _TS),
]

STUDY_FIELDS = [
    pa.field("study", _CAT, nullable=False),
    pa.field("objective", pa.string()),
    pa.field("metrics", pa.list_(pa.string())),
    pa.field("modes", pa.list_(pa.string())),
    pa.field("search_json", pa.string()),
    pa.field("spec_json", pa.string()),
    pa.field("code_version", pa.string()),
    pa.field("written_at", _TS),
]


def _schema(fields: list[pa.Field], table: str) -> pa.Schema:
    return pa.schema(fields, metadata={b"study.schema_version": SCHEMA_VERSION.encode(),
                                       b"study.table": table.encode()})


ROUNDS_SCHEMA = _schema(ROUND_FIELDS, "rounds")
LINEAGES_SCHEMA = _schema(LINEAGE_FIELDS, "lineages")
STUDIES_SCHEMA = _schema(STUDY_FIELDS, "studies")
STATUSES = ("running", "finished", "stopped", "failed", "diverged", "degenerate")
FAILED_STATUSES = ("failed", "diverged", "degenerate")  # can never be a study's best
ROUND_KEYS = ["study", "trial_id", "lineage_id", "round"]  # one row per lineage-round; never merged across lineages
LINEAGE_KEYS = ["study", "trial_id", "lineage_id"]
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")


def check_name(kind: str, value: str) -> None:
    """A study or trial name must be a safe file name in the lake (and a hive partition value)."""
    if not isinstance(value, str) or not _SAFE.match(value):
        raise ValueError(f"{kind} {value!r} is not allowed: use 1-100 ASCII letters, digits, '_', '-', '.' or '+', "
                         f"starting with a letter or digit")



def round_path(root: Path, study: str, strategy: str, trial_id: str, round_: int) -> Path:
    return Path(root) / "rounds" / f"study={study}" / f"strategy={strategy}" / f"{trial_id}-r{round_:03d}.parquet"


def lineage_path(root: Path, study: str, strategy: str, trial_id: str) -> Path:
    return Path(root) / "lineages" / f"study={study}" / f"strategy={strategy}" / f"{trial_id}.parquet"


def to_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    missing = [f.name for f in schema if not f.nullable and any(r.get(f.name) is None for r in rows)]
    if missing:
        raise ValueError(f"rows lack required columns {missing}")
    unknown = {k for r in rows for k in r} - set(schema.names)
    if unknown:
        raise ValueError(f"rows carry columns not in the schema: {sorted(unknown)}; add them to the schema as nullable columns")
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
    return write_atomic(to_table([row], STUDIES_SCHEMA), Path(root) / "studies" / f"study={row['study']}" / "study.parquet")


@dataclass
class LakeRead:
    """What a read found: the table (canonical schema) and the files it had to skip, with why."""
    table: pa.Table
    skipped: list[str] = field(default_factory=list)
    files: int = 0


def _files(root: Path, kind: str, study: str | None) -> list[Path]:
    base = Path(root) / kind
    if study is not None:
        base = base / f"study={study}"
    if not base.is_dir():
        return []
    return sorted(p for p in base.rglob("*.parquet")
                  if p.is_file() and not any(part.startswith((".", "_")) for part in p.relative_to(base).parts))


def _read(files: Iterable[Path], schema: pa.Schema, keys: list[str]) -> LakeRead:
    tables, skipped, count = [], [], 0
    required = [f.name for f in schema if not f.nullable]
    for path in files:
        count += 1
        try:
            table = pq.read_table(path, schema=schema)
        except Exception as e:  # a truncated or corrupt file: skip it and say which
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            skipped.append(f"{path}: {first}")
            continue
        lacking = [name for name in required if table[name].null_count]
        if lacking:  # a foreign Parquet file: read against our schema it has no keys
            skipped.append(f"{path}: not a {schema.metadata[b'study.table'].decode()} file (no {', '.join(lacking)})")
            continue
        tables.append(table)
    if not tables:
        return LakeRead(schema.empty_table(), skipped, count)
    table = pa.concat_tables(tables).unify_dictionaries().combine_chunks()
    return LakeRead(_latest(table, keys), skipped, count)


def _latest(table: pa.Table, keys: list[str]) -> pa.Table:
    """One row per key: the most recently written (a retried round, a compacted copy)."""
    if table.num_rows <= 1:
        return table
    time_col = "written_at" if "written_at" in table.column_names else "updated_at"
    idx = pa.array(range(table.num_rows), pa.int64())
    keyed = pa.table({**{k: table[k].cast(pa.string()) if pa.types.is_dictionary(table[k].type) else table[k]
                         for k in keys}, "_t": table[time_col], "_i": idx})
    keyed = keyed.sort_by([(k, "ascending") for k in keys] + [("_t", "descending"), ("_i", "descending")])
    first = keyed.group_by(keys, use_threads=False).aggregate([("_i", "first")])
    keep = pc.sort_indices(first["_i_first"])
    return table.take(pc.take(first["_i_first"], keep))


def read_rounds(root: str | Path, study: str | None = None) -> LakeRead:
    return _read(_files(Path(root), "rounds", study), ROUNDS_SCHEMA, ROUND_KEYS)


def read_lineages(root: str | Path, study: str | None = None) -> LakeRead:
    return _read(_files(Path(root), "lineages", study), LINEAGES_SCHEMA, LINEAGE_KEYS)


def read_studies(root: str | Path, study: str | None = None) -> LakeRead:
    return _read(_files(Path(root), "studies", study), STUDIES_SCHEMA, ["study"])


def excluded_lineages(lineages: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(study, trial_id, lineage_id) of every lineage whose rows must not count: the failed,
    diverged and degenerate ones, and the sibling seeds of a searched trial that failed (the
    trial as a whole is filed FAIL)."""
    def number(row: dict[str, Any]) -> int | None:
        n = row.get("optuna_trial_number")
        return None if n is None or n != n else int(n)  # n != n: a NaN from pandas

    failed_trials = {(r["study"], number(r)) for r in lineages
                     if r["status"] in FAILED_STATUSES and number(r) is not None}
    return {(r["study"], r["trial_id"], r["lineage_id"]) for r in lineages
            if r["status"] in FAILED_STATUSES or (r["study"], number(r)) in failed_trials}


def trial_files(root: str | Path, study: str, trial_id: str) -> list[Path]:
    """Every round and lineage file of one trial id in a study, whatever its strategy."""
    root = Path(root)
    return sorted([*root.glob(f"rounds/study={study}/strategy=*/{trial_id}-r[0-9][0-9][0-9].parquet"),
                   *root.glob(f"lineages/study={study}/strategy=*/{trial_id}.parquet")])


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


def duckdb_rounds_sql(root: str | Path) -> str:
    return (f"read_parquet('{Path(root) / 'rounds'}/**/*.parquet', hive_partitioning=true, "
            f"union_by_name=true)")


def compact(root: str | Path, study: str, force: bool = False) -> dict[str, int]:
    """Rewrite a finished study's round files into one file per strategy.

    The compacted file is written (atomically) before the per-round files it replaces are
    removed; a crash in between leaves duplicates that every reader resolves to one row."""
    root = Path(root)
    check_name("study", study)
    if not (root / "rounds").is_dir() and not (root / "lineages").is_dir():
        raise FileNotFoundError(f"no results lake at {root} (no rounds/ or lineages/ folder); pass the lake's root folder")
    if not (root / "rounds" / f"study={study}").is_dir():
        known = sorted(p.name.split("=", 1)[1] for p in (root / "rounds").glob("study=*"))
        raise FileNotFoundError(f"study {study!r} has no rounds in {root}; studies there: {', '.join(known) or 'none'}")
    lineage_read = read_lineages(root, study)
    if lineage_read.skipped:
        raise RuntimeError(f"cannot compact {study}: unreadable lineage files {lineage_read.skipped[:2]} hide whether "
                           f"lineages still run; move them away first")
    lineages = lineage_read.table
    running = [t for t, s in zip(lineages["trial_id"].to_pylist(), lineages["status"].to_pylist()) if s == "running"]
    if running and not force:
        raise RuntimeError(f"study {study} still has running lineages ({', '.join(running[:3])}...); wait for them or pass --force")
    files = _files(root, "rounds", study)
    read = _read(files, ROUNDS_SCHEMA, ROUND_KEYS)
    if read.skipped:
        raise RuntimeError(f"cannot compact {study}: unreadable files {read.skipped[:2]}; move them away first")
    stamp = time.strftime("%Y%m%dT%H%M%S") + f"-{uuid.uuid4().hex[:6]}"
    written = {}
    strategies = read.table["strategy"].cast(pa.string())
    for strategy in sorted(set(strategies.to_pylist())):
        part = read.table.filter(pc.equal(strategies, strategy))
        write_atomic(part.cast(ROUNDS_SCHEMA), Path(root) / "rounds" / f"study={study}" / f"strategy={strategy}"
                     / f"compact-{stamp}.parquet")
        written[strategy] = part.num_rows
    for path in files:
        path.unlink()
    return written
