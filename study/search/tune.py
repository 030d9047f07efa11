"""Ray Tune + Optuna adapter: runs (or resumes) a study, one Tune trial per configuration, each
trial running its seeds' lineages as Ray tasks (`trainable`), Optuna choosing the configurations
(`optuna_io`), the driver's callbacks filing what trials leave behind (`driver`). The lineage
engine does the work; this only schedules it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import optuna
import pyarrow.fs as pafs
import ray
from ray import tune
from ray.tune import CheckpointConfig, FailureConfig, RunConfig
from ray.tune.schedulers import ASHAScheduler

from study.analysis.objectives import RoundPoint, pareto_front, seed_points
from study.errors import SpecError
from study.lake.files import write_study
from study.lake.reader import read_lineages, read_rounds, read_studies
from study.lake.schema import FAILED_STATUSES, StudyRow
from study.lake.store import filesystem_of, normalize_root
from study.search.compat import restored_configs
from study.search.driver import LakeFinalizer, StallStopper, StudyStalled  # Tune pickles these by name
from study.search.driver_lock import driver_lock
from study.search.lineage_tasks import TRIAL_RESOURCES, LineageBoard, trials_to_fill
from study.search.optuna_io import (  # EnvRDBStorage: pickles of an older version name it here
    FAILURE_KEY,
    DefineByRunSpace,
    EnvRDBStorage,  # noqa: F401
    LotterySearch,
    driver_url,
    make_sampler,
    optuna_storage,
)
from study.search.plugins_on_ray import check_plugins_on_nodes, start_ray
from study.search.preflight import check_fits, check_storage
from study.search.study_spec import StudySpec
from study.search.trainable import AfterRound, lineage_trial
from study.secrets import redact
from study.version import code_version


@dataclass
class StudyOutcome:
    best: list[dict[str, Any]]  # the best configuration, or the Pareto set (selected on validation)
    trials: list[dict[str, Any]]  # every Optuna trial: number, state, params, values, failure, reported
    results_root: str
    tune_path: str
    optuna_storage: str
    errors: int


def prepare(study: StudySpec) -> StudySpec:
    """Absolute storage paths, so trials on any node (and in Tune's per-trial working
    directories) write to the same place; `resources.pack` decided (on or off), so a trial
    needs no torch to know."""
    storage = study.storage
    packed = study.packed()
    results = normalize_root(storage.results)
    return dataclasses.replace(
        study,
        storage=dataclasses.replace(
            storage, results=results, tune=storage.tune_path(), optuna=storage.optuna_url(study.name)
        ),
        resources=dataclasses.replace(study.resources, pack="on" if packed else "off"),
    )


def tune_root(study: StudySpec) -> str:
    """Tune's storage of a prepared study."""
    assert study.storage.tune is not None, "prepare() sets it"
    return study.storage.tune


def tune_storage(study: StudySpec) -> tuple[str, pafs.FileSystem | None]:
    """Where Tune keeps a prepared study's experiments, as (path, filesystem) (`store.filesystem_of`)."""
    return filesystem_of(tune_root(study))


def optuna_url(study: StudySpec) -> str:
    """The Optuna storage of a prepared study, as written (a password stays ${VAR})."""
    assert study.storage.optuna is not None, "prepare() sets it"
    return study.storage.optuna


def run_study(
    study: StudySpec,
    *,
    address: str | None = None,
    callbacks: list[tune.Callback] | None = None,
    announce: Callable[[], None] | None = None,
    after_round: AfterRound | None = None,
) -> StudyOutcome:
    """Run (or resume) a study. Everything that can be checked is checked before any trial runs:
    the study's identity against what the lake holds under its name, the storage, and that a
    trial fits a node of the cluster (SpecError, one line). A study that stalls is stopped
    (StudyStalled), with its finished rounds in the lake. A study runs under one driver at a time
    (`driver_lock`). `after_round` is for tests only (`lineage_trial`'s hook)."""
    study = prepare(study)
    check_storage(study)
    url = optuna_url(study)
    with driver_lock(study.name, url, driver_url(url) if "://" in url else url):
        _check_same_study(study)
        return _run_study(study, address, callbacks, announce, after_round)


