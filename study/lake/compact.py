"""Compaction: a finished study's round files rewritten into one file per strategy."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from study.lake.files import check_name, write_atomic
from study.lake.reader import read_files, read_lineages, table_files
from study.lake.schema import ROUND_KEYS, ROUNDS_SCHEMA


def compact(root: str | Path, study: str, force: bool = False) -> dict[str, int]:
    """Rewrite a finished study's round files into one file per strategy.

    The compacted file is written (atomically) before the per-round files it replaces are
    removed; a crash in between leaves duplicates that every reader resolves to one row."""
    root = Path(root)
    check_name("study", study)
    if not (root / "rounds").is_dir() and not (root / "lineages").is_dir():
        raise FileNotFoundError(
            f"no results lake at {root} (no rounds/ or lineages/ folder); pass the lake's root folder"
        )
    if not (root / "rounds" / f"study={study}").is_dir():
        known = sorted(p.name.split("=", 1)[1] for p in (root / "rounds").glob("study=*"))
        raise FileNotFoundError(f"study {study!r} has no rounds in {root}; studies there: {', '.join(known) or 'none'}")
    lineage_read = read_lineages(root, study)
    if lineage_read.skipped:
        raise RuntimeError(
            f"cannot compact {study}: unreadable lineage files {lineage_read.skipped[:2]} hide whether "
            f"lineages still run; move them away first"
        )
    lineages = lineage_read.table
    running = [
        t
        for t, s in zip(lineages["trial_id"].to_pylist(), lineages["status"].to_pylist(), strict=True)
        if s == "running"
    ]
    if running and not force:
        raise RuntimeError(
            f"study {study} still has running lineages ({', '.join(running[:3])}...); wait for them or pass --force"
        )
    files = table_files(root, "rounds", study)
    read = read_files(files, ROUNDS_SCHEMA, ROUND_KEYS)
    if read.skipped:
        raise RuntimeError(f"cannot compact {study}: unreadable files {read.skipped[:2]}; move them away first")
    stamp = time.strftime("%Y%m%dT%H%M%S") + f"-{uuid.uuid4().hex[:6]}"
    written = {}
    strategies = read.table["strategy"].cast(pa.string())
    for strategy in sorted(set(strategies.to_pylist())):
        part = read.table.filter(pc.equal(strategies, strategy))
        write_atomic(
            part.cast(ROUNDS_SCHEMA),
            Path(root) / "rounds" / f"study={study}" / f"strategy={strategy}" / f"compact-{stamp}.parquet",
        )
        written[strategy] = part.num_rows
    for path in files:
        path.unlink(missing_ok=True)
    return written
