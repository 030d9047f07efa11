"""The CLI's tables, for people and for scripts: `--format table` draws a rich table that fits the
terminal (or `COLUMNS` when piped) without cutting the columns that identify a row, with the
columns every row shares folded into the title; `csv` and `json` write the raw values."""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

PIPED_WIDTH = 160  # a pipe without COLUMNS: wide enough for every table, as a file


class OutputFormat(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


def console() -> Console:
    """A console as wide as the terminal, or `COLUMNS` (also when piped), else `PIPED_WIDTH`."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return Console(width=int(columns))
    return Console(width=None if sys.stdout.isatty() else PIPED_WIDTH)


def hanging(line: str, width: int) -> str:
    """`line` wrapped at `width` between words, its continuation lines indented under its text
    (a list item's, '- ' or a leading indent, under the item's first word)."""
    import textwrap

    lead = len(line) - len(line.lstrip(" "))
    item = 2 if line.lstrip(" ").startswith("- ") else 0
    indent = " " * (lead + item + (2 if lead and not item else 0))
    return textwrap.fill(line, width=width, subsequent_indent=indent, break_on_hyphens=False, break_long_words=False)


def number(value: Any, digits: int = 3) -> str:
    """A cell: integers with thousands separators, floats at `digits` decimals, None as '-'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def sig3(value: Any) -> str:
    """A positive quantity (a % of weights, seconds) at 3 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value == 0:
        return "0"
    decimals = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f}"


@dataclass(frozen=True)
class Column:
    name: str
    identifies: bool = False  # never cut; left-aligned
    text: Callable[[Any], str] = number
    foldable: bool = True  # may move into the title when every row has the same value
    table: bool = True  # drawn in the table (csv and json hold every column)
    cell: Callable[[dict[str, Any]], str] | None = None  # the table's text from the whole row


@dataclass
class Output:
    """One table: its title, columns and rows of raw values (what csv and json write)."""

    title: str
    columns: list[Column]
    rows: list[list[Any]] = field(default_factory=list)
    key: str = "rows"  # its name in a json document of several tables

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip((c.name for c in self.columns), row, strict=True)) for row in self.rows]


def _folded(out: Output) -> tuple[str, list[int]]:
    """The title with the single-valued foldable columns in it, and the columns left to draw."""
    keep, folded = [], []
    for i, col in enumerate(out.columns):
        if not col.table:
            continue
        values = {json.dumps(row[i], default=str) for row in out.rows}
        if col.foldable and len(out.rows) > 1 and len(values) == 1:
            folded.append(f"{col.name} {col.text(out.rows[0][i])}")
        else:
            keep.append(i)
    title = out.title + (f" ({'; '.join(folded)})" if folded else "")
    return title, keep


def _cell(out: Output, i: int, row: list[Any]) -> str:
    col = out.columns[i]
    if col.cell is not None:
        return col.cell(dict(zip((c.name for c in out.columns), row, strict=True)))
    return col.text(row[i])


def rich_table(out: Output) -> Table:
    title, keep = _folded(out)
    table = Table(title=title, title_justify="left", collapse_padding=True, show_edge=False)
    for i in keep:
        col = out.columns[i]
        width = max([len(_cell(out, i, row)) for row in out.rows], default=0)
        if col.identifies:
            table.add_column(col.name, justify="left", no_wrap=True, min_width=width)
        else:  # a header wraps between words, never inside one
            table.add_column(col.name, justify="right", min_width=max(len(w) for w in col.name.split()))
    for row in out.rows:
        table.add_row(*[_cell(out, i, row) for i in keep])
    return table


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # a numpy scalar
        return value.item()
    return value


def emit(
    outputs: Sequence[Output],
    fmt: OutputFormat,
    con: Console,
    stream: TextIO | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Print `outputs`: tables for people; csv writes the first (one table per stream), json
    writes every one, keyed by its `key`, and `extra`'s entries beside them."""
    stream = stream or sys.stdout
    if fmt is OutputFormat.TABLE:
        for out in outputs:
            if out.rows:
                con.print(rich_table(out))
        return
    if fmt is OutputFormat.CSV:
        writer = csv.writer(stream, lineterminator="\n")
        first = outputs[0]
        writer.writerow([c.name for c in first.columns])
        writer.writerows([["" if v is None else _plain(v) for v in row] for row in first.rows])
        return
    doc: dict[str, Any] = dict(extra or {})
    doc |= {out.key: [{k: _plain(v) for k, v in r.items()} for r in out.records()] for out in outputs}
    stream.write(json.dumps(doc, indent=1, default=str) + "\n")
