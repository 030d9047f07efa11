"""Ray Tune + Optuna adapter: one trial = one configuration's lineages (one per seed, each a
parallel Ray task, see lineage_tasks), reported to Tune after every round that all its seeds
finished, with a checkpoint that carries the lineage states (θ_k and mask included). The lineage
engine does the work; this only schedules it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import pickle
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pyarrow.fs as pafs
import ray
from optuna.storages.journal import JournalFileBackend
from ray import tune
from ray.tune import Checkpoint, CheckpointConfig, FailureConfig, RunConfig
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch
from ray.tune.stopper import Stopper

from study.analysis.objectives import RoundPoint, objective_metrics, pareto_front, reported_test
from study.engine.failures import LineageFailure
from study.errors import SpecError
from study.lake.files import checkpoint_dir, drop_checkpoint, trial_round_files, write_study
from study.lake.reader import read_lineages, read_rounds, read_studies
from study.lake.schema import FAILED_STATUSES, StudyRow
from study.lake.store import S3_SCHEME, is_remote, s3_filesystem, store_for
from study.plugins import import_plugins
from study.search.driver_lock import driver_lock
from study.search.lineage_tasks import (
    HEARTBEAT_S,
    QUIET_S,
    TRIAL_RESOURCES,
    LineageBoard,
    LineageJob,
    RemoteLineage,
    all_finished,
    board_quiet_for,
    close_running,
    start_tasks,
    stop_all,
    trial_lineages,
    trials_to_fill,
)
from study.search.paths import get_path
from study.search.plugins_on_ray import check_plugins_on_nodes, start_ray
from study.search.preflight import check_fits, check_storage
from study.search.study_spec import StudySpec
from study.secrets import expand_env, redact
from study.version import code_version

FAULT_ENV = "STUDY_INJECT_FAULT"  # "<round>:<marker dir>": every trial raises once at that round (recovery tests)
FAILURE_KEY = "lineage_failure"  # in a trial's last result: why its lineages cannot count


def _driver_url(template: str) -> str:
    """The URL to connect with: ${VARS} expanded; a bare postgresql:// means the psycopg2 driver
    this package installs (SQLAlchemy would otherwise look for psycopg 3)."""
    url = expand_env(template, f"optuna storage {redact(template)}")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


class EnvRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage, connected with the password from the environment. Tune pickles the
    searcher (this storage inside) into its experiment folder: the pickle holds the URL as
    written (with ${VAR}), never the expanded password, and is expanded again when loaded."""

    def __init__(self, template: str) -> None:
        self.template = template
        url = _driver_url(template)
        connect = {"connect_timeout": 10} if url.startswith("postgresql") else {}
        super().__init__(url, engine_kwargs={"connect_args": connect} if connect else None)

    def __getstate__(self) -> dict[Any, Any]:
        return {**super().__getstate__(), "url": self.template}

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__({**state, "url": _driver_url(state["template"])})


def optuna_storage(url: str) -> optuna.storages.BaseStorage:
    """A journal file (a path) or a database (an RDB URL, its ${VARS} from the environment)."""
    if "://" in url:
        return EnvRDBStorage(url)
    Path(url).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(url))


