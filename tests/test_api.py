"""The Python API (issue 26): the README's notebook example runs as written, on a lake in a
temporary folder."""

import linecache
import re
import sys
from pathlib import Path

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
