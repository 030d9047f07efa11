"""The Tune trainable of a study: one trial = one configuration's lineages (one per seed, each a
parallel Ray task, see lineage_tasks), reported to Tune after every round that all its seeds
finished, with a checkpoint that carries the lineage states (θ_k and mask included). The lineage
engine does the work; the trial only waits, reports and checkpoints."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune import Checkpoint

from study.analysis.objectives import RoundPoint, seed_mean, seed_points
from study.engine.failures import LineageFailure
from study.lake.files import checkpoint_place
from study.lake.schema import LineageStatus
from study.plugins import import_plugins
from study.search.lineage_tasks import LineageJob, RemoteLineage, close_running, start_tasks, stop_all
from study.search.optuna_io import FAILURE_KEY
from study.search.seed_ids import seed_trial_id
from study.search.study_spec import StudySpec

AfterRound = Callable[[str, int, list[LineageJob]], None]  # (Tune trial id, round, the trial's jobs)


def lineage_trial(
    config: dict[str, Any],
    study: StudySpec,
    board: ray.actor.ActorHandle | None = None,
    after_round: AfterRound | None = None,
) -> None:
    """The Tune function trainable: starts its seeds' lineages as parallel Ray tasks (packed: a
    task per GPU's worth of them), reports their seed means after every round they all
    finished, and stops them when it ends. `after_round` is a test's hook (fault injection),
    called before each round's report."""
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
    places = {
        seed: checkpoint_place(study.storage.results, study.name, seed_trial_id(trial_id, seed)) for seed in study.seeds
    }
    local = all(place.durable is None for place in places.values())  # the lake's checkpoints are files here
    durable: dict[int, Path | None] = {  # None: the lineage keeps its checkpoint in the object store itself
        seed: place.folder if local else None for seed, place in places.items()
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
                seed_trial_id(trial_id, seed),
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
        points = seed_points(rows)

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
                points.append(seed_mean(results))
                if after_round is not None:
                    after_round(trial_id, results[0].round, jobs)
                report(results)
            for place in places.values():  # finished: the rows are final, the resume state is not needed
                place.drop()
        except LineageFailure as e:
            # the failing lineage filed its own status; its siblings stop, and the trial reports
            # a failure that LotterySearch files with Optuna as FAIL (never a best)
            if stop_all(lineages):  # else the driver's LakeFinalizer files them once they are quiet
                why = f"a sibling seed's lineage is {e.status}: {e}"
                close_running(study.storage.results, study.name, trial_id, LineageStatus.STOPPED, why)
            tune.report({**{m: float("nan") for m in study.objective.metrics}, FAILURE_KEY: f"{e.status}: {e}"})
        except SystemExit:  # how Tune ends a trial it stops while the trial waits in tune.report
            if stop_all(lineages):
                close_running(
                    study.storage.results, study.name, trial_id, LineageStatus.STOPPED, stopped_reason(trial_id)
                )
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


def errored_reason(trial_id: str) -> str:
    return (
        f"trial {trial_id} ended in an error (out of retries, max_failures); running the study again "
        f"finishes its lineages in the lake, while Optuna keeps the trial as FAIL"
    )


def stopped_reason(trial_id: str) -> str:
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
        "val_loss": point.val_loss,
        "early_stop_iteration": sum(r.early_stop_iteration for r in results) / n,
        "dense_val_acc": points[0].val_acc,
        "iterations": sum(r.iterations for r in results),
        **study.objective.values(points),
    }
