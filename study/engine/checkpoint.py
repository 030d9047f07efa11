"""Lineage checkpoints: everything needed to resume after the last finished round (round,
mask, θ0, θ_k, trained weights, the rows so far), written atomically.

No RNG state is stored because none is carried between rounds: every random draw (data order,
augmentation, re-initialisation, random masks) comes from a generator seeded by (seed, round,
purpose), so a resumed lineage repeats the uninterrupted one exactly."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import torch

FORMAT = 1
CHECKPOINT_FILE = "lineage.pt"
STALE_TMP_S = 600.0


class CheckpointMismatch(RuntimeError):
    """The checkpoint belongs to another config: resuming it would mix two experiments."""


def _load(path: Path) -> dict[str, Any]:
    with warnings.catch_warnings():  # torch's own warnings would break the one-line error
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True)


def save_checkpoint(path: Path, config_hash: str, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    cpu = _to(state, torch.device("cpu"))
    torch.save({"format": FORMAT, "config_hash": config_hash, "state": cpu}, tmp)
    os.replace(tmp, path)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer killed mid-save
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > STALE_TMP_S:  # not one being written now
                stale.unlink()


def load_checkpoint(path: Path, config_hash: str, device: torch.device) -> dict[str, Any] | None:
    """The saved state, or None when there is none. A checkpoint of another config is an error:
    resuming it would mix two experiments."""
    if not path.is_file():
        return None
    try:
        blob = _load(path)
    except Exception as e:
        raise RuntimeError(
            f"checkpoint {path} is unreadable ({type(e).__name__}); pass --fresh (or delete it) to "
            f"restart the lineage from round 0"
        ) from None
    if blob.get("config_hash") != config_hash:
        raise CheckpointMismatch(
            f"checkpoint {path} belongs to config {blob.get('config_hash')}, not {config_hash}; use another workdir"
        )
    return _to(blob["state"], device)


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to(v, device) for v in obj]
    return obj


def checkpoint_round(path: Path) -> int:
    """The last finished round a checkpoint holds (-1 when there is none or it is unreadable)."""
    if not Path(path).is_file():
        return -1
    try:
        return int(_load(path)["state"]["round_done"])
    except Exception:
        return -1
