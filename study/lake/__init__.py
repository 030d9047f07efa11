"""The results lake: one canonical pyarrow schema per table, an atomic writer, a tolerant reader
and a compaction step.

    <root>/rounds/study=<s>/strategy=<k>/<trial>-r<round:03d>.parquet   one row per lineage-round
    <root>/rounds/study=<s>/strategy=<k>/<trial>.rounds.parquet         a finished lineage, folded
    <root>/lineages/study=<s>/strategy=<k>/<trial>.parquet              config, status, ids
    <root>/studies/study=<s>/study.parquet                               a search's space and objective

Files are written to a dot-prefixed temp file in the same folder and renamed into place, so a
re-run round replaces its own file and no reader ever sees half a file. `study` and `strategy`
are stored in the files too (dictionary-encoded, the type hive partitions get), so DuckDB's
`read_parquet(..., hive_partitioning=true, union_by_name=true)`, `pandas.read_parquet(dir)` and
single-file reads all agree. The schema evolves only by adding nullable columns.
"""