def make_sampler(study: StudySpec) -> optuna.samplers.BaseSampler:
    seed = study.sampler_seed
    if study.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if study.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if study.sampler == "grid":
        return optuna.samplers.GridSampler({n: p.grid(n) for n, p in study.search.items()}, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


class DefineByRunSpace:
    """The Optuna define-by-run space (a picklable callable: Tune saves the searcher with the
    experiment). A parameter with `when` exists only while its condition holds."""

    def __init__(self, study: StudySpec) -> None:
        self.search = study.search
        self.base = study.base_spec().to_dict()

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, p in self.search.items():
            if any(values.get(k, get_path(self.base, k)) not in allowed for k, allowed in p.when.items()):
                continue
            if p.type == "categorical":
                values[name] = p.decode(trial.suggest_categorical(name, p.sampler_choices()))
            elif p.type == "int":
                low, high = p.bounds
                values[name] = trial.suggest_int(name, int(low), int(high), step=int(p.step or 1))
            else:
                low, high = p.bounds
                values[name] = trial.suggest_float(
                    name, low, high, log=p.type == "log_float", step=p.step if p.type == "float" else None
                )
        return {"optuna_trial_number": trial.number}


class LotterySearch(OptunaSearch):
    """OptunaSearch that files a trial whose lineages failed (diverged, degenerate) as FAIL with
    the reason, so it can never be a study's best: the stock searcher would tell Optuna
    COMPLETE with whatever the last result held."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result and result.get(FAILURE_KEY) and trial_id not in self._completed_trials:
            assert self._ot_study is not None  # set up by OptunaSearch before any trial
            ot_trial = self._ot_trials[trial_id]
            ot_trial.set_user_attr(FAILURE_KEY, result[FAILURE_KEY])
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result=result, error=error)


def _maybe_inject_fault(trial_id: str, round_: int, jobs: list[LineageJob]) -> None:
    """Raise once per trial at the given round; the marker file records when each round row of
    the trial was written, so a test can tell a resume (old rows kept) from a restart."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    at, marker_dir = spec.split(":", 1)
    marker = Path(marker_dir) / trial_id
    if round_ == int(at) and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        written: dict[str, str] = {}
        for _ in range(20):  # a sibling task may fold its round files meanwhile: list them again
            written, vanished = {}, False
            for job in jobs:
                for path in trial_round_files(job.root, job.study, job.trial_id):
                    try:
                        table = store_for(path).read_table(path, columns=["trial_id", "round", "written_at"])
                    except FileNotFoundError:
                        vanished = True
                        continue
                    rows = table.to_pylist()
                    written |= {f"{r['trial_id']}-r{r['round']:03d}": r["written_at"].isoformat() for r in rows}
            if not vanished:
                break
        marker.write_text(json.dumps(written))
        raise RuntimeError(f"injected fault in trial {trial_id} at round {round_} ({FAULT_ENV})")


def lineage_trial(config: dict[str, Any], study: StudySpec, board: ray.actor.ActorHandle | None = None) -> None:
    """The Tune function trainable: starts its seeds' lineages as parallel Ray tasks (packed: a
    task per GPU's worth of them), reports their seed means after every round they all
    finished, and stops them when it ends."""
    import_plugins(study.base.get("plugins", ()))  # a plugin objective is read here
    ctx = tune.get_context()
    trial_id = ctx.get_trial_id()
    params = {k: v for k, v in config.items() if k in study.search}
    workdir = Path(tempfile.mkdtemp(prefix=f"study-{trial_id}-"))
    # Each lineage checkpoints into the lake after every round (shared storage, like its rows).
    # On a local (shared) lake Tune's checkpoint carries copies; a restored experiment may hand
    # back an older Tune checkpoint than the lake holds (its state snapshot lags): the newer one
    # wins, so finished rounds are never redone. An object-store lake is itself durable and is
    # not a folder this trial can copy from (the task may run on another node): no copies.
    local = not is_remote(study.storage.results)
    durable: dict[int, Path | None] = {  # None: the lineage keeps its checkpoint in the object store itself
        seed: Path(checkpoint_dir(study.storage.results, study.name, f"{trial_id}-s{seed}")) if local else None
        for seed in study.seeds
    }
    lineages: list[RemoteLineage] = []
    try:
        checkpoint = tune.get_checkpoint()
        if checkpoint and local:
            with checkpoint.as_directory() as saved:
                for seed, target in durable.items():
                    if target is not None:
                        _keep_newer(Path(saved) / f"seed={seed}", target)
        jobs = [
            LineageJob(
                study.lineage_dict(params, seed),
                study.storage.results,
                study.name,
                f"{trial_id}-s{seed}",
                durable[seed],
                "cuda" if study.resources.lineage_gpu > 0 else "cpu",
                max(1, int(study.resources.cpu)),
                config.get("optuna_trial_number"),
            )
            for seed in study.seeds
        ]
        for task in start_tasks(jobs, study.resources.cpu, study.resources.lineage_gpu, study.pack_size(), board):
            lineages += task.lineages  # one by one: whatever started is stopped in `finally`
        rows = [list(lin.started.previous) for lin in lineages]
        points = [_mean_point(rs) for rs in zip(*rows, strict=False)]

        def report(results: list) -> None:
            if not local:
                tune.report(_metrics(study, results, points))
                return
            for seed, lin in zip(study.seeds, lineages, strict=True):
                (workdir / f"seed={seed}").mkdir(exist_ok=True)
                _copy(lin.started.checkpoint, workdir / f"seed={seed}" / lin.started.checkpoint.name)
            tune.report(_metrics(study, results, points), checkpoint=Checkpoint.from_directory(str(workdir)))

        try:
            if points:  # resumed: Tune may hold an older result (the tasks ran ahead of the last
                # report), and a lineage that finished meanwhile yields nothing more, so say where
                # the seeds stand now (the same round again is harmless to schedulers)
                report([r[len(points) - 1] for r in rows])
            for results in lockstep(lineages, rows):
                points.append(_mean_point(results))
                _maybe_inject_fault(trial_id, results[0].round, jobs)
                report(results)
            for seed in study.seeds:  # finished: the rows are final, the resume state is not needed
                drop_checkpoint(study.storage.results, study.name, f"{trial_id}-s{seed}")
        except LineageFailure as e:
            # the failing lineage filed its own status; its siblings stop, and the trial reports
            # a failure that LotterySearch files with Optuna as FAIL (never a best)
            if stop_all(lineages):  # else the driver's LakeFinalizer files them once they are quiet
                why = f"a sibling seed's lineage is {e.status}: {e}"
                close_running(study.storage.results, study.name, trial_id, "stopped", why)
            tune.report({**{m: float("nan") for m in study.objective.metrics}, FAILURE_KEY: f"{e.status}: {e}"})
        except SystemExit:  # how Tune ends a trial it stops while the trial waits in tune.report
            if stop_all(lineages):
                close_running(study.storage.results, study.name, trial_id, "stopped", _stopped_reason(trial_id))
            raise
    finally:
        stop_all(lineages)  # an error leaves them 'running': Tune's retry resumes them from the lake
        shutil.rmtree(workdir, ignore_errors=True)


def _copy(source: Path, target: Path, attempts: int = 3) -> None:
    """Copy a checkpoint that its task may be replacing meanwhile (on NFS a replaced file's
    handle can go stale mid-read)."""
    for attempt in range(attempts):
        try:
            shutil.copy2(source, target)
            return
        except OSError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)


