"""Reading a lake again in time proportional to what changed.

An `IncrementalLake` keeps every file's table (keyed by path and `Stamp`: locally inode, ctime,
mtime and size, as files are written by rename; on S3 the object's mtime and size) and the
tables of each run of consecutive files in one folder joined in file order. A refresh lists and
stats the files, reads only the new or changed ones, re-joins only the runs they are in, and
merges the runs in the order a full read uses, so the result is exactly what `read_rounds` / `read_lineages` /
`read_studies` return on the same files: the same rows, the same order, the same skipped files.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from study.lake.reader import LakeRead, merge, read_many, table_stamps
from study.lake.schema import TABLES
from study.lake.store import Stamp, parent


@dataclass(frozen=True)
class _File:
    stamp: Stamp
    table: pa.Table | None
    why_skipped: str | None


@dataclass
class IncrementalTable:
    """One table of the lake (rounds, lineages or studies), read incrementally. A refresh that
    raises leaves the previous state as it was: the next one starts from there."""

    root: str
    kind: str
    study: str | None = None
    files: dict[str, _File] = field(default_factory=dict)
    runs: dict[tuple[tuple[str, Stamp], ...], pa.Table | None] = field(default_factory=dict)
    result: LakeRead | None = None
    files_read: int = 0  # files read on the last refresh

    def refresh(self) -> tuple[LakeRead, bool]:
        """The table now, and whether it changed since the last refresh."""
        schema, keys = TABLES[self.kind]
        stamps = table_stamps(self.root, self.kind, self.study)
        changed = [p for p, s in stamps.items() if p not in self.files or self.files[p].stamp != s]
        if self.result is not None and not changed and set(stamps) == set(self.files):
            self.files_read = 0
            return self.result, False
        files = {p: f for p, f in self.files.items() if p in stamps}
        for path, (table, why) in zip(changed, read_many(changed, schema), strict=True):
            files[path] = _File(stamps[path], table, why)
        ordered = sorted(files)
        # runs of consecutive files (in full-read order) in one folder, each joined once and kept
        # while its files stay the same: joining the runs in order is joining every file in order
        runs: dict[tuple[tuple[str, Stamp], ...], pa.Table | None] = {}
        for _, group in itertools.groupby(ordered, key=parent):
            run = tuple((path, files[path].stamp) for path in group)
            if run in self.runs:
                runs[run] = self.runs[run]
            else:
                tables = [files[path].table for path, _ in run if files[path].table is not None]
                runs[run] = pa.concat_tables(tables) if tables else None
        skipped = [f"{p}: {files[p].why_skipped}" for p in ordered if files[p].table is None]
        result = LakeRead(merge([t for t in runs.values() if t is not None], schema, keys), skipped, len(ordered))
        self.files, self.runs, self.result, self.files_read = files, runs, result, len(changed)
        return result, True


@dataclass
class IncrementalLake:
    """The three tables of a lake, each refreshed incrementally."""

    root: str | Path
    study: str | None = None
    tables: dict[str, IncrementalTable] = field(default_factory=dict)
    version: int = 0  # grows each time a refresh finds a change

    def __post_init__(self) -> None:
        self.root = str(self.root)
        self.tables = {kind: IncrementalTable(str(self.root), kind, self.study) for kind in TABLES}

    def refresh(self) -> tuple[dict[str, LakeRead], bool]:
        """Every table now, and whether any changed since the last refresh."""
        reads, changed = {}, False
        for kind, table in self.tables.items():
            reads[kind], table_changed = table.refresh()
            changed = changed or table_changed
        if changed:
            self.version += 1
        return reads, changed

    @property
    def files_read(self) -> int:
        return sum(t.files_read for t in self.tables.values())
