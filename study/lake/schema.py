"""The lake's three tables and their canonical pyarrow schemas. The schema evolves only by adding
nullable columns."""
from __future__ import annotations

import pyarrow as pa

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

