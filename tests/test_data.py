import pytest
import torch
from conftest import requires_fashion_mnist
from formats import write_cifar10, write_idx

from study.engine.data import load_task
from study.engine.spec import DataSpec
from study.errors import SpecError


def test_synthetic_split_is_seeded_disjoint_and_normalised():
    spec = DataSpec(validation_size=300, synthetic_size=1200)
    a = load_task("synthetic", spec, batch_size=32, seed=0)
    b = load_task("synthetic", spec, batch_size=32, seed=5)
    assert len(a.train_x) == 900 and len(a.val_x) == 300 and len(a.test_x) == 240
    assert torch.equal(a.val_x, b.val_x), "the split depends on split_seed only"
    assert a.train_x.dtype == torch.float32 and abs(float(a.train_x.mean())) < 1.0
    c = load_task("synthetic", DataSpec(validation_size=300, synthetic_size=1200, split_seed=1), batch_size=32, seed=0)
    assert not torch.equal(a.val_x, c.val_x)
    rows = {tuple(r.tolist()) for r in a.val_x.flatten(1)[:, :16]}
    assert not any(tuple(r.tolist()) in rows for r in a.train_x.flatten(1)[:, :16])


def test_batches_are_addressed_by_iteration_and_cover_each_epoch():
    task = load_task("synthetic", DataSpec(validation_size=300, synthetic_size=1200), batch_size=30, seed=3)
    first = [task.batch(i)[1] for i in range(task.steps_per_epoch)]
    seen = torch.cat(first)
    assert len(seen) == 900 and torch.equal(seen.sort().values, task.train_y.sort().values)
    x7, y7 = task.batch(7)
    later = task.batch(task.steps_per_epoch + 2)  # moves to epoch 1
    fresh = load_task("synthetic", DataSpec(validation_size=300, synthetic_size=1200), batch_size=30, seed=3)
    assert torch.equal(fresh.batch(7)[0], x7) and torch.equal(task.batch(7)[1], y7)
    assert not torch.equal(later[1], task.batch(2)[1])


def test_cifar_augmentation_crops_and_flips_on_tensors():
    task = load_task(
        "synthetic_cifar", DataSpec(validation_size=100, synthetic_size=400, augment=True), batch_size=16, seed=0
    )
    x, y = task.batch(0)
    assert x.shape == (16, 3, 32, 32) and y.shape == (16,)
    plain = load_task(
        "synthetic_cifar", DataSpec(validation_size=100, synthetic_size=400, augment=False), batch_size=16, seed=0
    )
    xp, yp = plain.batch(0)
    assert torch.equal(y, yp) and not torch.equal(x, xp)
    oy, ox, flip = (a[:16] for a in task._aug)
    i = int(torch.nonzero((oy == 4) & (ox == 4) & ~flip)[0]) if ((oy == 4) & (ox == 4) & ~flip).any() else None
    if i is not None:
        assert torch.equal(x[i], xp[i])
    assert torch.equal(task.batch(0)[0], x), "augmentation is seeded"


def test_mnist_from_real_idx_files(tmp_path):
    write_idx(tmp_path / "MNIST" / "raw", n_train=120, n_test=40)
    task = load_task("mnist", DataSpec(root=str(tmp_path), validation_size=20), batch_size=10, seed=0)
    assert task.train_x.shape == (100, 1, 28, 28) and task.val_x.shape == (20, 1, 28, 28)
    assert task.test_x.shape == (40, 1, 28, 28) and task.num_classes == 10
    assert task.augment is False


def test_fashion_mnist_flat_gz_folder_is_staged(tmp_path, monkeypatch):
    write_idx(tmp_path / "flat", gz=True, n_train=60, n_test=20)
    monkeypatch.setenv("STUDY_DATA_DIR", str(tmp_path / "flat"))
    task = load_task("fashion_mnist", DataSpec(validation_size=10), batch_size=10, seed=0)
    assert task.train_x.shape == (50, 1, 28, 28) and task.test_x.shape[0] == 20


def test_cifar10_from_real_pickle_batches(tmp_path):
    write_cifar10(tmp_path, per_batch=20, n_test=30)
    task = load_task("cifar10", DataSpec(root=str(tmp_path), validation_size=10), batch_size=10, seed=0)
    assert task.train_x.shape == (90, 3, 32, 32) and task.test_x.shape == (30, 3, 32, 32)
    assert task.augment is True
    x, _ = task.batch(0)
    assert x.shape == (10, 3, 32, 32)