def _errored_reason(trial_id: str) -> str:
    return (
        f"trial {trial_id} ended in an error (out of retries, max_failures); running the study again "
        f"finishes its lineages in the lake, while Optuna keeps the trial as FAIL"
    )


def _stopped_reason(trial_id: str) -> str:
    return f"Tune stopped trial {trial_id} (its scheduler, the time budget or a stall)"


def lockstep(lineages: list[Any], rows: list[list[Any]]) -> Iterator[list[Any]]:
    """Step the seeds' lineages together and yield each round once every seed has it (`rows`
    holds each lineage's rounds so far, and grows). A seed killed mid-round resumes one round
    behind its siblings: it is stepped alone until it catches up, so a seed mean never mixes
    rounds, and every lineage is stepped until it stops (which files it finished)."""
    done = [False] * len(lineages)
    reported = min(len(r) for r in rows)
    while not all(done):
        furthest = max(len(r) for r in rows)
        behind = [i for i, r in enumerate(rows) if len(r) < furthest and not done[i]]
        for i in behind or [i for i in range(len(lineages)) if not done[i]]:
            result = next(lineages[i], None)
            if result is None:
                done[i] = True
            else:
                rows[i].append(result)
        while reported < min(len(r) for r in rows):
            yield [r[reported] for r in rows]
            reported += 1


