"""A lineage worker loads a dataset once and serves every lineage it runs from it (issue 27:
data loaded once per worker, reused across lineages of the same dataset)."""

import torch
from conftest import synthetic_spec_dict

from study.engine.data import SharedTasks
from study.engine.registry import dataset_info, register_dataset
from study.search import lineage_tasks
from study.search.lineage_tasks import LineageJob


def test_a_lineage_worker_loads_a_dataset_once_for_the_lineages_it_runs(tmp_path, plugin_registries, monkeypatch):
    loads = []

    def counted():
        loads.append(1)
        g = torch.Generator().manual_seed(0)
        images = torch.randn(400, 1, 28, 28, generator=g)
        labels = torch.randint(0, 10, (400,), generator=g)
        return images[:300], labels[:300], images[300:], labels[300:]

    register_dataset("counted", counted)
    monkeypatch.setattr(lineage_tasks, "_worker_tasks", [])  # a fresh worker process
    rows = {}
    for seed in (0, 1):  # two lineage tasks, one after another, in this worker
        spec = synthetic_spec_dict(
            dataset="counted", seed=seed, rounds=1, data={"validation_size": 50}, chance_margin=None
        )
        job = LineageJob(spec, str(tmp_path), "s", f"t-s{seed}", None, "cpu", 1, None)
        rows[seed] = [item for _, item in lineage_tasks._run_jobs([job], None) if hasattr(item, "val_acc")]
    assert len(loads) == 1
    assert [r.round for r in rows[0]] == [r.round for r in rows[1]] == [0, 1]
    assert rows[0][0].val_acc != rows[1][0].val_acc or rows[0][0].val_loss != rows[1][0].val_loss  # two seeds


def test_shared_tasks_keep_the_datasets_last_used(plugin_registries):
    loads = []

    def loader(size: int):
        def load():
            loads.append(size)
            labels = torch.arange(size) % 2
            return torch.zeros(size, 4), labels, torch.zeros(10, 4), torch.arange(10) % 2

        return load

    for size in (60, 70, 80):
        register_dataset(f"d{size}", loader(size))
    from study.engine.spec import DataSpec

    shared, spec = SharedTasks(keep=2), DataSpec(validation_size=10)
    for name in ("d60", "d70", "d60", "d80", "d60", "d70"):
        shared.load(dataset_info(name), name, spec, 10, 0, torch.device("cpu"))
    assert loads == [60, 70, 80, 70]  # d60 kept as the last used; d70 let go for d80, then loaded again
