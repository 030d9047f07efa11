"""A trial's lineages (one per seed) as parallel Ray tasks: each runs on its own CPUs (or GPU),
files its rows and checkpoints in the lake exactly as a lineage run on its own does, and streams
its round results back to the trial, which only waits, reports and checkpoints. A task not yet
granted resources waits in Ray's queue, and a core that frees up takes a waiting lineage of any
trial: no core idles while one of a long trial's seeds still runs, and no trial waits for cores
that another trial holds but does not use.

A trial's process loads no torch (it only waits): the task builds the lineage from its YAML
mapping, and everything the trial reads back (round results, failures) is plain Python."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import ray
from ray.exceptions import RayError

from study.engine.failures import LineageFailure
from study.engine.rows import RoundResult, RoundRows
from study.lake.files import matching, write_lineage
from study.lake.reader import read_one
from study.lake.schema import LINEAGES_SCHEMA, LineageRow, LineageStatus
from study.search.seed_ids import seed_trial_id, tune_trial_of

# What a trial itself holds: no CPU (it waits on its lineages' tasks, which hold the real
# resources; even a fraction would leave no node a whole CPU for them), only memory, as Ray
# takes no empty request.
TRIAL_RESOURCES: dict[str, float] = {"cpu": 0, "memory": 256 * 2**20}
WORKER_DATASETS = 2  # datasets a lineage worker keeps loaded for its next lineages
CANCEL_WAIT_S = 30.0
HEARTBEAT_S = 1.0
QUIET_S = 3 * HEARTBEAT_S  # no beat for this long: the lineage's task is gone


@ray.remote(num_cpus=0, max_restarts=-1)
class LineageBoard:
    """Where running lineage tasks beat, every HEARTBEAT_S while they live. The driver asks how
    long none has (its stall check: a trial holds no CPU, so a running trial proves nothing), and
    how long a trial's lineages have been quiet (only then may it file their status)."""

    def __init__(self) -> None:
        self.started = self.last = time.monotonic()
        self.lineages: dict[str, float] = {}

    def beat(self, trial_id: str) -> None:
        self.last = self.lineages[trial_id] = time.monotonic()

    def quiet_for(self, tune_trial: str | None = None) -> float:
        """Seconds since the last beat (of the lineages of `tune_trial`, or of any), or since the
        board (re)started when there was none: a restarted board knows nothing older."""
        if tune_trial is None:
            last = self.last
        else:
            mine = (t for k, t in self.lineages.items() if tune_trial_of(k) == tune_trial)
            last = max(mine, default=self.started)
        return time.monotonic() - last


@dataclass(frozen=True)
class LineageJob:
    """One lineage of a trial, as the task that runs it needs it (picklable, torch-free)."""

    lineage: dict  # the lineage spec's YAML mapping, validated by the study before any trial ran
    root: str
    study: str
    trial_id: str
    workdir: Path | None  # None: the lake's own place (a scratch folder synced to the lake, on S3)
    device: str
    threads: int
    optuna_trial_number: int | None


@dataclass(frozen=True)
class Started:
    """The first thing a lineage task yields: the rounds it resumed with and the file its
    checkpoint is saved to after every round (on the task's node)."""

    previous: list[RoundResult]
    checkpoint: Path


def _heartbeat(board: ray.actor.ActorHandle, trial_ids: list[str], stop: threading.Event) -> None:
    while True:
        for trial_id in trial_ids:
            board.beat.remote(trial_id)
        if stop.wait(HEARTBEAT_S):
            return


def _lake_lineage(job: LineageJob, context: Any) -> Any:
    from study.engine.spec import lineage_spec_from_dict
    from study.lake.recorder import LakeLineage

    return LakeLineage(
        lineage_spec_from_dict(job.lineage),
        job.root,
        study=job.study,
        trial_id=job.trial_id,
        workdir=job.workdir,
        context=context,
        optuna_trial_number=job.optuna_trial_number,
        node_id=ray.get_runtime_context().get_node_id(),
    ).open()