def _keep_newer(saved: Path, workdir: Path) -> None:
    """Put the checkpoint saved in Tune's folder into the lineage's workdir, unless the workdir
    already holds a later round."""
    from study.engine.checkpoint import CHECKPOINT_FILE, checkpoint_round  # torch, on restore only

    candidate, target = saved / CHECKPOINT_FILE, workdir / CHECKPOINT_FILE
    if candidate.is_file() and checkpoint_round(candidate) > checkpoint_round(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(candidate, target)


def _mean_point(results) -> RoundPoint:
    """Seed means; the test accuracy is carried for reporting, objectives never read it. The
    barrier is a mean only when every seed measured it."""
    n = len(results)
    barriers = [r.val_error_barrier for r in results]
    return RoundPoint(
        sum(r.remaining_pct for r in results) / n,
        sum(r.val_acc for r in results) / n,
        sum(r.test_acc for r in results) / n,
        None if any(b is None for b in barriers) else sum(barriers) / n,
        sum(r.val_loss for r in results) / n,
    )


def _metrics(study: StudySpec, results, points: list[RoundPoint]) -> dict[str, Any]:
    """What a trial reports to Tune (and so to the scheduler and Optuna): validation-derived
    metrics only. Test accuracy stays in the lake."""
    n = len(results)
    point = points[-1]
    return {
        "round": results[0].round,
        "remaining_pct": point.remaining_pct,
        "pruned_pct": 100.0 - point.remaining_pct,
        "val_acc": point.val_acc,
        "val_loss": sum(r.val_loss for r in results) / n,
        "early_stop_iteration": sum(r.early_stop_iteration for r in results) / n,
        "dense_val_acc": points[0].val_acc,
        "iterations": sum(r.iterations for r in results),
        **objective_metrics(
            points,
            study.objective.name,
            study.objective.tolerance,
            study.objective.target_remaining,
            study.objective.max_barrier,
        ),
    }


class StallStopper(Stopper):
    """Stops the study, saying why, when lineages are left to run but none has run for
    `timeout_s` seconds (their tasks wait on resources the cluster never grants). A running
    lineage is progress however long its round takes: its task beats on the `board`."""

    def __init__(self, timeout_s: float | None, board: ray.actor.ActorHandle | None) -> None:
        self.timeout_s = timeout_s
        self.board = board
        self.last: float | None = None
        self.polled = 0.0
        self.reason: str | None = None

    def __getstate__(self) -> dict:
        # a restored study starts its clock anew, with the board of its own run
        return {**self.__dict__, "board": None, "last": None, "polled": 0.0, "reason": None}

    def __setstate__(self, state: dict) -> None:  # also one pickled by an older version
        self.__dict__.update({"board": None, "last": None, "polled": 0.0, "reason": None, **state})

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False  # stops the whole study or nothing (stop_all)

    def stop_all(self) -> bool:
        if self.timeout_s is None:
            return False
        now = time.monotonic()
        if self.last is None:
            self.last = now
        if self.board is not None and now - self.polled >= HEARTBEAT_S:  # polled every controller step
            self.polled = now
            quiet = board_quiet_for(self.board)
            if quiet is not None:  # no news (the board restarts) is no progress
                self.last = max(self.last, now - quiet)
        if self.reason is None and now - self.last > self.timeout_s:
            self.reason = _stall_reason(self.timeout_s)
        return self.reason is not None


def _stall_reason(timeout_s: float) -> str:
    total, free = ray.cluster_resources(), ray.available_resources()
    have = ", ".join(f"{free.get(k, 0):g} of {total[k]:g} {k}" for k in ("CPU", "GPU") if total.get(k))
    return (
        f"no lineage ran for {timeout_s:g} s (free now: {have or 'nothing'}): the cluster never granted a "
        f"lineage's resources; free the cluster or lower resources.cpu/gpu, then run the study under a new "
        f"name (finished rounds stay in the lake)"
    )


@contextlib.contextmanager
def _never_raises(what: str) -> Iterator[None]:
    """Tune callbacks that file statuses must never stop a study: a failure is logged."""
    try:
        yield
    except Exception as e:
        logging.getLogger(__name__).warning("%s failed (%s: %s); the study goes on", what, type(e).__name__, e)


class StudyStalled(RuntimeError):
    """The study made no progress for stall_timeout_s and was stopped; finished rounds are kept."""


class LakeFinalizer(tune.Callback):
    """Runs in the driver: files the lineages a trial left 'running' ('stopped' when a
    scheduler, the time budget or a stall stopped it; 'failed' when it ran out of retries), so no
    lineage stays 'running' forever. Tune ends a trial before its lineage tasks are gone, so a
    trial is filed only once its tasks have been quiet on the board for QUIET_S (the trial's own
    clean-up usually files them first); at the study's end it waits for that, up to END_WAIT_S."""

    END_WAIT_S = 60.0

    def __init__(self, root: str, study: str, board: ray.actor.ActorHandle | None = None, seeds: int = 1) -> None:
        self.root, self.study, self.board, self.seeds = root, study, board, seeds
        self.pending: dict[str, tuple[float, str, str]] = {}  # Tune trial -> (ended at, status, why)
        self.seen: set[str] = set()
        self.polled = 0.0

    def __getstate__(self) -> dict:
        return {**self.__dict__, "board": None, "pending": {}, "seen": set(), "polled": 0.0}

    def __setstate__(self, state: dict) -> None:  # also one pickled by an older version
        self.__dict__.update({"board": None, "pending": {}, "seen": set(), "polled": 0.0, "seeds": 1, **state})

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        with _never_raises("filing a finished trial's lineages"):
            self._pend(trial.trial_id, "stopped", _stopped_reason(trial.trial_id))

    def on_step_begin(self, iteration, trials, **info) -> None:
        if self.pending and time.monotonic() - self.polled >= HEARTBEAT_S:
            with _never_raises("filing a finished trial's lineages"):
                self._close_quiet()

    def on_experiment_end(self, trials, **info) -> None:
        with _never_raises("filing the lineages left running at the study's end"):
            self._close_all(trials)

    def _close_all(self, trials) -> None:
        for trial in trials:
            if trial.status == "ERROR":
                self._pend(trial.trial_id, "failed", _errored_reason(trial.trial_id))
            elif trial.status == "TERMINATED" and trial.trial_id not in self.seen:
                self._pend(trial.trial_id, "stopped", _stopped_reason(trial.trial_id))
        deadline = time.monotonic() + self.END_WAIT_S
        while self._close_quiet() and time.monotonic() < deadline:
            time.sleep(HEARTBEAT_S / 2)
        for trial_id, (_, status, why) in self.pending.items():  # still beating: file them all the same
            close_running(self.root, self.study, trial_id, status, why)

    def _pend(self, trial_id: str, status: str, why: str) -> None:
        self.seen.add(trial_id)
        self.pending[trial_id] = (time.monotonic(), status, why)
        self._close_quiet()

    def _close_quiet(self) -> bool:
        """File the pending trials whose tasks are gone; True while some are left."""
        self.polled = time.monotonic()
        for trial_id, (ended, status, why) in list(self.pending.items()):
            if all_finished(trial_lineages(self.root, self.study, trial_id), self.seeds):  # no task can be left
                del self.pending[trial_id]
            elif self._quiet(trial_id, ended):  # a task still starting may yet write 'running'
                close_running(self.root, self.study, trial_id, status, why)  # reads the rows as they are now
                del self.pending[trial_id]
        return bool(self.pending)

    def _quiet(self, trial_id: str, ended: float) -> bool:
        if self.board is None:
            return True
        if time.monotonic() - ended < QUIET_S:
            return False
        quiet = board_quiet_for(self.board, trial_id)
        return quiet is not None and quiet > QUIET_S


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
    results = (
        storage.results.rstrip("/") if is_remote(storage.results) else str(Path(storage.results).expanduser().resolve())
    )
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
    """Where Tune keeps a prepared study's experiments, as (path, filesystem): an s3:// store gets
    the client configured from the AWS environment (the endpoint too); other URIs and local
    paths are Tune's to resolve."""
    root = tune_root(study).rstrip("/")
    if is_remote(root):
        return root[len(S3_SCHEME) :], s3_filesystem()
    return root, None


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
) -> StudyOutcome:
    """Run (or resume) a study. Everything that can be checked is checked before any trial runs:
    the study's identity against what the lake holds under its name, the storage, and that a
    trial fits a node of the cluster (SpecError, one line). A study that stalls is stopped
    (StudyStalled), with its finished rounds in the lake. A study runs under one driver at a time
    (`driver_lock`)."""
    study = prepare(study)
    check_storage(study)
    url = optuna_url(study)
    with driver_lock(study.name, url, _driver_url(url) if "://" in url else url):
        _check_same_study(study)
        return _run_study(study, address, callbacks, announce)


