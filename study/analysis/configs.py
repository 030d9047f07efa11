"""A lineage configuration's id across seeds (seeds are replicates of one configuration)."""

from __future__ import annotations

import hashlib
import json


def config_id(config_json: str | None) -> str:
    """A configuration's id: its lineage config without the seed and the data's location ('?'
    when the config is unknown)."""
    if not isinstance(config_json, str) or not config_json:
        return "?"
    cfg = json.loads(config_json)
    cfg.pop("seed", None)
    cfg.get("data", {}).pop("root", None)
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:6]
