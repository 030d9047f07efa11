"""A lineage configuration's id across seeds (seeds are replicates of one configuration)."""

from __future__ import annotations

import hashlib
import json


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


def _flat(value: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in value.items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = json.dumps(v) if isinstance(v, (list, tuple)) else str(v)
    return out


def config_labels(configs: dict[str, str | None], max_length: int = 60) -> dict[str, str]:
    """A short, readable name per configuration id (its lineage config JSON given): the settings
    that tell it apart from the other configurations of its strategy (`rewind_iteration=300`),
    or the id itself when nothing readable does (too long, or the config is unknown)."""
    flat: dict[str, dict[str, str]] = {}
    for cid, text in configs.items():
        cfg = _configuration(text)
        if cfg is not None:
            flat[cid] = _flat(cfg)
    labels = {cid: cid for cid in configs}
    strategies: dict[str, list[str]] = {}
    for cid, cfg in flat.items():
        strategies.setdefault(cfg.get("strategy", "?"), []).append(cid)
    for ids in strategies.values():
        keys = sorted({k for cid in ids for k in flat[cid]})
        differ = [k for k in keys if len({flat[cid].get(k) for cid in ids}) > 1]
        for cid in ids:
            label = ", ".join(f"{k}={flat[cid].get(k, '–')}" for k in differ)
            if label and len(label) <= max_length:
                labels[cid] = label
    return labels
