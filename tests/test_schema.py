"""The lake's schemas are derived from the engine's and the lake's dataclasses: checked here
against the schemas as they were written out by hand before (so the lake did not change), and a
new field becoming a column on its own."""

import dataclasses
import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq

from study.engine.rows import RoundResult
from study.lake.reader import read_rounds
from study.lake.schema import (
    INSTABILITY_SCHEMA,
    LINEAGES_SCHEMA,
    MASKS_SCHEMA,
    ROUNDS_SCHEMA,
    STUDIES_SCHEMA,
    RoundRow,
    schema_of,
)

CAT, F64, I64, S = pa.dictionary(pa.int32(), pa.string()), pa.float64(), pa.int64(), pa.string()
MAP, TS = pa.map_(pa.string(), pa.float64()), pa.timestamp("us", tz="UTC")
KEY = object()  # marks a non-nullable column

# the tables as they were written out column by column (schema version 1); both start with a
# lineage's identity
IDENTITY_V1 = {
    "study": (CAT, KEY),
    "strategy": (CAT, KEY),
    "trial_id": (S, KEY),
    "lineage_id": (S, KEY),
    "config_hash": (S, KEY),
    "model": S,
    "dataset": S,
    "seed": I64,
}
ROUNDS_V1 = {
    **IDENTITY_V1,
    "round": (I64, KEY),
    "remaining_pct": F64,
    "layer_remaining_pct": MAP,
    "scope": S,
    "prune_rate": F64,
    "lr": F64,
    "rewind_iteration": I64,
    "early_stop_iteration": I64,
    "val_acc": F64,
    "val_loss": F64,
    "test_acc": F64,
    "test_loss": F64,
    "final_val_acc": F64,
    "final_test_acc": F64,
    "final_train_loss": F64,
    "iterations": I64,
    "wall_seconds": F64,
    "device": S,
    "code_version": S,
    "written_at": TS,
    "curve_iteration": pa.list_(I64),
    "curve_train_loss": pa.list_(F64),
    "curve_val_loss": pa.list_(F64),
    "curve_val_acc": pa.list_(F64),
    "curve_test_acc": pa.list_(F64),
    "val_perplexity": F64,
    "test_perplexity": F64,
    "parse_f1": MAP,
    "parse_baselines": MAP,
    "group_remaining_pct": MAP,
    "accuracy_by_length": MAP,
    "parse_examples_json": S,
    "chance_val_acc": F64,
    "macs_dense": I64,
    "macs_remaining": I64,
    "compression_ratio": F64,
    "theoretical_speedup": F64,
    "branch": S,
    "trunk_lineage_id": S,
    "val_error_barrier": F64,
    "test_error_barrier": F64,
    "chance_by_length": MAP,
    "trained_max_length": I64,
    "threads": I64,
}
LINEAGES_V1 = {
    **IDENTITY_V1,
    "status": S,
    "error": S,
    "rounds_planned": I64,
    "rounds_done": I64,
    "config_json": S,
    "optuna_trial_number": I64,
    "node_id": S,
    "device": S,
    "code_version": S,
    "started_at": TS,
    "updated_at": TS,
    "branch": S,
    "trunk_lineage_id": S,
    "init_from": S,  # issue 26: the ticket a lineage started from
}
STUDIES_V1 = {
    "study": (CAT, KEY),
    "objective": S,
    "metrics": pa.list_(S),
    "modes": pa.list_(S),
    "search_json": S,
    "spec_json": S,
    "code_version": S,
    "written_at": TS,
}


LIST_F64 = pa.list_(F64)
INSTABILITY_V1 = {  # a new table (issue 13): one row per measured lineage-round
    **IDENTITY_V1,
    "round": (I64, KEY),
    "remaining_pct": F64,
    "rewind_iteration": I64,
    "alphas": LIST_F64,
    "val_loss": LIST_F64,
    "val_error": LIST_F64,
    "test_loss": LIST_F64,
    "test_error": LIST_F64,
    "val_error_barrier": F64,
    "test_error_barrier": F64,
    "val_loss_barrier": F64,
    "test_loss_barrier": F64,
    "iterations": I64,
    "wall_seconds": F64,
    "code_version": S,
    "error": S,
    "written_at": TS,
}


