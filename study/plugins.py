"""A user's code, found by name: import paths (`mypkg.nets:build`), modules a spec names
(`plugins: [mypkg]`), Python entry points (`study.models`, `study.datasets`, `study.strategies`,
`study.branches`, `study.objectives`), and the identity of that code (a hash of its source), so a
changed user model never resumes or merges with a lineage of the old one.

Every failure is a one-line `SpecError` that says which part of a name did not resolve and how
to make it resolve."""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import inspect
import marshal
import sys
import tokenize
from pathlib import Path
from types import ModuleType
from typing import Any

from study.errors import SpecError

# what a plugin registers -> the entry-point group it is found in
ENTRY_POINT_GROUPS = {
    "models": "study.models",
    "datasets": "study.datasets",
    "strategies": "study.strategies",
    "branches": "study.branches",
    "objectives": "study.objectives",
}
SHIP_HINT = (
    "install its package where the lineage runs (pip install, or a RUN line in k8s/Dockerfile), or ship it "
    "with the study's runtime_env: {py_modules: [path/to/package]}"
)


def is_import_path(name: str) -> bool:
    """`package.module:attribute` (one colon, dotted names on both sides)."""
    module, colon, attr = name.partition(":")
    return bool(colon) and _dotted(module) and _dotted(attr)


def _dotted(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def import_module(name: str, what: str) -> ModuleType:
    """Module `name`, or a SpecError naming the first part of it that is missing."""
    if not _dotted(name):
        raise SpecError(f"{what}: {name!r} is not a module name (dotted Python identifiers, e.g. mypkg.nets)")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        missing = e.name or name
        if missing == name or name.startswith(missing + "."):
            raise SpecError(f"{what}: module {missing!r} is not importable here; {SHIP_HINT}") from None
        raise SpecError(f"{what}: importing {name} failed: module {missing!r} (which it imports) is missing") from None
    except SpecError:
        raise
    except Exception as e:  # noqa: BLE001  (the user's module raised on import: say so in one line)
        first = (str(e).splitlines() or [""])[0]
        raise SpecError(f"{what}: importing {name} raised {type(e).__name__}: {first}") from None


def resolve(path: str, what: str) -> Any:
    """The object an import path `package.module:attribute` names (the attribute may be dotted)."""
    if not is_import_path(path):
        raise SpecError(
            f"{what}: {path!r} is not an import path; write package.module:attribute, e.g. mypkg.nets:build"
        )
    module_name, _, attr = path.partition(":")
    obj: Any = import_module(module_name, what)
    for i, part in enumerate(attr.split(".")):
        if not hasattr(obj, part):
            have = sorted(n for n in dir(obj) if not n.startswith("_"))[:12]
            where = module_name + "".join(f".{p}" for p in attr.split(".")[:i])
            raise SpecError(
                f"{what}: {where} has no attribute {part!r} (import path {path}); it has {', '.join(have) or 'nothing public'}"
            )
        obj = getattr(obj, part)
    return obj


def entry_points(kind: str) -> dict[str, importlib.metadata.EntryPoint]:
    """The installed entry points that register `kind` (models, datasets, ...), by name."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUPS[kind])}


def load_entry_point(ep: importlib.metadata.EntryPoint, kind: str) -> Any:
    try:
        return ep.load()
    except ModuleNotFoundError as e:
        raise SpecError(
            f"plugin {kind[:-1]} {ep.name!r} (entry point {ep.value}): module {e.name!r} is not importable; {SHIP_HINT}"
        ) from None
    except Exception as e:  # noqa: BLE001
        raise SpecError(f"plugin {kind[:-1]} {ep.name!r} (entry point {ep.value}) failed to load: {e}") from None


def import_plugins(modules: tuple[str, ...] | list[str]) -> None:
    """Import the modules a spec's `plugins:` names (importing one registers what it defines)."""
    for name in modules:
        import_module(name, "plugins")


def source_identity(obj: Any, module: str | None = None) -> dict[str, str]:
    """What identifies a user's code: its import path and a hash of the source of the top-level
    package (or lone module) that defines it. The hash, not an installed version, so the same
    code gets the same id wherever it runs (installed, or shipped with py_modules), and an
    edited model a new one."""
    if module is None:
        owner = inspect.getmodule(obj) if not isinstance(obj, ModuleType) else obj
        module = getattr(owner, "__name__", None) or getattr(obj, "__module__", None)
    name = module or "?"
    top = sys.modules.get(name.split(".")[0])
    if top is not None and (getattr(top, "__file__", None) or getattr(top, "__path__", None)) and name != "__main__":
        return module_identity(name)
    return {"module": name, "source": code_hash(obj)}  # a notebook's or a script's own function


def code_hash(obj: Any) -> str:
    """sha256 (16 hex digits) of an object's source, or of its compiled code when the source is
    not on disk (a notebook cell)."""
    try:
        text = inspect.getsource(obj).encode()
    except (OSError, TypeError, SyntaxError, tokenize.TokenError):  # no source, or a file that no longer matches
        code = getattr(obj, "__code__", None)
        text = marshal.dumps(code) if code is not None else repr(obj).encode()
    return hashlib.sha256(text).hexdigest()[:16]


def module_identity(name: str) -> dict[str, str]:
    """A module's name and the source hash of its top-level package."""
    return {"module": name, "source": package_hash(name.split(".")[0])}


@functools.lru_cache(maxsize=64)
def package_hash(top: str) -> str:
    """sha256 (16 hex digits) over the Python files of top-level package or module `top`."""
    module = sys.modules.get(top) or importlib.import_module(top)
    file = getattr(module, "__file__", None)
    if file is None:  # a namespace package: its folders
        roots = [Path(p) for p in getattr(module, "__path__", [])]
        files = sorted(f for r in roots for f in r.rglob("*.py"))
    elif Path(file).name == "__init__.py":
        files = sorted(Path(file).parent.rglob("*.py"))
    else:
        files = [Path(file)]
    base = files[0].parent if len(files) == 1 else Path(file).parent if file else None
    digest = hashlib.sha256()
    for f in files:
        digest.update(str(f.relative_to(base) if base and f.is_relative_to(base) else f.name).encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()[:16]
