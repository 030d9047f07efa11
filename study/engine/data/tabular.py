"""A Parquet table as a classification dataset (`dataset: parquet:PATH`): numeric feature
columns, a label column and a `split` column of train/test. The one engine module that reads
with pyarrow, imported only when such a dataset loads (tests/test_architecture.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from study.errors import SpecError


def read_parquet(path: Path, label: str, name: str) -> tuple[torch.Tensor, ...]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001  (pyarrow's many error types: a file that is not a table)
        raise SpecError(f"dataset {name}: {path} is not a readable Parquet table ({type(e).__name__})") from None
    columns = table.column_names
    if label not in columns:
        raise SpecError(
            f"dataset {name}: the table has no label column {label!r} (columns: {', '.join(columns[:12])}); "
            f"name it in data.label_column"
        )
    if "split" not in columns:
        raise SpecError(f"dataset {name}: the table has no 'split' column; add one saying train or test per row")
    features = [c for c in columns if c not in (label, "split")]
    if not features:
        raise SpecError(f"dataset {name}: the table has no feature columns besides {label!r} and 'split'")
    split = np.asarray(table.column("split").to_pylist(), dtype=object)
    unknown = sorted({str(s) for s in split} - {"train", "test"})
    if unknown:
        raise SpecError(f"dataset {name}: the split column holds {unknown[:3]}; use train or test")
    arrays = []
    for c in features:
        col = table.column(c).to_numpy(zero_copy_only=False)
        if col.dtype.kind not in "biuf":
            raise SpecError(f"dataset {name}: feature column {c!r} is {table.schema.field(c).type}, not numeric")
        arrays.append(col.astype(np.float32))
    x = np.stack(arrays, axis=1)
    y = table.column(label).to_numpy(zero_copy_only=False)
    if y.dtype.kind not in "iu":
        raise SpecError(
            f"dataset {name}: label column {label!r} is {table.schema.field(label).type}; use integers 0..C-1"
        )
    train, test = split == "train", split == "test"
    return torch.from_numpy(x[train]), torch.from_numpy(y[train]), torch.from_numpy(x[test]), torch.from_numpy(y[test])
