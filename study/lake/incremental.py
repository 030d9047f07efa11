"""Reading a lake again in time proportional to what changed.

An `IncrementalLake` keeps every file's table (keyed by path, inode, modification time and size: files are
written by rename, so a re-written file is a new inode) and,
per folder, the files' tables joined in file order. A refresh lists and stats the files, reads
only the new or changed ones, re-joins only the folders they are in, and merges the folders in
the order a full read uses, so the result is exactly what `read_rounds` / `read_lineages` /
`read_studies` return on the same files: the same rows, the same order, the same skipped files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from study.lake.reader import LakeRead, merge, read_many, table_files
from study.lake.schema import LINEAGE_KEYS, LINEAGES_SCHEMA, ROUND_KEYS, ROUNDS_SCHEMA, STUDIES_SCHEMA

TABLES = {
    "rounds": (ROUNDS_SCHEMA, ROUND_KEYS),
    "lineages": (LINEAGES_SCHEMA, LINEAGE_KEYS),
    "studies": (STUDIES_SCHEMA, ["study"]),
}


@dataclass
class _File:
    stamp: tuple[int, int, int]  # (inode, mtime_ns, size): files are replaced by rename, so a new inode
    table: pa.Table | None
    why_skipped: str | None


@dataclass
class IncrementalTable:
    """One table of the lake (rounds, lineages or studies), read incrementally."""

    root: Path
    kind: str
    study: str | None = None
    files: dict[Path, _File] = field(default_factory=dict)
    folders: dict[Path, pa.Table | None] = field(default_factory=dict)  # joined tables per folder
    result: LakeRead | None = None
    files_read: int = 0  # files read on the last refresh

    def refresh(self) -> tuple[LakeRead, bool]:
        """The table now, and whether it changed since the last refresh."""
        schema, keys = TABLES[self.kind]
        stamps: dict[Path, tuple[int, int, int]] = {}
        for path in table_files(self.root, self.kind, self.study):
            try:
                st = os.stat(path)
            except FileNotFoundError:  # removed between listing and stat (a compaction)
                continue
            stamps[path] = (st.st_ino, st.st_mtime_ns, st.st_size)
        gone = set(self.files) - set(stamps)
        changed = [p for p, s in stamps.items() if p not in self.files or self.files[p].stamp != s]
        self.files_read = len(changed)
        if self.result is not None and not gone and not changed:
            return self.result, False
        for path in gone:
            del self.files[path]
        for path, (table, why) in zip(changed, read_many(changed, schema), strict=True):
            self.files[path] = _File(stamps[path], table, why)
        dirty = {p.parent for p in (*gone, *changed)}
        ordered = sorted(self.files)
        by_folder: dict[Path, list[Path]] = {}
        for path in ordered:
            by_folder.setdefault(path.parent, []).append(path)
        for folder in dirty | (set(self.folders) - set(by_folder)):
            self.folders.pop(folder, None)
        for folder, paths in by_folder.items():
            if folder not in self.folders:
                tables = [t for t in (self.files[p].table for p in paths) if t is not None]
                self.folders[folder] = pa.concat_tables(tables) if tables else None
        # folders in the order their files come in a full read (sorted paths)
        joined = [self.folders[f] for f in dict.fromkeys(p.parent for p in ordered)]
        skipped = [f"{p}: {self.files[p].why_skipped}" for p in ordered if self.files[p].table is None]
        self.result = LakeRead(merge([t for t in joined if t is not None], schema, keys), skipped, len(ordered))
        return self.result, True


@dataclass
class IncrementalLake:
    """The three tables of a lake, each refreshed incrementally."""

    root: Path
    study: str | None = None
    tables: dict[str, IncrementalTable] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.tables = {kind: IncrementalTable(self.root, kind, self.study) for kind in TABLES}

    def refresh(self) -> tuple[dict[str, LakeRead], bool]:
        """Every table now, and whether any changed since the last refresh."""
        reads, changed = {}, False
        for kind, table in self.tables.items():
            reads[kind], table_changed = table.refresh()
            changed = changed or table_changed
        return reads, changed

    @property
    def files_read(self) -> int:
        return sum(t.files_read for t in self.tables.values())