def _run_study(
    study: StudySpec,
    address: str | None,
    callbacks: list[tune.Callback] | None,
    announce: Callable[[], None] | None,
    after_round: AfterRound | None,
) -> StudyOutcome:
    start_ray(study, address)
    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    check_fits(*study.task_request(), nodes, lineages=study.pack_size())
    check_plugins_on_nodes(study)
    if announce:
        announce()
    metrics, modes = study.objective.metrics, study.objective.modes
    multi = study.objective.multi
    tune_path, tune_fs = tune_storage(study)
    path = f"{tune_path}/{study.name}"
    board = LineageBoard.remote()  # type: ignore[attr-defined]  # a Ray actor class
    # a trial holds next to nothing: its seeds' lineage tasks hold resources.cpu/gpu each
    trainable = tune.with_resources(
        tune.with_parameters(lineage_trial, study=study, board=board, after_round=after_round), TRIAL_RESOURCES
    )
    stall = StallStopper(study.stall_timeout_s, board)
    if tune.Tuner.can_restore(path, storage_filesystem=tune_fs):
        try:
            tuner = tune.Tuner.restore(
                path, trainable, resume_unfinished=True, resume_errored=True, storage_filesystem=tune_fs
            )
        except (ImportError, AttributeError, pickle.UnpicklingError) as e:  # pickled by a version whose code moved
            raise SpecError(
                f"Tune's saved experiment {tune_root(study)}/{study.name} was written by another version of this "
                f"package and cannot be restored ({type(e).__name__}: {e}); run the study under a new name, or "
                f"into a new lake (--results)"
            ) from None
        run_config, tune_config = restored_configs(tuner)
        restored = run_config.stop if run_config else None
        if isinstance(restored, StallStopper):  # the restored one is the one Tune polls; it takes today's limit
            restored.timeout_s, restored.board = study.stall_timeout_s, board
            stall = restored
        if run_config is not None:  # this run's callbacks replace the pickled ones of their type
            given = {type(c): c for c in callbacks or []}
            kept = [given.pop(type(c), c) for c in run_config.callbacks or []]
            run_config.callbacks = [*kept, *given.values()]
        for callback in (run_config.callbacks or []) if run_config else []:
            if isinstance(callback, LakeFinalizer):  # restored too: this run's board and storage
                callback.board, callback.root, callback.study = board, study.storage.results, study.name
                callback.seeds = len(study.seeds)
        if tune_config is not None:  # a study first run by an older version reused trial actors
            tune_config.reuse_actors = False
    else:
        searcher = LotterySearch(
            DefineByRunSpace(study),
            metric=metrics if multi else metrics[0],
            mode=modes if multi else modes[0],
            sampler=make_sampler(study),
            study_name=study.name,
            storage=optuna_storage(optuna_url(study)),
        )
        scheduler = None
        if study.scheduler:
            scheduler = ASHAScheduler(
                time_attr="pruned_pct",
                metric=metrics[0],
                mode=modes[0],
                max_t=100,
                grace_period=study.scheduler.grace_pruned_pct,  # type: ignore[arg-type]  # a % pruned: Ray takes floats
                reduction_factor=study.scheduler.reduction_factor,
            )
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=study.budget.num_samples,
                max_concurrent_trials=study.max_concurrent
                or trials_to_fill(*study.task_request(), study.tasks_per_trial(), ray.cluster_resources()),
                reuse_actors=False,  # a trial is a light process; a reused one could still be ending its tasks
                time_budget_s=study.budget.time_budget_s,
            ),
            run_config=RunConfig(
                name=study.name,
                storage_path=tune_path,
                storage_filesystem=tune_fs,
                verbose=0,
                stop=stall,
                failure_config=FailureConfig(max_failures=study.max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=2),
                callbacks=[
                    *(callbacks or []),
                    LakeFinalizer(study.storage.results, study.name, board, len(study.seeds)),
                ],
            ),
        )
    _record_study(study)
    grid = tuner.fit()
    if isinstance(stall, StallStopper) and stall.reason:
        raise StudyStalled(f"study {study.name} stopped: {stall.reason}")
    return _outcome(study, metrics, modes, grid.num_errors)


