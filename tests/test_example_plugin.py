"""The example plugin package (examples/plugin) end to end, as its README says: its study runs on
Ray with the package shipped to every worker (runtime_env.py_modules), on Fashion-MNIST images
this test writes to an image folder; its residual batch-norm CNN passes the packing check and its
two seeds train packed; a round's ticket is exported and re-trained from the file."""

import os
from pathlib import Path

import pytest
import ray
import yaml
from conftest import EXAMPLE_PLUGIN, requires_fashion_mnist

from study.cli import main
from study.errors import SpecError

pytestmark = [requires_fashion_mnist, pytest.mark.integration]


def write_fashion_folder(root: Path, n_train: int, n_test: int) -> Path:
    """The first Fashion-MNIST images of each split as PNG files, one folder per class."""
    from PIL import Image

    from study.engine.data.vision import load_raw
    from study.engine.spec import DataSpec

    tx, ty, sx, sy = load_raw("fashion_mnist", DataSpec())
    for split, x, y, n in (("train", tx, ty, n_train), ("test", sx, sy, n_test)):
        for i in range(n):
            folder = root / split / f"class{int(y[i])}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[i, 0].numpy()).save(folder / f"{i:05d}.png")
    return root


def study_file(tmp_path: Path, images: Path, runtime_env: bool) -> Path:
    raw = yaml.safe_load(open(os.path.join(EXAMPLE_PLUGIN, "study.yaml")))
    study = raw["study"]
    study["base"]["data"] = {"args": {"root": str(images)}, "validation_size": 100}
    study["base"]["train"] = {**study["base"]["train"], "iterations": 40, "eval_every": 20}
    study["storage"] = {"results": str(tmp_path / "lake")}
    if runtime_env:
        study["runtime_env"]["py_modules"] = [os.path.join(EXAMPLE_PLUGIN, "study_example")]
    else:
        del study["runtime_env"]
    path = tmp_path / f"study-{runtime_env}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.numerics  # packed (the lake) against lone (the re-training): make test-portability runs it
def test_the_example_plugin_study_runs_on_ray_packs_and_its_ticket_retrains(example_plugin_path, tmp_path, capsys):
    from test_user_models import _hand_macs

    import study

    images = write_fashion_folder(tmp_path / "fashion_folder", 300, 100)
    if ray.is_initialized():
        ray.shutdown()
    # a Ray started without the study's runtime_env: its workers lack the plugin, named before any trial
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with pytest.raises(
            SpecError, match=r"on Ray node .*: plugins: module 'study_example' is not importable here; .*py_modules"
        ):
            study.run_study(study_file(tmp_path, images, runtime_env=False))
    finally:
        ray.shutdown()

    outcome = study.run_study(study_file(tmp_path, images, runtime_env=True))  # starts Ray with py_modules
    ray.shutdown()
    assert outcome.errors == 0
    lake = study.Lake(tmp_path / "lake")
    lineages = lake.lineages()
    assert len(lineages) == 6 and set(lineages["status"]) == {"finished"}  # 2 seeds x (trunk + 2 branches)
    rounds = lake.frame("rounds")
    assert sorted(set(rounds["strategy"])) == ["imp", "imp.magnitude_at_init", "imp.random_reinit"]
    assert len(rounds) == 2 * (3 + 2 + 2)
    # packed: every training of a round (both seeds' trunks and branches) was one pack, one wall time
    assert all(group["wall_seconds"].nunique() == 1 for _, group in rounds.groupby("round"))
    best = outcome.best[0]  # the plugin's objective: the last round's validation accuracy, seed mean
    last = rounds[(rounds["round"] == 2) & rounds["branch"].isna()]
    assert best["values"][0] == pytest.approx(last["val_acc"].mean())

    from study_example.models import build_res_cnn

    model = build_res_cnn((1, 28, 28), 10)
    import torch

    assert set(rounds["macs_dense"]) == {_hand_macs(model, torch.zeros(1, 1, 28, 28), {})[0]}

    # the ticket of seed 0's round 2, exported and re-trained from the file (same seed, data order)
    trial = next(t for t in last["trial_id"] if t.endswith("-s0"))
    out = tmp_path / "ticket.pt"
    argv = ["ticket", "export", "example_plugin", "--trial", trial, "--round", "2", "--out", str(out)]
    assert main([*argv, "--results", str(tmp_path / "lake")]) == 0
    ticket = study.load_ticket(out)
    assert ticket.trained is not None  # keep_trained: last
    base = yaml.safe_load(open(os.path.join(EXAMPLE_PLUGIN, "study.yaml")))["study"]["base"]
    spec = study.load_spec(
        {
            **base,
            "data": {"args": {"root": str(images)}, "validation_size": 100},
            "rounds": 0,
            "branches": [],
            "train": {**base["train"], "iterations": 40, "eval_every": 20},
            "init_from": {"file": str(out)},
        }  # fmt: skip
    )
    again = study.run_lineage(spec, progress=False, threads=1)[0]
    lake_row = last[last["trial_id"] == trial].iloc[0]
    print(
        f"ticket round trip: lake round 2 val {lake_row['val_acc']:.4f} test {lake_row['test_acc']:.4f} (packed); "
        f"re-trained from {out.name}: val {again.val_acc:.4f} test {again.test_acc:.4f} (alone)"
    )
    assert again.remaining_pct == pytest.approx(lake_row["remaining_pct"])
    # the lake trained it packed, this alone: the same arithmetic but for float32 summation order, so
    # the two runs part by rounding only (relative 1e-7 a step, 40 Adam steps: far below 1e-3 in the loss);
    # an accuracy may differ by the one example of 100 whose two top scores sit within that rounding
    assert abs(again.val_acc - lake_row["val_acc"]) <= 1 / 100 and abs(again.test_acc - lake_row["test_acc"]) <= 1 / 100
    assert again.val_loss == pytest.approx(lake_row["val_loss"], rel=1e-3)
