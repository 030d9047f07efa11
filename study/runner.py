"""Run a lineage into the results lake: round rows as they finish, and a lineages row that says
whether it is running, finished, failed or diverged. Used by the CLI and the Tune adapter."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Callable

import pyarrow.parquet as pq

from study.lineage import LineageIds, RoundResult, plan_lineage, run_lineage
from study.results import lineage_path, write_lineage, write_round
from study.specs import LineageSpec
from study.train import TrainingDiverged, resolve_device
from study.version import code_version


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def default_workdir(root: str | Path, study: str, trial_id: str) -> Path:
    return Path(root) / "_checkpoints" / f"study={study}" / trial_id


def run_to_lake(
    spec: LineageSpec,
    root: str | Path,
    *,
    study: str = "adhoc",
    trial_id: str | None = None,
    workdir: str | Path | None = None,
    device: str | None = None,
    threads: int | None = None,
    optuna_trial_number: int | None = None,
    on_round: Callable[[RoundResult], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> list[RoundResult]:
    trial_id = trial_id or spec.lineage_id()
    workdir = Path(workdir) if workdir is not None else default_workdir(root, study, trial_id)
    path = lineage_path(Path(root), study, spec.strategy, trial_id)
    started = now()
    if path.is_file():
        try:
            started = pq.read_table(path, columns=["started_at"])["started_at"][0].as_py() or started
        except Exception:
            pass
    done = 0
    base = {
        "study": study, "strategy": spec.strategy, "trial_id": trial_id, "lineage_id": spec.lineage_id(),
        "config_hash": spec.config_hash(), "model": spec.model, "dataset": spec.dataset, "seed": spec.seed,
        "rounds_planned": plan_lineage(spec).rounds[-1], "config_json": json.dumps(spec.to_dict(), sort_keys=True),
        "optuna_trial_number": optuna_trial_number, "device": str(resolve_device(device)),
        "code_version": code_version(), "started_at": started,
    }

    def status(state: str, error: str | None = None) -> None:
        write_lineage(root, {**base, "status": state, "error": error, "rounds_done": done, "updated_at": now()})

    def record(result: RoundResult) -> None:
        nonlocal done
        write_round(root, {**result.as_row(), "written_at": now()})
        done = result.round + 1
        status("running")
        if on_round:
            on_round(result)

    status("running")
    try:
        results = run_lineage(spec, record, ids=LineageIds(study, trial_id), workdir=workdir,
                              device=device, threads=threads, on_progress=on_progress)
    except TrainingDiverged as e:
        status("diverged", str(e))
        raise
    except BaseException as e:
        status("failed", f"{type(e).__name__}: {e}".splitlines()[0])
        raise
    done = results[-1].round + 1 if results else 0
    status("finished")
    return results