def _check_same_study(study: StudySpec) -> None:
    """Refuse to file a different study under a name the lake already holds."""
    read = read_studies(study.storage.results, study.name)
    if read.skipped:
        raise SpecError(
            f"cannot tell whether study {study.name} is the one the lake holds: {read.skipped[0]}; move that file "
            f"away (the study's row is written again) or pick another study name"
        )
    rows = read.table.to_pylist()
    if not rows or not rows[0]["spec_json"]:
        return
    held = json.loads(rows[0]["spec_json"])

    def canonical(value: Any) -> str:
        return json.dumps(value, default=str, sort_keys=True)

    changed = [k for k, v in study.identity().items() if canonical(held.get(k)) != canonical(v)]
    if changed:
        raise SpecError(
            f"study {study.name} already exists in {study.storage.results} with a different "
            f"{', '.join(changed)}; give the changed study a new name (a re-run resumes the study: only "
            f"resources, concurrency and storage may change)"
        )


def _record_study(study: StudySpec) -> None:
    """The search space and objective, in the lake, so readers need nothing but Parquet."""
    row = StudyRow(
        study=study.name,
        objective=study.objective.name,
        metrics=study.objective.metrics,
        modes=study.objective.modes,
        search_json=json.dumps(dataclasses.asdict(study)["search"], sort_keys=True),
        spec_json=json.dumps(study.to_dict(), sort_keys=True, default=str),
        code_version=code_version(),
        written_at=dt.datetime.now(dt.UTC),
    )
    write_study(study.storage.results, dataclasses.asdict(row))


def trial_points(root: str, study: str) -> dict[int, list[RoundPoint]]:
    """Per Optuna trial number, the seed-mean (remaining %, val acc, test acc, val loss) of each round that
    every seed finished, read from the lake (failed lineages left out)."""
    lineages = read_lineages(root, study).table.to_pylist()
    seeds: dict[int, set[tuple[str, str]]] = {}
    for row in lineages:
        if row["optuna_trial_number"] is not None and row["status"] not in FAILED_STATUSES and row["branch"] is None:
            seeds.setdefault(row["optuna_trial_number"], set()).add((row["trial_id"], row["lineage_id"]))
    columns = [
        "trial_id",
        "lineage_id",
        "round",
        "remaining_pct",
        "val_acc",
        "test_acc",
        "val_error_barrier",
        "val_loss",
    ]
    by_lineage: dict[tuple[str, str], list[SimpleNamespace]] = {}
    for row in read_rounds(root, study).table.select(columns).to_pylist():
        by_lineage.setdefault((row["trial_id"], row["lineage_id"]), []).append(SimpleNamespace(**row))
    for rows in by_lineage.values():
        rows.sort(key=lambda r: r.round)
    return {number: seed_points([by_lineage.get(key, []) for key in sorted(keys)]) for number, keys in seeds.items()}


def _outcome(study: StudySpec, metrics: list[str], modes: list[str], errors: int) -> StudyOutcome:
    ostudy = optuna.load_study(study_name=study.name, storage=optuna_storage(optuna_url(study)))
    points = trial_points(study.storage.results, study.name)
    trials = [
        {
            "number": t.number,
            "state": t.state.name,
            "params": t.params,
            "values": t.values,
            "failure": t.user_attrs.get(FAILURE_KEY),
            "reported": study.objective.reported_test(points.get(t.number, [])),
        }
        for t in ostudy.trials
    ]
    done = [t for t in trials if t["state"] == "COMPLETE" and t["values"]]
    if study.objective.multi:
        front = pareto_front([tuple(t["values"]) for t in done], modes)
        best = [done[i] for i in front]
    else:
        sign = 1 if modes[0] == "max" else -1
        best = sorted(done, key=lambda t: -sign * t["values"][0])[:1]
    return StudyOutcome(
        best, trials, study.storage.results, f"{tune_root(study)}/{study.name}", redact(optuna_url(study)), errors
    )
