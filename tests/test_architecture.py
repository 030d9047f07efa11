"""The layer rules of ARCHITECTURE.md, checked on the source: which layer may import what, no
import cycles between modules, and an app that loads neither torch nor Ray."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "study"

# layer -> (third-party packages it must not import, our packages it must not import)
RULES = {
    "study.engine": (
        {"ray", "optuna", "pyarrow", "streamlit", "duckdb", "pandas"},
        {"study.lake", "study.search", "study.deploy", "study.app", "study.cli"},
    ),
    "study.lake": ({"ray", "optuna", "streamlit"}, {"study.search", "study.deploy", "study.app", "study.cli"}),
    "study.analysis": (
        {"torch", "ray", "optuna", "streamlit"},
        {"study.engine.lineage", "study.search", "study.deploy", "study.app", "study.cli"},
    ),
    "study.search": ({"streamlit"}, {"study.deploy", "study.app", "study.cli"}),
    "study.deploy": ({"streamlit"}, {"study.app", "study.cli"}),
    "study.app": (
        {"torch", "ray"},
        {"study.engine.lineage", "study.engine.train", "study.search.tune", "study.deploy", "study.cli"},
    ),
}
LEAVES = {"study.errors", "study.typed_yaml", "study.version", "study.secrets"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Every module `path` imports (inside functions too, unless `top_level_only`); imports
    under `if TYPE_CHECKING:` are left out (they never run)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import) and not (nested and top_level_only):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not (nested and top_level_only):
                found.add(child.module)
                found.update(f"{child.module}.{a.name}" for a in child.names)
            visit(child, nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


# module -> a banned package it may import, and why (imported lazily: importing the engine never loads it)
EXCEPTIONS = {"study.engine.data.tabular": "pyarrow"}  # a user's Parquet dataset is read with pyarrow


@pytest.mark.parametrize("layer", sorted(RULES))
def test_each_layer_imports_only_what_it_may(layer):
    banned_third_party, banned_ours = RULES[layer]
    problems = []
    for name, path in MODULES.items():
        if not within(name, layer):
            continue
        for imported in imports(path):
            root = imported.split(".")[0]
            if root in banned_third_party and EXCEPTIONS.get(name) != root:
                problems.append(f"{name} imports {imported}")
            if any(within(imported, banned) for banned in banned_ours):
                problems.append(f"{name} imports {imported}")
    assert not problems, problems


def test_leaf_modules_import_nothing_of_ours():
    for name in LEAVES:
        ours = {
            i
            for i in imports(MODULES[name])
            if within(i, "study") and i not in LEAVES and not any(within(i, leaf) for leaf in LEAVES)
        }
        assert not ours, (name, ours)


def test_no_import_cycles_between_modules():
    graph = {}
    for name, path in MODULES.items():
        targets = set()
        for imported in imports(path, top_level_only=True):
            # `from study.x import y` names module study.x.y when that is a module, else study.x
            target = imported if imported in MODULES else imported.rsplit(".", 1)[0]
            if target in MODULES and target != name:
                targets.add(target)
        graph[name] = targets
    # a package's __init__ importing its own submodules is how packages work, not a cycle
    cycles = [cycle for cycle in _cycles(graph) if not _package_init_only(cycle)]
    assert not cycles, cycles


def _package_init_only(cycle: list[str]) -> bool:
    return all(any(within(b, a) or within(a, b) for b in cycle if b != a) for a in cycle)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            strongconnect(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def loaded_after_importing(modules: list[str], watched: tuple[str, ...]) -> list[str]:
    """Which of `watched` a fresh interpreter has loaded after importing `modules`."""
    code = f"import sys; import {', '.join(modules)}; print(sorted(m for m in {watched!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    return ast.literal_eval(out.stdout)


def test_the_app_loads_neither_torch_nor_ray():
    app = ["study.app.lake", "study.app.search", "study.app.context", "study.app.charts"]
    assert loaded_after_importing(app, ("torch", "ray")) == []


def test_the_engine_loads_no_pyarrow_and_no_ray():
    engine = ["study.engine.lineage", "study.engine.spec"]
    assert loaded_after_importing(engine, ("pyarrow", "ray", "optuna", "streamlit")) == []
    assert loaded_after_importing(engine, ("torch",)) == ["torch"]  # the check itself sees imports


def test_a_trial_process_loads_no_torch(tmp_path):
    """A trial only waits on its lineage tasks: importing its module and unpickling what it is
    handed (the study) and sent back (Started, round results) loads no torch, so a trial costs
    neither torch's import time nor its memory."""
    import pickle

    from conftest import synthetic_spec_dict

    from study.engine.lineage import RunContext, run_lineage
    from study.engine.spec import lineage_spec_from_dict
    from study.search.lineage_tasks import Started
    from study.search.study_spec import StudySpec
    from study.typed_yaml import build

    study = build(StudySpec, {"name": "s", "base": synthetic_spec_dict(), "storage": {"results": "r"}}, "study")
    spec = lineage_spec_from_dict(synthetic_spec_dict(rounds=0, train={"iterations": 40, "eval_every": 20}))
    results = run_lineage(spec, context=RunContext(threads=1))
    blob = tmp_path / "handed.pkl"
    blob.write_bytes(pickle.dumps((study, Started(results, tmp_path / "lineage.pt"))))
    code = (
        "import pickle, sys; import study.search.tune; "
        f"study, started = pickle.loads(open({str(blob)!r}, 'rb').read()); "
        "study.lineage_dict({'train.lr': 0.1}, 3); started.previous[0].val_acc; "
        "print(sorted(m for m in ('torch',) if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    assert ast.literal_eval(out.stdout) == []
