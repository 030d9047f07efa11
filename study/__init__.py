"""Lottery-ticket studies at cluster scale, and their Python API (`study/api.py`):

    import study
    spec = study.load_spec("lineage.yaml")
    rows = study.run_lineage(spec, results="results")
    study.Lake("results").rounds()

Names are imported on first use, so `import study` loads neither torch nor Ray."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_spec": "study.api",
    "load_study": "study.api",
    "run_lineage": "study.api",
    "run_study": "study.api",
    "Lake": "study.api",
    "load_ticket": "study.api",
    "Ticket": "study.engine.tickets",
    "register_model": "study.engine.registry",
    "register_dataset": "study.engine.registry",
    "register_strategy": "study.engine.registry",
    "register_branch": "study.engine.registry",
    "register_objective": "study.analysis.objectives",
    "Strategy": "study.engine.strategies",
    "Branch": "study.engine.branches",
    "Objective": "study.analysis.objectives",
    "SpecError": "study.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'study' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
