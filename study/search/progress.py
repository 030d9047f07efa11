"""A live progress table for `study tune`: trials running/done/failed, rounds done and the best
objective so far (a Tune callback, driven by the Tune controller in the driver)."""

from __future__ import annotations

import math
from typing import Any

from ray import tune
from rich.console import Console
from rich.live import Live
from rich.table import Table

from study.analysis.configs import short_name, sig
from study.search.optuna_io import FAILURE_KEY


def searched_values(config: dict[str, Any]) -> str:
    """A trial named as every view names it: its Optuna trial number and searched values
    (`#4 fc=0.29 k=100 lr=4.2e-4`; its config holds both)."""
    values = {k: v for k, v in config.items() if k != "optuna_trial_number"}
    number = config.get("optuna_trial_number")
    words = [] if number is None else [f"#{number}"]
    return " ".join(words + [f"{short_name(k, values)}={sig(v)}" for k, v in sorted(values.items())])


class StudyProgress(tune.Callback):
    def __init__(
        self,
        metric: str,
        mode: str,
        num_samples: int,
        console: Console | None = None,
        finished: int = 0,
        failed: int = 0,
    ) -> None:
        self.metric, self.mode, self.num_samples = metric, mode, num_samples
        self.before = (finished, failed)  # trials a resumed study finished in earlier runs
        self.console = console
        self.trials: dict[str, dict[str, Any]] = {}
        self._live: Live | None = None

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks with the experiment
        return {**self.__dict__, "_live": None, "console": None}

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info) -> None:
        self.console = self.console or Console()
        self._live = Live(self.render(), console=self.console, refresh_per_second=2, transient=False)
        self._live.start()

    def _update(self, trial, **changes) -> None:
        self.trials.setdefault(trial.trial_id, {"status": "pending", "rounds": 0, "value": None}).update(changes)
        if self._live:
            self._live.update(self.render())

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._update(trial, status="running")

    def on_trial_restore(self, iteration, trials, trial, **info) -> None:
        self._update(trial, status="running")

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if result.get(FAILURE_KEY):  # diverged or degenerate: filed FAIL, its value is no value
            self._update(trial, failure=result[FAILURE_KEY], value=None)
            return
        self._update(trial, rounds=int(result.get("round", 0)) + 1, value=result.get(self.metric))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        t = self.trials.setdefault(trial.trial_id, {"status": "pending", "rounds": 0, "value": None})
        self._update(trial, status="failed" if t.get("failure") else "done")
        if self._live and self.console is not None and not self.console.is_terminal:
            value = "-" if t["value"] is None else sig(t["value"], 3)
            what = (
                f"failed ({t['failure']})"
                if t.get("failure")
                else f"done: {t['rounds']} rounds, {self.metric} = {value}"
            )
            self.console.print(f"trial {searched_values(trial.config)} {what}", highlight=False)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._update(trial, status="failed")

    def on_experiment_end(self, trials, **info) -> None:
        if self._live:
            self._live.update(self.render())
            self._live.stop()
            self._live = None

    def best(self) -> float | None:
        values = [t["value"] for t in self.trials.values() if t["value"] is not None and math.isfinite(t["value"])]
        if not values:
            return None
        return max(values) if self.mode == "max" else min(values)

    def render(self) -> Table:
        status = [t["status"] for t in self.trials.values()]
        table = Table(title="study progress", title_justify="left")
        for col in ("trials", "running", "done", "failed", "rounds done", f"best {self.metric} ({self.mode})"):
            table.add_column(col, justify="right")
        best = self.best()
        finished, failed = self.before
        table.add_row(
            f"{len(status) + finished + failed}/{self.num_samples}",
            str(status.count("running")),
            str(status.count("done") + finished),
            str(status.count("failed") + failed),
            str(sum(t["rounds"] for t in self.trials.values())),
            "-" if best is None else f"{best:.4g}",
        )
        return table
