"""Any dataset (issue 26): arrays in a .npz, an image folder, a Parquet table or a loader named by
import path become the same in-memory task as the built-ins (their hold-out rule, per-channel
normalisation with training statistics, seeds), and bad data is one line naming the fix."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import userdata
from PIL import Image

from study.cli import main
from study.engine.registry import dataset_info
from study.engine.spec import DataSpec

VALIDATION = 15
NAMES = ("x_train", "y_train", "x_test", "y_test")


def write_npz(path, parts=None):
    np.savez(path, **dict(zip(NAMES, map(np.asarray, parts or userdata.images()), strict=True)))
    return path


def write_folder(root, parts=None):
    tx, ty, sx, sy = parts or userdata.images()
    for split, x, y in (("train", tx, ty), ("test", sx, sy)):
        for i in range(len(x)):
            folder = root / split / f"class{int(y[i])}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[i, 0].numpy()).save(folder / f"{i:03d}.png")
    return root


def write_parquet(path, label="label", split=True):
    tx, ty, sx, sy = userdata.images()
    x = torch.cat([tx, sx]).flatten(1).float().numpy()
    columns = {f"f{j}": x[:, j] for j in range(x.shape[1])}
    columns[label] = np.concatenate([ty.numpy(), sy.numpy()])
    if split:
        columns["split"] = ["train"] * len(tx) + ["test"] * len(sx)
    pq.write_table(pa.table(columns), path)
    return path


def task_of(name, **data):
    return dataset_info(name).load(DataSpec(validation_size=VALIDATION, **data), 10, 0, torch.device("cpu"))


def by_hand(x_train, y_train, x_test, images=True):
    """The hold-out and normalisation rule, computed here: validation = the first VALIDATION of a
    permutation seeded by split_seed 0; inputs scaled (uint8 / 255) and standardised with the
    training part's mean and standard deviation (per channel of an image, per feature of a row)."""
    x_train, x_test = x_train.double(), x_test.double()
    if images:
        x_train, x_test = x_train / 255, x_test / 255
    perm = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(0))
    val, train = perm[:VALIDATION], perm[VALIDATION:]
    dims = [0, 2, 3] if images else [0]
    mean, std = x_train[train].mean(dims, keepdim=True), x_train[train].std(dims, keepdim=True)
    return {
        "train_x": (x_train[train] - mean) / std,
        "val_x": (x_train[val] - mean) / std,
        "test_x": (x_test - mean) / std,
        "val_y": y_train[val],
    }


def assert_task(task, expected):
    for name, want in expected.items():
        got = getattr(task, name)
        assert got.shape == want.shape, name
        assert torch.allclose(got.double(), want.double(), atol=1e-5), name


def test_npz_image_folder_and_loaders_give_the_built_in_rule(tmp_path):
    tx, ty, sx, sy = userdata.images()
    expected = by_hand(tx, ty, sx)
    for name in (
        f"npz:{write_npz(tmp_path / 'data.npz')}",
        f"imagefolder:{write_folder(tmp_path / 'folder')}",
        "userdata:tensors",
        "userdata:datasets",  # (train, test) Datasets, materialised
        "userdata:numpy_arrays",
    ):
        task = task_of(name)
        assert_task(task, expected)
        assert task.num_classes == 3 and torch.equal(task.test_y, sy), name


def test_a_parquet_table_is_standardised_per_feature(tmp_path):
    tx, ty, sx, sy = userdata.images()
    task = task_of(f"parquet:{write_parquet(tmp_path / 't.parquet')}")
    assert_task(task, by_hand(tx.flatten(1).float(), ty, sx.flatten(1).float(), images=False))
    other = task_of(f"parquet:{write_parquet(tmp_path / 'y.parquet', label='y')}", label_column="y")
    assert torch.equal(other.val_y, task.val_y)


def test_subsets_channels_and_resize_apply_to_any_image_data(tmp_path):
    task = task_of("userdata:tensors", train_subset=40, test_subset=10, channels=3, resize=(4, 4))
    assert task.train_x.shape == (40 - VALIDATION, 3, 4, 4) and task.test_x.shape == (10, 3, 4, 4)
    assert torch.equal(task.train_x[:, 0], task.train_x[:, 2])  # the grey channel, repeated
    shape, classes, _ = dataset_info("userdata:tensors").signature(DataSpec(channels=3, resize=(4, 4)))
    assert (shape, classes) == ((3, 4, 4), 3)


def test_a_lineage_runs_on_a_npz_from_the_cli(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"model: usernets:mlp\ndataset: npz:{write_npz(tmp_path / 'd.npz')}\nrounds: 1\nchance_margin: null\n"
        f"train: {{lr: 0.01, iterations: 10, eval_every: 5, batch_size: 10}}\ndata: {{validation_size: {VALIDATION}}}\n"
    )
    assert main(["lineage", str(spec), "--results", str(tmp_path / "lake"), "--quiet"]) == 0
    assert len(list((tmp_path / "lake" / "rounds").rglob("*.parquet"))) == 1  # folded: rounds 0 and 1


def _folder_with(root, classes):
    tx, ty, sx, sy = userdata.images()
    keep = torch.isin(ty, torch.tensor(classes)), torch.isin(sy, torch.tensor(classes))
    return write_folder(root, (tx[keep[0]], ty[keep[0]], sx[keep[1]], sy[keep[1]]))


BAD_DATA = [
    ("userdata:wrong_lengths", "y_train must hold one label per example"),
    ("userdata:float_labels", "y_train must be integer class labels"),
    ("userdata:with_nan", "x_train holds NaN"),
    ("userdata:label_out_of_range", "test label 7 is out of range"),
    ("userdata:negative_labels", "labels must be 0..C-1, found -1"),
    ("userdata:nothing_here", "userdata has no attribute 'nothing_here'"),
    ("nosuchpackage.data:load", "module 'nosuchpackage' is not importable"),
    ("npz:{tmp}/missing.npz", "does not exist"),
    ("imagefolder:{tmp}/one_class", "has one class"),
    ("imagefolder:{tmp}/empty", "has no images"),
    ("parquet:{tmp}/nolabel.parquet", "no label column 'label'"),
    ("parquet:{tmp}/nosplit.parquet", "no 'split' column"),
]


@pytest.mark.parametrize("dataset, message", BAD_DATA)
def test_bad_data_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, dataset, message):
    _folder_with(tmp_path / "one_class", [0])
    for split in ("train", "test"):
        (tmp_path / "empty" / split / "class0").mkdir(parents=True)
        (tmp_path / "empty" / split / "class1").mkdir(parents=True)
    write_parquet(tmp_path / "nolabel.parquet", label="target")
    write_parquet(tmp_path / "nosplit.parquet", split=False)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"model: usernets:mlp\ndataset: {dataset.format(tmp=tmp_path)}\nrounds: 1\n"
        f"train: {{lr: 0.01, iterations: 10}}\ndata: {{validation_size: {VALIDATION}}}\n"
    )
    lake = tmp_path / "lake"
    assert main(["lineage", str(spec), "--results", str(lake), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not any(p.is_file() for p in lake.rglob("*")), "nothing written"
