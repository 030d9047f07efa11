"""Conclusions from the lake: the objectives that select (validation data only) and the summaries
that report. Plain Python over Parquet rows: no torch, no Ray."""