def _run_study(
    study: StudySpec, address: str | None, callbacks: list[tune.Callback] | None, announce: Callable[[], None] | None
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
    trainable = tune.with_resources(tune.with_parameters(lineage_trial, study=study, board=board), TRIAL_RESOURCES)
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
        run_config = tuner._local_tuner.get_run_config() if tuner._local_tuner else None
        restored = run_config.stop if run_config else None
        if isinstance(restored, StallStopper):  # the restored one is the one Tune polls; it takes today's limit
            restored.timeout_s, restored.board = study.stall_timeout_s, board
            stall = restored
        for callback in (run_config.callbacks or []) if run_config else []:
            if isinstance(callback, LakeFinalizer):  # restored too: this run's board and storage
                callback.board, callback.root, callback.study = board, study.storage.results, study.name
                callback.seeds = len(study.seeds)
        tune_config = getattr(tuner._local_tuner, "_tune_config", None)
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
    by_trial: dict[tuple[str, str], list[dict]] = {}
    for row in read_rounds(root, study).table.select(columns).to_pylist():
        by_trial.setdefault((row["trial_id"], row["lineage_id"]), []).append(row)
    out = {}
    for number, keys in seeds.items():
        per_round: dict[int, list[dict]] = {}
        for key in keys:
            for row in by_trial.get(key, []):
                per_round.setdefault(row["round"], []).append(row)
        points = []
        for _, rows in sorted(per_round.items()):
            if len(rows) < len(keys):
                break
            points.append(_mean_point([SimpleNamespace(**r) for r in rows]))
        out[number] = points
    return out


def _outcome(study: StudySpec, metrics: list[str], modes: list[str], errors: int) -> StudyOutcome:
    ostudy = optuna.load_study(study_name=study.name, storage=optuna_storage(optuna_url(study)))
    points = trial_points(study.storage.results, study.name)
    obj = study.objective
    trials = [
        {
            "number": t.number,
            "state": t.state.name,
            "params": t.params,
            "values": t.values,
            "failure": t.user_attrs.get(FAILURE_KEY),
            "reported": reported_test(
                points.get(t.number, []), obj.name, obj.tolerance, obj.target_remaining, obj.max_barrier
            ),
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
