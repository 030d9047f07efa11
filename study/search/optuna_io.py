"""Optuna's side of a study: its storage (a journal file or a database whose password stays in
the environment), the sampler, the define-by-run search space, and the searcher that files a
failed trial FAIL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend
from ray.tune.search.optuna import OptunaSearch

from study.search.compat import fail_optuna_trial
from study.search.paths import get_path
from study.search.study_spec import StudySpec
from study.secrets import expand_env, redact

FAILURE_KEY = "lineage_failure"  # in a trial's last result: why its lineages cannot count


def driver_url(template: str) -> str:
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
        url = driver_url(template)
        connect = {"connect_timeout": 10} if url.startswith("postgresql") else {}
        super().__init__(url, engine_kwargs={"connect_args": connect} if connect else None)

    def __getstate__(self) -> dict[Any, Any]:
        return {**super().__getstate__(), "url": self.template}

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__({**state, "url": driver_url(state["template"])})


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
        if result and result.get(FAILURE_KEY) and fail_optuna_trial(self, trial_id, {FAILURE_KEY: result[FAILURE_KEY]}):
            return
        try:
            super().on_trial_complete(trial_id, result=result, error=error)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # its end is on record already: the state filed first stays

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """An intermediate value for Optuna's record; a trial its storage already holds finished
        (a result Tune delivers after the trial's end) keeps its final state, and the study runs on."""
        try:
            super().on_trial_result(trial_id, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass
