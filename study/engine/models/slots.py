from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Slot:
    """What pruning addresses: a weight, or a block of its rows, and the slot's kind."""

    param: str
    rows: slice | None
    kind: str
