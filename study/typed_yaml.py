"""YAML into typed dataclasses: unknown keys, wrong types and duplicate keys are one-line
`SpecError`s that name the key (with a did-you-mean) and the fix."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from study.errors import SpecError


def choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        close = difflib.get_close_matches(str(value), allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise SpecError(f"{name}: unknown value '{value}'; {hint}choose one of {', '.join(allowed)}")


def build(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and wrong types by name."""
    if not isinstance(raw, dict):
        raise SpecError(f"{where or 'spec'} must be a mapping of keys to values, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise SpecError(f"unknown key '{_join(where, key)}'; {hint}allowed keys: {', '.join(fields)}")
    missing = [
        n
        for n, f in fields.items()
        if n not in raw and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise SpecError(f"missing required key '{_join(where, missing[0])}'")
    values = {k: _coerce(hints[k], v, _join(where, k)) for k, v in raw.items()}
    return cls(**values)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else str(key)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for option in inner[1:]:  # a value of a later type in the union (str | bool: YAML's on/off)
            if type(value) is option:
                return value
        return _coerce(inner[0], value, where)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"{where} must be a list, got {value!r}")
        return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise SpecError(f"{where} must be a mapping, got {value!r}")
        return {str(k): _coerce(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise SpecError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            hint = " (YAML reads a number like 2e1 as text: write 20)" if isinstance(value, str) else ""
            raise SpecError(f"{where} must be an integer, got {value!r}{hint}")
        return value
    if tp is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise SpecError(f"{where} must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise SpecError(f"{where} must be a string, got {value!r}")
        return value
    return value


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"a key must be a plain name, got {type(key).__name__}", key_node.start_mark
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' is given twice in one mapping; keep one of them", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> Any:
    p = Path(path)
    if p.is_dir():
        raise SpecError(f"{p} is a directory; pass the path of a YAML spec file inside it")
    if p.exists() and not p.is_file():
        raise SpecError(f"{p} is not a regular file; pass the path of a YAML spec file")
    if not p.is_file():
        raise SpecError(
            f"spec file {p} does not exist; pass the path of a YAML spec such as search_spaces/fashion_mnist/lenet300_demo.yaml"
        )
    blob = p.read_bytes()
    try:
        if b"\0" in blob:
            raise UnicodeDecodeError("utf-8", blob, 0, 1, "NUL byte")
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError(f"{p} is not a text YAML file (binary content); pass the path of a YAML spec") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise SpecError(f"{p} is not valid YAML{at}: {getattr(e, 'problem', e)}") from None
