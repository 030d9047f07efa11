"""Plugins (issue 26): a user's models, datasets, strategies, branches and objectives register
from their own package, by entry point or by a spec's `plugins:` modules, into the same
registries as the built-ins; their source is part of a lineage's identity; `study k8s render`
says how they reach the image."""

import textwrap

import pytest
import yaml
from conftest import EXAMPLE_PLUGIN, synthetic_spec_dict

from study.cli import main
from study.engine.lineage import Lineage, RunContext
from study.engine.spec import lineage_spec_from_dict
from study.errors import SpecError

DEMO = """
import math
from torch import nn
from study.analysis.objectives import Objective
from study.engine.branches import Branch
from study.engine.strategies import Magnitude, Reset, Strategy
import userdata


def build(input_shape, num_classes, hidden={hidden}):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def load():
    return userdata.images(n_train=120, n_test=30)


STRATEGY = Strategy("ep_rewind_trained", "IMP keeping the trained weights", Magnitude(), Reset("trained"))
BRANCH = Branch("ep_same_mask", "the trunk's mask, from its restart weights", lambda step: step.trunk_mask, "trunk")
OBJECTIVE = Objective("ep_first_val_acc", ("objective_ep_first_val_acc",), ("max",), lambda points, p: (points[0].val_acc,), lambda points, p: 0)
"""
ENTRY_POINTS = """
[study.models]
ep_mlp = study_ep_demo:build
[study.datasets]
ep_images = study_ep_demo:load
[study.strategies]
ep_rewind_trained = study_ep_demo:STRATEGY
[study.branches]
ep_same_mask = study_ep_demo:BRANCH
[study.objectives]
ep_first_val_acc = study_ep_demo:OBJECTIVE
"""


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch, plugin_registries):
    """A plugin package 'installed' on sys.path: its module and its dist-info with entry points."""
    site = tmp_path / "site"
    (site / "study_ep_demo").mkdir(parents=True)
    (site / "study_ep_demo" / "__init__.py").write_text(DEMO.format(hidden=16))
    info = site / "study_ep_demo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: study-ep-demo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    return site


def spec_of(**kw):
    base = synthetic_spec_dict(train={"iterations": 20, "eval_every": 10}, data={"validation_size": 30}, **kw)
    return lineage_spec_from_dict(base)


def test_entry_points_register_models_datasets_strategies_branches_and_objectives(installed_plugin):
    from study.analysis.objectives import OBJECTIVES, objective
    from study.engine.strategies import STRATEGIES

    assert "ep_rewind_trained" not in STRATEGIES  # found by name on first use, not at import
    spec = spec_of(model="ep_mlp", dataset="ep_images", strategy="ep_rewind_trained", branches=["ep_same_mask"],
                   rounds=1, chance_margin=None)  # fmt: skip
    lineage = Lineage(spec, context=RunContext(threads=1))
    rows = [r.trunk for r in lineage]
    assert [r.round for r in rows] == [0, 1] and lineage.state.branch_results[
        0
    ].strategy == "ep_rewind_trained.ep_same_mask"
    assert lineage.state.branch_results[0].remaining_pct == rows[1].remaining_pct  # the trunk's mask
    assert rows[0].macs_dense == 64 * 16 + 16 * 3
    sources = spec.hparam_dict()["sources"]
    assert {
        sources[k]["module"] for k in ("model", "dataset", "strategies.ep_rewind_trained", "branches.ep_same_mask")
    } == {"study_ep_demo"}
    assert objective("ep_first_val_acc") is OBJECTIVES["ep_first_val_acc"]


def test_a_plugin_name_cannot_take_a_built_in_one(installed_plugin):
    from study.engine.registry import register_model

    with pytest.raises(SpecError, match="has the name of a built-in one"):
        register_model("lenet_300_100", lambda s, n: None)