MASKS_V1 = {  # a new table (issue 13): one packed mask per lineage-round
    **IDENTITY_V1,
    "round": (I64, KEY),
    "remaining_pct": F64,
    "layer_size": pa.map_(S, I64),
    "layer_kept": pa.map_(S, I64),
    "layer_bits": pa.map_(S, pa.binary()),
    "branch": S,
    "trunk_lineage_id": S,
    "written_at": TS,
}


def as_expected(schema: pa.Schema) -> dict:
    return {f.name: (f.type, KEY) if not f.nullable else f.type for f in schema}


def test_derived_schemas_equal_the_hand_written_ones():
    assert as_expected(ROUNDS_SCHEMA) == ROUNDS_V1
    assert as_expected(LINEAGES_SCHEMA) == LINEAGES_V1
    assert as_expected(STUDIES_SCHEMA) == STUDIES_V1
    assert as_expected(INSTABILITY_SCHEMA) == INSTABILITY_V1
    assert as_expected(MASKS_SCHEMA) == MASKS_V1
    for schema, table in (
        (ROUNDS_SCHEMA, b"rounds"),
        (LINEAGES_SCHEMA, b"lineages"),
        (STUDIES_SCHEMA, b"studies"),
        (INSTABILITY_SCHEMA, b"instability"),
        (MASKS_SCHEMA, b"masks"),
    ):
        assert schema.metadata == {b"study.schema_version": b"1", b"study.table": table}


def test_every_engine_result_field_is_a_column_and_documented_ones_carry_their_doc():
    assert [f.name for f in dataclasses.fields(RoundResult)] == ROUNDS_SCHEMA.names[
        : len(dataclasses.fields(RoundResult))
    ]
    assert b"selection data" in ROUNDS_SCHEMA.field("val_acc").metadata[b"doc"]
    assert b"never used to choose" in ROUNDS_SCHEMA.field("test_acc").metadata[b"doc"]


def test_a_new_field_is_a_new_nullable_column_of_its_type():
    @dataclasses.dataclass(frozen=True)
    class Extended(RoundRow):
        sharpness: float | None = None
        per_layer_norm: dict[str, float] | None = None
        flags: list[bool] | None = None

    schema = schema_of(Extended, "rounds")
    assert schema.field("sharpness").type == F64 and schema.field("sharpness").nullable
    assert schema.field("per_layer_norm").type == MAP and schema.field("flags").type == pa.list_(pa.bool_())
    assert schema.names[: len(ROUNDS_SCHEMA)] == ROUNDS_SCHEMA.names


def test_a_file_written_in_the_old_column_order_reads_back_by_name(tmp_path):
    """Files written before the schema was derived put written_at among the other columns."""
    old_order = list(ROUNDS_V1)
    row = {name: None for name in old_order}
    row.update(
        study="s",
        strategy="imp",
        trial_id="t",
        lineage_id="l",
        config_hash="h",
        round=2,
        val_acc=0.75,
        written_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        curve_iteration=[0, 10],
    )
    schema = pa.schema([ROUNDS_SCHEMA.field(n) for n in old_order])
    table = pa.table(
        {n: pa.array([row[n]], schema.field(n).type if n not in ("study", "strategy") else S) for n in old_order}
    ).cast(schema)
    path = tmp_path / "rounds" / "study=s" / "strategy=imp" / "t-r002.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(table, path)
    read = read_rounds(tmp_path)
    assert not read.skipped and read.table.schema.names == ROUNDS_SCHEMA.names
    got = read.table.to_pylist()[0]
    assert got["round"] == 2 and got["val_acc"] == 0.75 and got["curve_iteration"] == [0, 10]
    assert got["written_at"] == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
