"""A lineage configuration's id across seeds (seeds are replicates of one configuration), and the
one readable name every view gives it: its Optuna trial number(s), its strategy and its searched
values at 2 significant digits (`#4 imp fc=0.29 lr=4.2e-4 k=100`)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

# short names of the settings a study searches most often; any other path is named by its last part
SHORT_NAMES = {
    "rewind_iteration": "k",
    "train.lr": "lr",
    "train.iterations": "iters",
    "train.batch_size": "batch",
    "train.optimizer": "opt",
    "prune.rate": "rate",
    "prune.output_rate": "out",
}
_NOT_A_SETTING = {"strategy", "seed"}  # the strategy is named apart; seeds are replicates


def _configuration(config_json: str | None) -> dict | None:
    """A lineage config without what does not make it another configuration: the seed (seeds are
    replicates) and where the data lives. None when the config is unknown."""
    if not isinstance(config_json, str) or not config_json:
        return None
    cfg = json.loads(config_json)
    cfg.pop("seed", None)
    cfg.get("data", {}).pop("root", None)
    return cfg


def config_id(config_json: str | None) -> str:
    """A configuration's id: a hash of `_configuration` ('?' when the config is unknown)."""
    cfg = _configuration(config_json)
    return "?" if cfg is None else hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:6]


def flat_config(value: dict, prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted paths: {'train': {'lr': 1}} -> {'train.lr': 1}."""
    out: dict[str, Any] = {}
    for k, v in value.items():
        if isinstance(v, dict):
            out |= flat_config(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def _trim(number: str) -> str:
    """'0.050' -> '0.05', '1.0' -> '1' (trailing zeros carry no digit of the value)."""
    return number.rstrip("0").rstrip(".") if "." in number else number


def sig(value: Any, digits: int = 2) -> str:
    """`value` at `digits` significant digits, short: 0.29, 4.2e-4, 120, 0.05; text as it is."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value) or value == 0:
            return "0" if value == 0 else str(value)
        magnitude = math.floor(math.log10(abs(value)))
        if magnitude < -2 or magnitude >= 5:
            mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
            return f"{_trim(mantissa)}e{int(exponent)}"
        rounded = round(value, digits - 1 - magnitude)
        return _trim(f"{rounded:.{max(digits - 1 - magnitude, 0)}f}")
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(sig(v, digits) for v in value) + "]"
    return str(value)


def short_name(path: str, paths: Iterable[str]) -> str:
    """How a label names setting `path` among `paths`: a known short name, else its last part
    (the whole path when another path ends the same way)."""
    if path in SHORT_NAMES:
        return SHORT_NAMES[path]
    last = path.rsplit(".", 1)[-1]
    clash = any(p != path and p.rsplit(".", 1)[-1] == last for p in paths)
    return path if clash else last


def _active(cfg: dict[str, Any], spec: Mapping[str, Any]) -> bool:
    """Whether a searched parameter applies to a flat config (its `when:` holds)."""
    return all(cfg.get(k) in allowed for k, allowed in (spec.get("when") or {}).items())


def _settings(configs: dict[str, dict[str, Any]], searched: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Per configuration id, the settings its name shows: the searched ones that apply to it, or
    (a study run lineage by lineage) those that differ between configurations of its strategy."""
    if searched:
        paths = [p for p in searched if p not in _NOT_A_SETTING]
        return {cid: [p for p in paths if p in cfg and _active(cfg, searched[p])] for cid, cfg in configs.items()}
    by_strategy: dict[Any, list[str]] = {}
    for cid, cfg in configs.items():
        by_strategy.setdefault(cfg.get("strategy"), []).append(cid)
    out: dict[str, list[str]] = {}
    for ids in by_strategy.values():
        keys = sorted({k for cid in ids for k in configs[cid]} - _NOT_A_SETTING)
        differ = [k for k in keys if len({json.dumps(configs[cid].get(k), sort_keys=True) for cid in ids}) > 1]
        out |= {cid: [k for k in differ if k in configs[cid]] for cid in ids}
    return out


def _trials(numbers: set[int]) -> str:
    return "#" + ",".join(str(n) for n in sorted(numbers)) if numbers else ""


def config_labels(
    lineages: Iterable[Mapping[str, Any]],
    searched: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
    digits: int = 2,
) -> dict[tuple[str, str, str], str]:
    """(study, strategy, config id) -> the configuration's one readable name, from lineage records
    (study, strategy, config_json, optuna_trial_number): `#4 imp fc=0.29 lr=4.2e-4 k=100`, the
    trial number(s) first (a searched study), then the strategy (a branch's, `imp.random_reinit`),
    then the settings that tell it apart (`searched`: per study, its searched parameters by dotted
    path; else the settings that differ between configurations of the strategy), values at
    `digits` significant digits. Names that would coincide get more digits, then the id."""
    records = list(lineages)
    out: dict[tuple[str, str, str], str] = {}
    for study in sorted({str(r["study"]) for r in records}):
        mine = [r for r in records if str(r["study"]) == study]
        configs: dict[str, dict[str, Any]] = {}
        numbers: dict[str, set[int]] = {}
        strategies: dict[str, set[str]] = {}
        for r in mine:
            cid = config_id(r.get("config_json"))
            cfg = _configuration(r.get("config_json"))
            if cfg is not None:
                configs.setdefault(cid, flat_config(cfg))
            number = r.get("optuna_trial_number")
            if number is not None and not (isinstance(number, float) and math.isnan(number)):
                numbers.setdefault(cid, set()).add(int(number))
            strategies.setdefault(cid, set()).add(str(r["strategy"]))
        shown = _settings(configs, (searched or {}).get(study) or {})
        names = {p: short_name(p, {q for ps in shown.values() for q in ps}) for ps in shown.values() for p in ps}
        for cid, kinds in strategies.items():
            for strategy in kinds:
                out[(study, strategy, cid)] = ""
        for places in (digits, digits + 1, None):
            for s, strategy, cid in [k for k in out if k[0] == study]:
                if cid not in configs:
                    out[(s, strategy, cid)] = f"{strategy} {cid}"
                    continue
                values = [f"{names[p]}={sig(configs[cid][p], places or digits + 1)}" for p in shown.get(cid, [])]
                words = [_trials(numbers.get(cid, set())), strategy, *values, *([cid] if places is None else [])]
                out[(s, strategy, cid)] = " ".join(w for w in words if w)
            labels = [(k[1], v) for k, v in out.items() if k[0] == study]
            if len(set(labels)) == len(labels):
                break
    return out