def _run_jobs(jobs: list[LineageJob], board: ray.actor.ActorHandle | None) -> Iterator[tuple[int, Any]]:
    """The task of a trial's lineages: one alone, or several packed on its device (their data
    loaded once). Yields (job index, item): each lineage's Started first, then its round results,
    then None when it finished; a LineageFailure ends that lineage's items (the trial stops
    the others)."""
    stop = threading.Event()
    if board is not None:  # a daemon: it dies with the task, however the task ends
        ids = [job.trial_id for job in jobs]
        threading.Thread(target=_heartbeat, args=(board, ids, stop), daemon=True).start()
    try:
        from study.engine.checkpoint import CHECKPOINT_FILE
        from study.engine.failures import LineageFailure
        from study.engine.lineage import RunContext
        from study.engine.packing import run_packed

        first = jobs[0]
        context = RunContext(device=first.device, threads=first.threads, tasks=_worker_data())
        lineages = [_lake_lineage(job, context) for job in jobs]
        for i, lineage in enumerate(lineages):
            yield i, Started(list(lineage.previous), lineage.workdir / CHECKPOINT_FILE)
        for i, event in run_packed(lineages):  # a pack of one trains with the lone loop
            if isinstance(event, BaseException) and not isinstance(event, LineageFailure):
                raise event
            yield i, event.trunk if isinstance(event, RoundRows) else event  # the trial reads trunks
    finally:
        stop.set()


_worker_tasks: list[Any] = []  # this worker process's datasets, made by its first lineage task


def _worker_data() -> Any:
    """The datasets this worker process holds for its lineages: loaded once, shared by every
    lineage it runs, packed together or one task after another (tasks are read-only; a CPU
    worker serves lineage after lineage of a study, a GPU lineage gets a fresh worker)."""
    if not _worker_tasks:
        from study.engine.data import SharedTasks  # in the task's worker: a trial's process loads no torch

        _worker_tasks.append(SharedTasks(keep=WORKER_DATASETS))
    return _worker_tasks[0]


# retries are the trial's business (Tune's max_failures), which resumes from the lake checkpoints
_lineage_task = ray.remote(max_retries=0, retry_exceptions=False)(_run_jobs)
# a GPU lineage gets a fresh worker: an idle one keeps its CUDA context, cached memory and device
_gpu_lineage_task = ray.remote(max_retries=0, retry_exceptions=False, max_calls=1)(_run_jobs)


class LineageTask:
    """The Ray task that runs some of a trial's lineages (`_run_jobs`: one, or several packed),
    started on construction; `lineages` are their iterators. It holds `cpu` CPUs and `gpu` GPUs."""

    def __init__(
        self, jobs: list[LineageJob], cpu: float, gpu: float, board: ray.actor.ActorHandle | None = None
    ) -> None:
        # DEFAULT: outside the trial's placement group, which holds only TRIAL_RESOURCES
        remote = _gpu_lineage_task if gpu > 0 else _lineage_task
        task = remote.options(num_cpus=cpu, num_gpus=gpu, scheduling_strategy="DEFAULT")
        self._stream = cast(ray.ObjectRefGenerator, task.remote(jobs, board))  # Ray's stubs say ObjectRef
        self._items: list[deque] = [deque() for _ in jobs]
        self.lineages = [RemoteLineage(self, i, job) for i, job in enumerate(jobs)]

    def next_item(self, index: int) -> Any:
        """Lineage `index`'s next item, reading (and keeping) its siblings' until it comes."""
        while not self._items[index]:
            try:
                ref = next(self._stream)
            except StopIteration:
                return None
            j, item = cast(tuple[int, Any], ray.get(ref))  # a lineage's LineageFailure comes as its item
            self._items[j].append(item)
        return self._items[index].popleft()


class RemoteLineage:
    """Iterate it for the lineage's new round results, computed by its task (alone or packed
    with siblings). `started` blocks until the task runs; a LineageFailure of this lineage is
    raised here as itself."""

    def __init__(self, task: LineageTask, index: int, job: LineageJob) -> None:
        self.task, self.index, self.job = task, index, job
        self._started: Started | None = None

    @property
    def started(self) -> Started:
        if self._started is None:
            first = self.task.next_item(self.index)
            assert isinstance(first, Started), "a lineage task yields Started first"
            self._started = first
        return self._started

    def __iter__(self) -> RemoteLineage:
        return self

    def __next__(self) -> RoundResult:
        _ = self.started
        item = self.task.next_item(self.index)
        if item is None:
            raise StopIteration
        if isinstance(item, LineageFailure):
            raise item
        assert isinstance(item, RoundResult)
        return item


