"""Run a lineage into the results lake: round rows as they finish, and a lineages row that says
whether it is running, finished, failed or diverged. Used by the CLI and the Tune adapter."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Callable

import pyarrow.parquet as pq

from study.lineage import LineageIds, RoundResult, iter_lineage
from study.results import lineage_path, write_lineage, write_round
from study.specs import LineageSpec
from study.train import TrainingDiverged, resolve_device
from study.version import code_version


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def default_workdir(root: str | Path, study: str, trial_id: str) -> Path:
    return Path(root) / "_checkpoints" / f"study={study}" / trial_id


class LakeLineage:
    """A lineage that files its rounds and status in the results lake as it runs. Iterate it to
    run one round per step (each yielded after its checkpoint is saved); `previous` holds the
    rounds a resumed lineage had already finished."""

    def __init__(
        self,
        spec: LineageSpec,
        root: str | Path,
        *,
        study: str = "adhoc",
        trial_id: str | None = None,
        workdir: str | Path | None = None,
        device: str | None = None,
        threads: int | None = None,
        optuna_trial_number: int | None = None,
        node_id: str | None = None,
        on_round: Callable[[RoundResult], None] | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self.root = root
        self.on_round = on_round
        trial_id = trial_id or spec.lineage_id()
        self.workdir = Path(workdir) if workdir is not None else default_workdir(root, study, trial_id)
        path = lineage_path(Path(root), study, spec.strategy, trial_id)
        started = now()
        if path.is_file():
            try:
                started = pq.read_table(path, columns=["started_at"])["started_at"][0].as_py() or started
            except Exception:
                pass
        self.base = {
            "study": study, "strategy": spec.strategy, "trial_id": trial_id, "lineage_id": spec.lineage_id(),
            "config_hash": spec.config_hash(), "model": spec.model, "dataset": spec.dataset, "seed": spec.seed,
            "rounds_planned": None, "config_json": json.dumps(spec.to_dict(), sort_keys=True),
            "optuna_trial_number": optuna_trial_number, "node_id": node_id, "device": str(resolve_device(device)),
            "code_version": code_version(), "started_at": started,
        }
        self.done = 0
        self.status("running")
        self.rounds = self._guard(lambda: iter_lineage(
            spec, self._record, ids=LineageIds(study, trial_id), workdir=self.workdir, device=device,
            threads=threads, on_progress=on_progress))
        self.previous = self.rounds.previous
        self.done = self.previous[-1].round + 1 if self.previous else 0
        self.base["rounds_planned"] = self.rounds.plan.rounds[-1]  # the lineage's own plan: no second model
        self.status("running")

    def status(self, state: str, error: str | None = None) -> None:
        write_lineage(self.root, {**self.base, "status": state, "error": error, "rounds_done": self.done,
                                  "updated_at": now()})

    def _record(self, result: RoundResult) -> None:
        write_round(self.root, {**result.as_row(), "written_at": now()})
        self.done = result.round + 1
        self.status("running")
        if self.on_round:
            self.on_round(result)

    def _guard(self, step):
        try:
            return step()
        except TrainingDiverged as e:
            self.status("diverged", str(e))
            raise
        except StopIteration:
            raise
        except BaseException as e:
            self.status("failed", f"{type(e).__name__}: {e}".splitlines()[0])
            raise

    def __iter__(self):
        return self

    def __next__(self) -> RoundResult:
        try:
            return self._guard(lambda: next(self.rounds))
        except StopIteration:
            self.status("finished")
            raise


def run_to_lake(spec: LineageSpec, root: str | Path, **kwargs) -> list[RoundResult]:
    """Run (or resume) a lineage into the lake; returns all its rounds."""
    lineage = LakeLineage(spec, root, **kwargs)
    return list(lineage.previous) + list(lineage)
