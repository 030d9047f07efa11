"""The study driver's Tune callbacks: the stall check that stops a study whose lineages wait for
resources the cluster never grants, and the finalizer that files the lineages a trial left
'running'. Both run in the driver, beside the Tune controller."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

import ray
from ray import tune
from ray.tune.stopper import Stopper

from study.lake.schema import LineageStatus
from study.search.lineage_tasks import (
    HEARTBEAT_S,
    QUIET_S,
    all_finished,
    board_quiet_for,
    close_running,
    trial_lineages,
)
from study.search.trainable import errored_reason, stopped_reason


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
        self.pending: dict[str, tuple[float, LineageStatus, str]] = {}  # Tune trial -> (ended at, status, why)
        self.seen: set[str] = set()
        self.polled = 0.0

    def __getstate__(self) -> dict:
        return {**self.__dict__, "board": None, "pending": {}, "seen": set(), "polled": 0.0}

    def __setstate__(self, state: dict) -> None:  # also one pickled by an older version
        self.__dict__.update({"board": None, "pending": {}, "seen": set(), "polled": 0.0, "seeds": 1, **state})

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        with _never_raises("filing a finished trial's lineages"):
            self._pend(trial.trial_id, LineageStatus.STOPPED, stopped_reason(trial.trial_id))

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
                self._pend(trial.trial_id, LineageStatus.FAILED, errored_reason(trial.trial_id))
            elif trial.status == "TERMINATED" and trial.trial_id not in self.seen:
                self._pend(trial.trial_id, LineageStatus.STOPPED, stopped_reason(trial.trial_id))
        deadline = time.monotonic() + self.END_WAIT_S
        while self._close_quiet() and time.monotonic() < deadline:
            time.sleep(HEARTBEAT_S / 2)
        for trial_id, (_, status, why) in self.pending.items():  # still beating: file them all the same
            close_running(self.root, self.study, trial_id, status, why)

    def _pend(self, trial_id: str, status: LineageStatus, why: str) -> None:
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
