"""The study's searcher against Optuna's own state."""

import optuna

from study.search.optuna_io import LotterySearch


def test_a_result_after_optuna_finished_the_trial_does_not_stop_the_study():
    """Tune may deliver a result after the trial's end is on record (a failed trial filed FAIL,
    then a late report): Optuna refuses the intermediate value; the study must not crash with
    UpdateFinishedTrialError (seen once in CI on test_failed_trials_are_filed_fail_and_can_never_be_best)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = LotterySearch({"x": optuna.distributions.FloatDistribution(0.0, 1.0)}, metric="m", mode="max")
    searcher.suggest("t1")
    study, trial = searcher._ot_study, searcher._ot_trials["t1"]
    study.tell(trial, state=optuna.trial.TrialState.FAIL)  # on record as finished, as its storage holds it
    searcher.on_trial_result("t1", {"m": 0.5, "training_iteration": 1})
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL]