def test_a_changed_plugin_never_resumes_or_merges_with_the_old_lineage(installed_plugin, tmp_path):
    """The same spec, run again in a new process after the user edited the plugin: another
    lineage id, so the trial that holds the old lineage refuses it (no silent resume)."""
    import os
    import subprocess
    import sys

    spec = spec_of(model="ep_mlp", dataset="ep_images", rounds=0, chance_margin=None)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec.to_dict()))
    tests = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed_plugin), tests])}
    argv = [sys.executable, "-m", "study.cli", "lineage", str(path), "--trial", "t1", "--results", str(tmp_path / "lake"), "--quiet"]  # fmt: skip
    first = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    # the user edits it, shapes and defaults alike: only the source hash can tell
    edited = DEMO.format(hidden=16).replace("nn.ReLU()", "nn.Tanh()")
    (installed_plugin / "study_ep_demo" / "__init__.py").write_text(edited)
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert (
        again.returncode == 2 and f"trial t1 of study adhoc already holds lineage {spec.lineage_id()}" in again.stderr
    )


def test_spec_plugins_import_modules_that_register(example_plugin_path):
    spec = lineage_spec_from_dict(
        {
            **synthetic_spec_dict(),
            "plugins": ["study_example"],
            "model": "res_cnn",
            "strategy": "magnitude_increase",
            "branches": ["magnitude_at_init"],
            "rounds": 1,
        }  # fmt: skip
    )
    assert spec.hparam_dict()["sources"]["plugins"]["study_example"]["module"] == "study_example"
    with pytest.raises(SpecError, match="plugins: module 'no_such_plugin' is not importable here; install its package"):
        lineage_spec_from_dict({**synthetic_spec_dict(), "plugins": ["no_such_plugin"]})


def test_k8s_render_says_how_a_plugin_reaches_the_image(example_plugin_path, tmp_path, capsys):
    raw = yaml.safe_load(open(f"{EXAMPLE_PLUGIN}/study.yaml"))
    raw["study"]["runtime_env"]["py_modules"] = [f"{EXAMPLE_PLUGIN}/study_example"]  # a folder of this machine
    space = tmp_path / "study.yaml"
    space.write_text(yaml.safe_dump(raw))
    argv = ["k8s", "render", str(space), "--profile", "cpu-dev", "--existing-claim", "lake"]
    assert main(argv) == 2
    assert "is a path on this machine, which the pods do not have" in capsys.readouterr().err
    del raw["study"]["runtime_env"]
    space.write_text(yaml.safe_dump(raw))
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "this study runs your code (plugins study_example; model res_cnn; dataset fashion_folder)" in err
    assert "add `RUN pip install <your package>` to k8s/Dockerfile" in err
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump({"study": {"name": "p", "base": synthetic_spec_dict()}}))
    assert main([*argv[:2], str(plain), *argv[3:]]) == 0
    assert "runs your code" not in capsys.readouterr().err


def test_a_plugin_module_is_hashed_by_its_package_source(tmp_path, monkeypatch, plugin_registries):
    from study.plugins import package_hash

    pkg = tmp_path / "userplugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(textwrap.dedent("def build(s, n):\n    pass\n"))
    monkeypatch.syspath_prepend(str(tmp_path))
    first = package_hash("userplugin")
    (pkg / "helpers.py").write_text("X = 1\n")  # a file the factory's module may import
    package_hash.cache_clear()
    assert package_hash("userplugin") != first


def test_a_function_whose_file_no_longer_matches_still_gets_an_identity(tmp_path):
    """A notebook or script function whose file changed since it ran (inspect.getsource then
    reads lines that do not parse) is identified by its compiled code, not refused."""
    from study.plugins import code_hash

    file = tmp_path / "notes.md"
    file.write_text("text (\n" * 3)  # what sits at the function's lines now: an unclosed bracket
    scope: dict = {}
    exec(compile("def build(shape, classes):\n    return shape\n", str(file), "exec"), scope)  # noqa: S102
    first = code_hash(scope["build"])
    assert len(first) == 16 and first == code_hash(scope["build"])
