"""The layer rules of ARCHITECTURE.md, checked on the source: its layer table read as allow-lists
(which of our modules and which third-party packages each layer may import), no import cycles
between modules, an app that loads neither torch nor Ray, and one module that knows the stores."""

import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "study"
LEAVES = {"study.errors", "study.typed_yaml", "study.version", "study.secrets", "study.plugins"}


@dataclass(frozen=True)
class Layer:
    """One row of ARCHITECTURE.md's layer table, as rules."""

    allowed: frozenset[str]  # our modules or packages it may import, besides its own package
    leaves: bool  # it may import the leaf modules
    everything: bool  # the CLI: anything of ours
    banned: frozenset[str]  # third-party packages it never imports


def _packages_of(cell: str) -> list[str]:
    """The packages (or modules) a row is about: every `study/...` name of its first cell, and the
    names beside `study/x.py` in the same folder (`study/cli.py`, `cli_tables.py`)."""
    names = re.findall(r"`([^`]+)`", cell)
    if names[0] == "study/errors.py":
        return ["leaves"]
    folder = names[0].rsplit("/", 1)[0] if names[0].endswith(".py") else None
    out = []
    for name in names:
        if not name.startswith("study/") and folder is not None:
            name = f"{folder}/{name}"
        if name.startswith("study/"):
            out.append(name.removesuffix(".py").rstrip("/").replace("/", "."))
    return out


def read_layers(text: str) -> dict[str, Layer]:
    """ARCHITECTURE.md's "Layers" table: package -> Layer."""
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `study/")]
    layers = {}
    for row in rows:
        package, _, may, never = [c.strip() for c in row.strip("|").split("|")]
        ours = {f"study.{name}" for name in re.findall(r"`([^`]+)`", may)}
        layer = Layer(
            frozenset(ours), "leaves" in may, may.startswith("everything"), frozenset(re.findall(r"`([^`]+)`", never))
        )
        for name in _packages_of(package):
            layers[name] = layer
    return layers


LAYERS = read_layers((ROOT / "ARCHITECTURE.md").read_text())


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


def layer_of(name: str) -> str:
    if name in LEAVES:
        return "leaves"
    return next(layer for layer in LAYERS if layer != "leaves" and within(name, layer))


def may_import(layer: str, name: str, imported: str) -> bool:
    """Whether module `name` of `layer` may import `imported` (one of ours)."""
    rules = LAYERS[layer]
    if rules.everything or (layer != "leaves" and within(imported, layer)):
        return True
    if any(within(imported, leaf) for leaf in LEAVES):
        return rules.leaves and not within(name, imported)
    return any(within(imported, allowed) for allowed in rules.allowed)


def violations(layer: str, sources: dict[str, Path]) -> list[str]:
    """Every import of the modules `sources` (name -> path) that `layer`'s row does not allow."""
    problems = []
    for name, path in sources.items():
        for imported in imports(path):
            root = imported.split(".")[0]
            if root in LAYERS[layer].banned and EXCEPTIONS.get(name) != root:
                problems.append(f"{name} imports {imported} ({layer} never imports {imported.split('.')[0]})")
            elif within(imported, "study") and imported != "study" and not may_import(layer, name, imported):
                problems.append(f"{name} imports {imported}, which ARCHITECTURE.md does not allow {layer}")
    return problems


def test_the_table_names_every_layer():
    assert set(LAYERS) == {
        "leaves", "study.engine", "study.lake", "study.analysis", "study.search", "study.deploy", "study.app", "study.cli",
        "study.cli_tables", "study.cli_views", "study.api",
    }  # fmt: skip
    assert {layer_of(name) for name in MODULES if name != "study"} == set(LAYERS)
    assert LAYERS["study.analysis"].allowed == {"study.lake", "study.engine.rows"}
    assert LAYERS["study.app"].banned == {"torch", "ray"}


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_layer_imports_only_what_the_table_allows(layer):
    sources = {name: path for name, path in MODULES.items() if name != "study" and layer_of(name) == layer}
    if layer == "study.app":
        sources["app"] = ROOT / "app.py"
    assert sources
    problems = violations(layer, sources)
    assert not problems, "\n".join(problems)


def test_the_allow_lists_catch_the_imports_the_map_forbids(tmp_path):
    """An import the table forbids but the old deny-list let through fails, one per layer."""
    planted = {
        "study.engine": ("study.engine.planted", "from study.analysis.objectives import ObjectiveSpec"),
        "study.lake": ("study.lake.planted", "from study.analysis import summary"),
        "study.analysis": ("study.analysis.planted", "from study.engine.spec import LineageSpec"),
        "study.app": ("study.app.planted", "from study.search.study_spec import StudySpec"),
    }
    for layer, (name, line) in planted.items():
        path = tmp_path / f"{name}.py"
        path.write_text(line + "\n")
        assert violations(layer, {name: path}), line


def test_only_the_store_knows_which_store_it_has():
    """Nothing outside lake/store.py asks whether a path is local or S3, nor names a store class."""
    which = {"study.lake.store.is_remote", "study.lake.store.LocalStore", "study.lake.store.S3Store"}
    users = sorted(name for name, path in MODULES.items() if name != "study.lake.store" and imports(path) & which)
    assert users == []


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
    """Every module of study/app, and every module of ours its pages and app.py import (the pages
    are Streamlit scripts: they run, not import)."""
    modules = {name for name in MODULES if within(name, "study.app") and not within(name, "study.app.pages")}
    scripts = [p for name, p in MODULES.items() if within(name, "study.app.pages")] + [ROOT / "app.py"]
    for script in scripts:
        modules |= {i if i in MODULES else i.rsplit(".", 1)[0] for i in imports(script) if within(i, "study")}
    assert {"study.app.report", "study.app.screenshots", "study.app.sequence_claims", "study.app.search"} <= modules
    assert loaded_after_importing(sorted(modules), ("torch", "ray")) == []


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
