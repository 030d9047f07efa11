"""Where a spec's names resolve: the built-in registries (`MODELS`, `DATASETS`, `STRATEGIES`,
`BRANCHES`), the names with a prefix (`torchvision:resnet18`, `npz:PATH`, `imagefolder:DIR`,
`parquet:PATH`), import paths (`mypkg.nets:build`), and what plugins register: the modules a
spec's `plugins:` imports (which call `register_*`) and the installed entry points of the groups
`study.models`, `study.datasets`, `study.strategies`, `study.branches` (loaded by name, on first
use). A plugin's entry lands in the same registry as the built-ins; its source is remembered, and
`sources(spec)` puts it in the lineage's identity."""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch import nn

from study.engine.branches import BRANCHES, Branch
from study.engine.data import DATASETS, Dataset
from study.engine.data.generic import FORMATS, loader_dataset
from study.engine.models import MODELS, ModelInfo
from study.engine.models.external import TORCHVISION, factory_info, pack_refusal, torchvision_info
from study.engine.strategies import STRATEGIES, Strategy
from study.errors import SpecError
from study.plugins import (
    entry_points,
    import_plugins,
    is_import_path,
    load_entry_point,
    module_identity,
    resolve,
    source_identity,
)

if TYPE_CHECKING:
    from study.engine.spec import LineageSpec

# a registered plugin's identity (module, source hash), by (kind, name); built-ins have none
_SOURCES: dict[tuple[str, str], dict[str, Any]] = {}


def _register(registry: dict[str, Any], kind: str, name: str, entry: Any, identity: dict[str, Any]) -> None:
    if not name or ":" in name or name != name.strip():
        raise SpecError(f"a plugin {kind[:-1]} needs a plain name (no ':' or spaces), got {name!r}")
    held = registry.get(name)
    if held is not None and (kind, name) not in _SOURCES:
        raise SpecError(f"plugin {kind[:-1]} {name!r} has the name of a built-in one; register it under another name")
    if held is not None and _SOURCES[(kind, name)] != identity:
        raise SpecError(
            f"two plugins register the {kind[:-1]} {name!r} ({_SOURCES[(kind, name)]['module']} and "
            f"{identity['module']}); rename one"
        )
    registry[name] = entry
    _SOURCES[(kind, name)] = identity


def register_model(name: str, factory: Callable[..., nn.Module]) -> None:
    """A plugin's model, `factory(input_shape, num_classes, **model_args) -> nn.Module`."""
    identity = {"plugin": name, **source_identity(factory)}
    _register(MODELS, "models", name, factory_info(factory, name, identity), identity)


def register_dataset(name: str, loader: Callable[..., Any]) -> None:
    """A plugin's dataset: `loader(**data.args)` returns (train_x, train_y, test_x, test_y)
    tensors or (train, test) `torch.utils.data.Dataset`s of (input, label) pairs."""
    identity = {"plugin": name, **source_identity(loader)}
    _register(DATASETS, "datasets", name, loader_dataset(loader, name, identity), identity)


def register_strategy(strategy: Strategy, module: str | None = None) -> None:
    """A plugin's strategy; its source is `module`'s package (default: the caller's)."""
    _register(STRATEGIES, "strategies", strategy.name, strategy, source_identity(strategy.mask, module or _caller()))


def register_branch(branch: Branch, module: str | None = None) -> None:
    """A plugin's branch; its source is `module`'s package (default: the caller's)."""
    _register(BRANCHES, "branches", branch.name, branch, source_identity(branch.mask, module or _caller()))


def _caller() -> str:
    """The module that called the register function (the plugin's)."""
    return str(sys._getframe(2).f_globals.get("__name__", "?"))


_REGISTER: dict[str, Callable[[str, Any, str], None]] = {
    "models": lambda name, obj, module: register_model(name, obj),
    "datasets": lambda name, obj, module: register_dataset(name, obj),
    "strategies": lambda name, obj, module: register_strategy(obj, module),
    "branches": lambda name, obj, module: register_branch(obj, module),
}