def test_missing_dataset_names_where_it_looked(tmp_path):
    with pytest.raises(SpecError) as e:
        load_task("cifar10", DataSpec(root=str(tmp_path)), batch_size=10, seed=0)
    msg = str(e.value)
    assert "dataset 'cifar10' not found" in msg and str(tmp_path) in msg and "\n" not in msg


def test_validation_larger_than_training_set(tmp_path):
    with pytest.raises(SpecError, match="leaves no training data"):
        load_task("synthetic", DataSpec(validation_size=5000, synthetic_size=1000), batch_size=10, seed=0)


@requires_fashion_mnist
def test_real_fashion_mnist_paper_split():
    task = load_task("fashion_mnist", DataSpec(), batch_size=60, seed=0)
    assert (len(task.train_x), len(task.val_x), len(task.test_x)) == (55000, 5000, 10000)
    assert abs(float(task.train_x.mean())) < 0.05 and abs(float(task.train_x.std()) - 1) < 0.05
    assert sorted(task.train_y.unique().tolist()) == list(range(10))


def test_concurrent_staging_of_a_flat_folder(tmp_path, monkeypatch):
    """Parallel trials on one machine stage the same dataset at once without colliding."""
    import subprocess
    import sys

    write_idx(tmp_path / "flat", gz=True, n_train=3000, n_test=500)
    env = {
        **__import__("os").environ,
        "STUDY_DATA_DIR": str(tmp_path / "flat"),
        "STUDY_CACHE_DIR": str(tmp_path / "cache"),
    }
    code = (
        "from study.engine.data import load_task; from study.engine.spec import DataSpec; "
        "print(len(load_task('fashion_mnist', DataSpec(validation_size=100), batch_size=10, seed=0).train_x))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outs = [p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-300:] for o in outs]
    assert [o[0].strip() for o in outs] == ["2900"] * 4


def test_second_load_comes_from_the_tensor_cache_without_torchvision(tmp_path):
    import subprocess
    import sys

    write_idx(tmp_path / "MNIST" / "raw", n_train=50, n_test=10)
    env = {**__import__("os").environ, "STUDY_CACHE_DIR": str(tmp_path / "cache")}
    code = (
        f"import sys; from study.engine.data import load_task; from study.engine.spec import DataSpec; "
        f"t = load_task('mnist', DataSpec(root={str(tmp_path)!r}, validation_size=10), batch_size=5, seed=0); "
        f"print(float(t.train_x.sum()), 'torchvision' in sys.modules)"
    )
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert first.stdout.split()[1] == "True" and second.stdout.split()[1] == "False"
    assert first.stdout.split()[0] == second.stdout.split()[0]
    assert len(list((tmp_path / "cache" / "tensors").glob("mnist-*.pt"))) == 1


@requires_fashion_mnist
def test_stage_data_puts_the_files_where_a_pods_data_dir_finds_them(tmp_path, monkeypatch):
    """`study stage-data` (the cluster's staging Job): the system's Fashion-MNIST copied under
    the target folder in torchvision's layout; with $STUDY_DATA_DIR there, that copy is the one
    found."""
    from study.cli import main
    from study.engine.data.vision import SOURCES, find_root
    from study.engine.spec import DataSpec

    target = tmp_path / "datasets"
    assert main(["stage-data", "fashion_mnist", "--to", str(target)]) == 0
    source = SOURCES["fashion_mnist"]
    staged = target / source.folder
    assert sorted(p.name for p in staged.iterdir()) == sorted(source.files), "the files, no temporaries"
    monkeypatch.setenv("STUDY_DATA_DIR", str(target))
    monkeypatch.setenv("STUDY_CACHE_DIR", str(tmp_path / "cache"))
    assert find_root("fashion_mnist", DataSpec()) == target
    stamps = {p.name: p.stat().st_mtime_ns for p in staged.iterdir()}
    assert main(["stage-data", "fashion_mnist", "--to", str(target)]) == 0
    assert stamps == {p.name: p.stat().st_mtime_ns for p in staged.iterdir()}, "staged once"
    assert main(["stage-data", "imagenet", "--to", str(target)]) == 2
