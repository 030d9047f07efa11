from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

FASHION_DIR = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Staged datasets go to a per-session cache, never the user's home."""
    monkeypatch.setenv("STUDY_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "study-cache"))
    monkeypatch.delenv("STUDY_DATA_DIR", raising=False)


def synthetic_spec_dict(**overrides) -> dict:
    base = {
        "model": "lenet_300_100",
        "dataset": "synthetic",
        "strategy": "imp",
        "rounds": 3,
        "seed": 0,
        "train": {"lr": 1.0e-3, "iterations": 60, "eval_every": 20, "batch_size": 32},
        "data": {"validation_size": 300, "synthetic_size": 1200},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


@pytest.fixture
def make_spec():
    from study.specs import lineage_spec_from_dict

    return lambda **kw: lineage_spec_from_dict(synthetic_spec_dict(**kw))


requires_fashion_mnist = pytest.mark.skipif(
    not os.path.isdir(FASHION_DIR), reason="apt-get install dataset-fashion-mnist"
)
