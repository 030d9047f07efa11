"""Searched parameters are dotted paths into a lineage spec's mapping (train.lr, prune.rates.fc,
rewind_iteration); this is the one place that reads and writes them, and that says how a
categorical value is written to a sampler."""

from __future__ import annotations

import json
from typing import Any

_MISSING = object()


def get_path(config: dict[str, Any], dotted: str, default: Any = None) -> Any:
    """The value at `dotted` in `config`, or `default` when any part of it is missing."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def set_path(config: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `dotted` in `config`, creating the mappings on the way."""
    *parents, last = dotted.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def missing_part(config: dict[str, Any], dotted: str, open_maps: tuple[str, ...] = ("rates",)) -> str | None:
    """The first prefix of `dotted` that `config` lacks (None: the path exists). A key inside one
    of `open_maps` (prune.rates.<kind>) may be new."""
    parts = dotted.split(".")
    node: Any = config
    for i, part in enumerate(parts):
        if isinstance(node, dict) and (part in node or (i == len(parts) - 1 and i > 0 and parts[i - 1] in open_maps)):
            node = node.get(part)
            continue
        return ".".join(parts[: i + 1])
    return None


def choice_text(choice: Any) -> Any:
    """A categorical choice as a sampler takes it: a list or mapping as its JSON text (Optuna's
    choices must be None, bool, int, float or str), anything else as it is."""
    return json.dumps(choice, sort_keys=True) if isinstance(choice, (list, tuple, dict)) else choice
