"""The Python API (issue 26): the README's notebook example runs as written, on a lake in a
temporary folder."""

import linecache
import re
import sys
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def notebook_example() -> str:
    text = README.read_text()
    start = text.index("In a notebook (executed by `tests/test_api.py`)")
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


def test_the_readmes_notebook_example_runs(tmp_path, plugin_registries):
    code = notebook_example().replace('root = "results"', f"root = {str(tmp_path / 'lake')!r}")
    assert f"root = {str(tmp_path / 'lake')!r}" in code
    scope = {"__name__": "notebook"}
    cell = "<README notebook cell>"  # as Jupyter does: the cell's source in linecache, under a name of its own
    linecache.cache[cell] = (len(code), None, code.splitlines(keepends=True), cell)
    exec(compile(code, cell, "exec"), scope)  # noqa: S102  (the documented example, as written)
    rounds = scope["lake"].rounds()
    assert sorted(set(rounds["strategy"])) == ["imp", "imp.random_reinit"] and rounds["round"].max() == 2
    assert len(scope["lake"].paired()) == 2  # rounds 1 and 2: trunk − random re-init
    ticket, model = scope["ticket"], scope["model"]
    assert ticket.meta["round"] == 2 and ticket.trained is not None
    for name, mask in ticket.masks.items():  # the mask stays applied through torch's prune API
        owner, _, attr = name.rpartition(".")
        module = dict(model.named_modules())[owner]
        assert torch.equal(getattr(module, f"{attr}_mask"), mask.float()), name
        assert torch.equal(getattr(module, f"{attr}_orig"), ticket.theta_k[name]), name


def test_importing_study_loads_neither_torch_nor_ray():
    import subprocess

    code = "import sys, study; study.__all__; print('torch' in sys.modules, 'ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_the_lake_reads_masks_barriers_studies_and_a_study_spec(tmp_path):
    """`Lake.masks()` unpacks to the kept counts and the rounds' sparsity; `Lake.barriers()` holds
    the path whose barrier is max error along it minus the endpoints' mean (Frankle et al., 2020);
    `load_study` reads a study YAML."""
    import numpy as np
    from conftest import synthetic_spec_dict

    import study

    spec = study.load_spec(
        synthetic_spec_dict(
            rounds=2,
            instability={"rounds": [1]},
            train={"iterations": 40, "eval_every": 20},
            data={"validation_size": 200, "synthetic_size": 800},
        )
    )
    rows = study.run_lineage(spec, results=tmp_path, progress=False)
    lake = study.Lake(tmp_path)
    assert lake.studies() == ["adhoc"]
    masks = lake.masks().sort_values("round")
    assert list(masks["round"]) == [0, 1, 2]
    for mask, row in zip(masks.to_dict("records"), rows, strict=True):
        for name, bits in mask["layer_bits"].items():
            kept = int(np.unpackbits(np.frombuffer(bits, dtype=np.uint8))[: mask["layer_size"][name]].sum())
            assert kept == mask["layer_kept"][name], name
        weights = sum(mask["layer_size"].values())
        assert 100 * sum(mask["layer_kept"].values()) / weights == pytest.approx(row.remaining_pct, abs=1e-9)
    (path,) = lake.barriers().to_dict("records")
    errors = list(path["val_error"])
    assert path["round"] == 1 and len(errors) == len(path["alphas"])
    assert path["val_error_barrier"] == pytest.approx(max(errors) - (errors[0] + errors[-1]) / 2, abs=1e-12)
    assert rows[1].val_error_barrier == pytest.approx(path["val_error_barrier"], abs=1e-12)
    demo = study.load_study(README.parent / "search_spaces" / "studies" / "fashion_mnist_demo.yaml")
    assert demo.name == "fashion-mnist-demo" and "train.lr" in demo.search