def board_quiet_for(board: ray.actor.ActorHandle, tune_trial: str | None = None) -> float | None:
    """The board's `quiet_for`, or None when it does not answer in 2 s (it restarts)."""
    try:
        return cast(float, ray.get(board.quiet_for.remote(tune_trial), timeout=2))
    except (RayError, TimeoutError):
        return None


def trials_to_fill(cpu: float, gpu: float, tasks: int, cluster: dict[str, float]) -> int:
    """How many trials at once keep every core (every GPU, for GPU tasks) of the cluster busy:
    enough for their `tasks` tasks each (holding `cpu` and `gpu`) to take all the slots, plus one
    whose tasks wait in the queue, so a slot freed by a finishing task never waits for a trial."""
    if 0 < gpu < 1:  # fractions share a GPU only when they add up within it (0.75 + 0.75 do not)
        slots = int(cluster.get("GPU", 0)) * int(1 / gpu + 1e-9)
    else:
        slots = int(cluster.get("GPU", 0) // gpu) if gpu > 0 else int(cluster.get("CPU", 0) // cpu)
    return max(1, math.ceil(slots / tasks)) + 1


def start_tasks(
    jobs: list[LineageJob], cpu: float, lineage_gpu: float, pack_size: int, board: ray.actor.ActorHandle | None
) -> Iterator[LineageTask]:
    """The tasks of a trial's lineages, `pack_size` lineages each (1: a task per lineage), each
    holding `cpu` CPUs and its lineages' GPU shares."""
    for lo in range(0, len(jobs), pack_size):
        part = jobs[lo : lo + pack_size]
        yield LineageTask(part, cpu, lineage_gpu * len(part), board)


def stop_all(lineages: list[RemoteLineage]) -> bool:
    """Kill their tasks (a no-op for those that ended) and wait until they are gone, so nothing
    they do can follow what the trial writes next. Their files stay consistent: every write is
    atomic, and a round whose checkpoint was not saved yet is redone on resume, replacing its
    own row. False when some task was not seen to end within CANCEL_WAIT_S."""
    streams = list({id(lin.task): lin.task._stream for lin in lineages}.values())
    for stream in streams:
        ray.cancel(stream, force=True)
    ended = [stream.completed() for stream in streams]
    ready, _ = ray.wait(ended, num_returns=len(ended), timeout=CANCEL_WAIT_S)
    for ref in ready:
        try:
            ray.get(ref, timeout=0)
        except (RayError, TimeoutError):
            pass  # cancelled, crashed or failed: it is gone, which is all that counts here
    return len(ready) == len(ended)


def trial_lineages(root: str, study: str, trial_id: str) -> list[LineageRow]:
    """The lineage rows of a Tune trial in the lake (an unreadable file is the reader's to name)."""
    rows = []
    for path in matching(root, f"lineages/study={study}", [f"strategy=*/{seed_trial_id(trial_id, '*')}.parquet"]):
        table, _ = read_one(path, LINEAGES_SCHEMA)
        rows += [LineageRow(**r) for r in (table.to_pylist() if table is not None else [])]
    return rows


def all_finished(rows: list[LineageRow], seeds: int) -> bool:
    """Every seed's lineage of a trial (its `trial_lineages`, branches aside: their trunk files
    them) is filed finished: none of its tasks can be left."""
    trunks = [row for row in rows if row.branch is None]
    return len(trunks) == seeds and all(row.status == LineageStatus.FINISHED for row in trunks)


def close_running(root: str, study: str, trial_id: str, status: LineageStatus, reason: str) -> int:
    """File the lineages of a Tune trial that still say 'running' as `status`, saying why (the
    trial was stopped, a sibling seed failed, the study ended) and after which round. Only for
    lineages whose tasks are gone: a live task would file 'running' again. Returns how many it
    closed."""
    closed = 0
    for row in (r for r in trial_lineages(root, study, trial_id) if r.status == LineageStatus.RUNNING):
        done = row.rounds_done or 0
        error = f"{reason} ({f'after round {done - 1}' if done else 'before its first round finished'})"
        row = dataclasses.replace(row, status=status, updated_at=dt.datetime.now(dt.UTC), error=error)
        write_lineage(root, dataclasses.asdict(row))
        closed += 1
    return closed
