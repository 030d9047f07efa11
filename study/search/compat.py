"""The one door to Ray Tune's and Optuna's private state. Resuming a study and filing a failed
trial need a few attributes neither library makes public (OptunaSearch's Optuna study and trials,
a restored Tuner's configuration). Each is read through `private`, which first checks that the
installed versions are those this code was written against (pyproject pins them), so an upgrade
fails in one line that names what to re-check, not deep inside a running study."""

from __future__ import annotations

from typing import Any

# package -> the version prefix whose private attributes this module was checked against
CHECKED: dict[str, str] = {"ray": "2.60.", "optuna": "5.0."}


def installed_versions() -> dict[str, str]:
    import optuna
    import ray

    return {"ray": ray.__version__, "optuna": optuna.__version__}


def check_versions(installed: dict[str, str] | None = None) -> None:
    """Refuse versions whose private attributes nobody checked (a RuntimeError in one line)."""
    installed = installed if installed is not None else installed_versions()
    other = {p: v for p, v in installed.items() if not v.startswith(CHECKED[p])}
    if other:
        found = ", ".join(f"{p} {v}" for p, v in sorted(other.items()))
        checked = ", ".join(f"{p} {CHECKED[p]}x" for p in sorted(other))
        raise RuntimeError(
            f"study.search.compat reads private state of {checked}, but {found} is installed; re-check the "
            f"attributes it reads (OptunaSearch._ot_study/_ot_trials/_completed_trials, Tuner._local_tuner) and "
            f"update CHECKED, or install the pinned versions"
        )


def private(owner: Any, name: str) -> Any:
    """`owner.<name>`, a private attribute of Ray Tune or Optuna, on the checked versions only."""
    check_versions()
    try:
        return getattr(owner, name)
    except AttributeError:
        raise RuntimeError(
            f"{type(owner).__name__} has no attribute {name} in this version; update study.search.compat"
        ) from None


def fail_optuna_trial(searcher: Any, trial_id: str, attrs: dict[str, str]) -> bool:
    """Tell OptunaSearch's study that Tune trial `trial_id` FAILED, with user attributes `attrs`
    (the stock searcher only ever says COMPLETE or PRUNED). False when it was filed already."""
    import optuna

    completed: set[str] = private(searcher, "_completed_trials")
    if trial_id in completed:
        return False
    ot_study = private(searcher, "_ot_study")
    assert ot_study is not None, "OptunaSearch sets its study up before any trial"
    ot_trial = private(searcher, "_ot_trials")[trial_id]
    held = next(t for t in ot_study.get_trials(deepcopy=False) if t.number == ot_trial.number)
    if held.state.is_finished():  # on record already (a retried trial's end, filed by its first end)
        completed.add(trial_id)
        return True
    for key, value in attrs.items():
        ot_trial.set_user_attr(key, value)
    ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
    completed.add(trial_id)
    return True


def restored_configs(tuner: Any) -> tuple[Any, Any]:
    """A restored Tuner's (RunConfig, TuneConfig), either None when Tune keeps none (client mode)."""
    local = private(tuner, "_local_tuner")
    if local is None:
        return None, None
    return local.get_run_config(), private(local, "_tune_config")
