"""Every random draw of a lineage comes from a generator seeded by (seed, purpose, round), so a
resumed lineage repeats the uninterrupted one exactly and no RNG state is checkpointed."""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, purpose: str, round_: int = 0) -> int:
    digest = hashlib.sha256(f"{seed}/{purpose}/{round_}".encode()).digest()
    return int.from_bytes(digest[:7], "little")
