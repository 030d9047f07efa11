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
from study.lake.store import check_s3_lake, is_remote, join, store_for


def lake_studies(root: str | Path) -> list[str]:
    """The studies a lake holds rounds or lineages of (raises FileNotFoundError when `root` holds
    no lake: neither a rounds/ nor a lineages/ folder; an s3:// bucket that is missing or refuses
    the keys is a SpecError naming it)."""
    if is_remote(root):
        check_s3_lake(str(root), write=False)
    store = store_for(root)
    if not store.is_dir(join(root, "rounds")) and not store.is_dir(join(root, "lineages")):
        raise FileNotFoundError(f"no results lake at {root} (no rounds/ or lineages/ folder)")
    names = set()
    for kind in ("rounds", "lineages"):
        cut = len(join(root, kind)) + 1
        names |= {p[cut:].split("/", 1)[0] for p in store.files(join(root, kind))}
    return sorted(n.split("=", 1)[1] for n in names if n.startswith("study="))


def compact(root: str | Path, study: str, force: bool = False) -> dict[str, int]:
    """Rewrite a finished study's round files into one file per strategy.

    The compacted file is written (atomically) before the per-round files it replaces are
    removed; a crash in between leaves duplicates that every reader resolves to one row."""
    check_name("study", study)
    try:
        known = lake_studies(root)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{e}; pass the lake's root folder") from None
    if not store_for(root).is_dir(join(root, "rounds", f"study={study}")):
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
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{uuid.uuid4().hex[:6]}"
    written = {}
    strategies = read.table["strategy"].cast(pa.string())
    for strategy in sorted(set(strategies.to_pylist())):
        part = read.table.filter(pc.equal(strategies, strategy))
        write_atomic(
            part.cast(ROUNDS_SCHEMA),
            join(root, "rounds", f"study={study}", f"strategy={strategy}", f"compact-{stamp}.parquet"),
        )
        written[strategy] = part.num_rows
    store = store_for(root)
    for path in files:
        store.remove(path)
    return written
