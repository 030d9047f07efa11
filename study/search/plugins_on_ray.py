"""A study's plugins on every Ray node: Ray started with the study's `runtime_env` (its
`py_modules` uploaded once and unpacked on each worker), and a check before any trial runs that
every alive node can build the study's base lineage spec, which imports its plugins, its
model's and dataset's import paths and entry points. A node that cannot is named in one line,
with the package it lacks and how to ship it."""

from __future__ import annotations

import logging
import os
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from study.errors import SpecError
from study.search.study_spec import StudySpec

PROBE_TIMEOUT_S = 300.0


def start_ray(study: StudySpec, address: str | None) -> None:
    """Connect to (or start) Ray with the study's runtime_env, unless Ray is up already (then
    whoever started it chose the runtime_env, and `check_plugins_on_nodes` tells if it lacks one)."""
    if not ray.is_initialized():
        # no address and no RAY_ADDRESS: a Ray of our own, never the last `ray start` of this machine
        address = address or os.environ.get("RAY_ADDRESS") or "local"
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            runtime_env=study.runtime_env.as_ray(),
        )


def uses_user_code(base: dict[str, Any]) -> bool:
    """Whether a base lineage mapping names code beyond the built-ins (plugins, import paths,
    torchvision or plugin names are all checked on the nodes)."""
    from study.engine.data import DATASETS
    from study.engine.models import MODELS

    return bool(base.get("plugins")) or base.get("model") not in MODELS or base.get("dataset") not in DATASETS


def _probe(base: dict[str, Any]) -> str | None:
    """On a node: build the base spec (importing what it names); the one-line error, or None."""
    from study.engine.spec import lineage_spec_from_dict

    try:
        lineage_spec_from_dict(base)
    except SpecError as e:
        return str(e)
    return None


def check_plugins_on_nodes(study: StudySpec) -> None:
    """Every alive node builds the base spec (only for a study with user code)."""
    if not uses_user_code(study.base):
        return
    probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
    refs = {
        node["NodeManagerAddress"]: probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        ).remote(study.base)
        for node in ray.nodes()
        if node["Alive"]
    }
    for where, ref in refs.items():
        problem = ray.get(ref, timeout=PROBE_TIMEOUT_S)
        if problem:
            raise SpecError(f"on Ray node {where}: {problem}")
