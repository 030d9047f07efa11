"""The lake's tables, each derived from one dataclass: the rounds table from the engine's
`RoundResult` (plus when the lake wrote the row), the instability table from its
`InstabilityResult` (likewise), the lineages table from `LineageRow` and the studies table from
`StudyRow`. A column is added in one place, as a field (nullable unless it is a
key); the schema evolves only by adding nullable columns.

Python types map to Arrow types: str -> string, int -> int64, float -> float64, bool -> bool,
datetime -> timestamp[us, UTC], bytes -> binary, list[T] -> list<T>, dict[str, float] -> map<string, float64>;
fields marked `category` are dictionary-encoded (the type hive partition values get), and a
field's `doc` is stored in the Parquet schema's field metadata."""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from study.engine.rows import FAILED_STATUSES as FAILED_STATUSES  # the lake's readers take them from here
from study.engine.rows import InstabilityResult, LineageColumns, MaskResult, RoundResult, doc, key
from study.engine.rows import LineageStatus as LineageStatus

SCHEMA_VERSION = "1"
_CATEGORY = pa.dictionary(pa.int32(), pa.string())
_SCALARS = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    dt.datetime: pa.timestamp("us", tz="UTC"),
    bytes: pa.binary(),
}


def _written_at() -> Any:
    """The lake-only column of a per-round table: when the lake wrote the row."""
    return field(default=None, metadata=doc("when the lake wrote the row (the latest copy of a row wins)"))


@dataclass(frozen=True)
class RoundRow(RoundResult):
    written_at: dt.datetime | None = _written_at()


@dataclass(frozen=True)
class MaskRow(MaskResult):
    written_at: dt.datetime | None = _written_at()


@dataclass(frozen=True)
class InstabilityRow(InstabilityResult):
    written_at: dt.datetime | None = _written_at()


@dataclass(frozen=True)
class LineageRow(LineageColumns):
    status: LineageStatus | None = field(
        default=None, metadata=doc("running, finished, stopped, failed, diverged or degenerate")
    )
    error: str | None = field(default=None, metadata=doc("why a lineage failed or stopped (one line)"))
    rounds_planned: int | None = field(default=None, metadata=doc("the last round the lineage will run"))
    rounds_done: int | None = None
    config_json: str | None = field(default=None, metadata=doc("the full lineage spec"))
    optuna_trial_number: int | None = None
    node_id: str | None = None
    device: str | None = None
    code_version: str | None = None
    started_at: dt.datetime | None = None
    updated_at: dt.datetime | None = field(
        default=None, metadata=doc("when the status was written (the latest copy wins)")
    )
    branch: str | None = field(default=None, metadata=doc("the branch this lineage is; null for a trunk"))
    trunk_lineage_id: str | None = field(default=None, metadata=doc("the lineage a branch grew from"))
    init_from: str | None = field(
        default=None, metadata=doc("the ticket the lineage started from (a file or lake round)")
    )


@dataclass(frozen=True)
class StudyRow:
    study: str = field(metadata=key("the study", category=True))
    objective: str | None = None
    metrics: list[str] | None = None
    modes: list[str] | None = None
    search_json: str | None = field(default=None, metadata=doc("the searched parameters"))
    spec_json: str | None = field(
        default=None, metadata=doc("the whole study spec (its identity is checked on re-runs)")
    )
    code_version: str | None = None
    written_at: dt.datetime | None = None


def arrow_type(tp: Any) -> pa.DataType:
    """The Arrow type of a field's Python type (Optional[T] as T: nullability is separate)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"a lake column has one type, not {tp}")
        return arrow_type(inner[0])
    if origin is list:
        return pa.list_(arrow_type(args[0]))
    if origin is dict:
        return pa.map_(arrow_type(args[0]), arrow_type(args[1]))
    if tp in _SCALARS:
        return _SCALARS[tp]
    if isinstance(tp, type) and issubclass(tp, str):  # a StrEnum (LineageStatus): its values are strings
        return pa.string()
    raise TypeError(f"no lake column type for {tp}; use str, int, float, bool, datetime, list or dict of them")


def schema_of(cls: type, table: str) -> pa.Schema:
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        doc = f.metadata.get("doc")
        fields.append(
            pa.field(
                f.name,
                _CATEGORY if f.metadata.get("category") else arrow_type(hints[f.name]),
                nullable=not f.metadata.get("key"),
                metadata={b"doc": doc.encode()} if doc else None,
            )
        )
    return pa.schema(
        fields, metadata={b"study.schema_version": SCHEMA_VERSION.encode(), b"study.table": table.encode()}
    )


ROUNDS_SCHEMA = schema_of(RoundRow, "rounds")
INSTABILITY_SCHEMA = schema_of(InstabilityRow, "instability")
MASKS_SCHEMA = schema_of(MaskRow, "masks")
LINEAGES_SCHEMA = schema_of(LineageRow, "lineages")
STUDIES_SCHEMA = schema_of(StudyRow, "studies")
STATUSES = tuple(LineageStatus)  # a lineages row's status: one of these (FAILED_STATUSES never count)
# one row per key (a retried round, a compacted copy: the latest written wins); never merged
# across lineages, and strategy and config_hash follow from the lineage id
ROUND_KEYS = ["study", "trial_id", "lineage_id", "round"]
LINEAGE_KEYS = ["study", "trial_id", "lineage_id"]
TABLES: dict[str, tuple[pa.Schema, list[str]]] = {  # every table of the lake: its schema and row key
    "rounds": (ROUNDS_SCHEMA, ROUND_KEYS),
    "lineages": (LINEAGES_SCHEMA, LINEAGE_KEYS),
    "studies": (STUDIES_SCHEMA, ["study"]),
    "instability": (INSTABILITY_SCHEMA, ROUND_KEYS),
    "masks": (MASKS_SCHEMA, ROUND_KEYS),
}