def _from_entry_point(kind: str, registry: dict[str, Any], name: str) -> bool:
    """Register `name` from an installed entry point of `kind`, if one has it."""
    found = entry_points(kind).get(name)
    if found is None:
        return False
    if name not in registry:
        _REGISTER[kind](name, load_entry_point(found, kind), found.module)
    return True


def _unknown(kind: str, name: str, registry: dict[str, Any], forms: str) -> SpecError:
    close = difflib.get_close_matches(name, list(registry), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return SpecError(f"{kind}: unknown value '{name}'; {hint}choose one of {', '.join(registry)}{forms}")


def model_info(name: str) -> ModelInfo:
    """The registry entry of a spec's `model:`."""
    if name in MODELS:
        return MODELS[name]
    if name.startswith(TORCHVISION):
        return torchvision_info(name[len(TORCHVISION) :])
    if is_import_path(name):
        factory = resolve(name, f"model {name}")
        return factory_info(factory, name, {"import_path": name, **module_identity(name.partition(":")[0])})
    if _from_entry_point("models", MODELS, name):
        return MODELS[name]
    raise _unknown("model", name, MODELS, "; or torchvision:<name>, or a factory's import path package.module:name")


def dataset_info(name: str) -> Dataset:
    """The registry entry of a spec's `dataset:`."""
    if name in DATASETS:
        return DATASETS[name]
    prefix, colon, rest = name.partition(":")
    if colon and prefix in FORMATS:
        return FORMATS[prefix](rest)
    if is_import_path(name):
        loader = resolve(name, f"dataset {name}")
        return loader_dataset(loader, name, {"import_path": name, **module_identity(name.partition(":")[0])})
    if _from_entry_point("datasets", DATASETS, name):
        return DATASETS[name]
    formats = ", ".join(f"{f}:PATH" for f in FORMATS)
    raise _unknown("dataset", name, DATASETS, f"; or {formats}, or a loader's import path package.module:name")


def strategy(name: str) -> Strategy:
    if name not in STRATEGIES and not _from_entry_point("strategies", STRATEGIES, name):
        raise _unknown("strategy", name, STRATEGIES, "")
    return STRATEGIES[name]


def branch(name: str) -> Branch:
    if name not in BRANCHES and not _from_entry_point("branches", BRANCHES, name):
        raise _unknown("branches", name, BRANCHES, "")
    return BRANCHES[name]


def load_spec_plugins(spec: LineageSpec) -> None:
    """Import the spec's `plugins:` modules (they register what they define)."""
    import_plugins(spec.plugins)


def sources(spec: LineageSpec) -> dict[str, Any]:
    """The identity of the user's code a spec runs (model, dataset, strategy, branches, plugin
    modules): import paths and source hashes; empty for built-ins only."""
    out: dict[str, Any] = {}
    model, dataset = model_info(spec.model).identity, dataset_info(spec.dataset).identity
    if model:
        out["model"] = model
    if dataset:
        out["dataset"] = dataset()
    for kind, name in (("strategies", spec.strategy), *(("branches", b) for b in spec.branches)):
        if (kind, name) in _SOURCES:
            out[f"{kind}.{name}"] = _SOURCES[(kind, name)]
    if spec.plugins:
        out["plugins"] = {m: source_identity(_module(m)) for m in spec.plugins}
    return out


def _module(name: str) -> Any:
    import importlib

    return importlib.import_module(name)


def model_packs(spec: LineageSpec, model: nn.Module | None, input_shape: tuple[int, ...]) -> tuple[bool, str | None]:
    """Whether the spec's lineages may train packed, and why not (None when they may)."""
    info = model_info(spec.model)
    if info.packs is not None:
        return info.packs, None if info.packs else f"model {spec.model} does not pack (its lineages draw dropout)"
    assert model is not None, "a user's model is judged on the built model"
    key = json.dumps([spec.model, info.identity, spec.model_args, spec.output_layer, list(input_shape)], sort_keys=True)
    if key not in _VERDICTS:  # an architecture is judged once per process
        refusal = pack_refusal(model, input_shape)
        _VERDICTS[key] = refusal is None, None if refusal is None else f"model {spec.model} does not pack: {refusal}"
    return _VERDICTS[key]


_VERDICTS: dict[str, tuple[bool, str | None]] = {}
