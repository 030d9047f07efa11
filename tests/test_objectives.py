"""The study objectives against values computed by hand (on paper, or a formula transcribed here),
never against the code's own output. Accuracies are chosen so sums are exact in binary floats."""

import math

import pytest

from study.analysis.objectives import ObjectiveSpec, RoundPoint, accuracy_at, auc, pareto_front, sparsest_within


def pts(*rows):
    return [RoundPoint(*row) for row in rows]


# A curve: dense 0.75; with tolerance 0.25 the bar is exactly 0.5.
CURVE = pts((100.0, 0.75, 0.625), (50.0, 0.5, 0.375), (25.0, 0.25, 0.125), (12.5, 0.5, 0.25), (6.25, 0.375, 0.5))


# ---------------------------------------------------------------- auc


def test_auc_of_three_points_by_hand():
    # widths log10(100/50) = log10(2) and log10(50/12.5) = log10(4); trapezoids of the mean heights
    points = pts((100.0, 0.875), (50.0, 0.625), (12.5, 0.375))
    expected = math.log10(2) * (0.875 + 0.625) / 2 + math.log10(4) * (0.625 + 0.375) / 2
    assert auc(points) == pytest.approx(expected, rel=1e-12)
    assert auc(points) == pytest.approx(0.75 * 0.30103 + 0.5 * 0.60206, abs=1e-5)  # on paper


def test_auc_reads_the_named_field_and_is_zero_without_an_interval():
    points = pts((100.0, 0.875, 0.5), (10.0, 0.625, 0.25))
    assert auc(points, "test_acc") == pytest.approx(1.0 * (0.5 + 0.25) / 2, rel=1e-12)
    assert auc(points) == pytest.approx(1.0 * (0.875 + 0.625) / 2, rel=1e-12)
    assert auc(pts((100.0, 0.9))) == 0.0
    assert auc([]) == 0.0


# ---------------------------------------------------------------- sparsest_within


def test_sparsest_within_includes_a_round_exactly_at_the_bar():
    # rounds 0, 1 (0.5 == 0.75 - 0.25) and 3 (0.5) qualify; the sparsest of them is 12.5 %
    assert sparsest_within(CURVE, 0.25) == 12.5
    # a tighter bar (0.75 - 0.125 = 0.625) leaves only the dense round
    assert sparsest_within(CURVE, 0.125) == 100.0
    # a looser bar (0.75 - 0.5 = 0.25) admits every round; the sparsest is 6.25 %
    assert sparsest_within(CURVE, 0.5) == 6.25


def test_sparsest_within_ties_pick_the_first_round_and_empty_is_dense():
    points = pts((100.0, 0.75, 0.5), (20.0, 0.75, 0.25), (20.0, 0.75, 0.125), (40.0, 0.75, 0.0))
    assert sparsest_within(points, 0.0) == 20.0
    assert ObjectiveSpec("sparsest_within", 0.0, None).selected(points) == 1  # the earlier of the two 20 % rounds
    assert sparsest_within([], 0.1) == 100.0


# ---------------------------------------------------------------- accuracy_at


def test_accuracy_at_exactly_the_target_and_just_above_it():
    points = pts((100.0, 0.875), (41.0, 0.75), (40.96, 0.625), (32.768, 0.5))
    assert accuracy_at(points, 40.96) == 0.625  # exactly at the target counts
    assert accuracy_at(points, 40.96 - 5e-10) == 0.625  # within the 1e-9 float slack
    assert accuracy_at(points, 40.0) == 0.5
    assert accuracy_at(points, 41.5) == 0.75
    assert accuracy_at(points, 100.0) == 0.875
    assert accuracy_at(points, 10.0) == 0.0  # not reached yet
    # the slack itself is inclusive: a round at exactly target + 1e-9 still counts
    assert accuracy_at(pts((100.0, 0.875), (40.0 + 1e-9, 0.625)), 40.0) == 0.625
    assert accuracy_at([], 50.0) == 0.0


# ---------------------------------------------------------------- selected_round / reported_test / metrics


def test_selected_round_per_objective():
    assert ObjectiveSpec("sparsest_within", 0.25, None).selected(CURVE) == 3
    assert ObjectiveSpec("accuracy_at", 0.0, 25.0).selected(CURVE) == 2
    assert ObjectiveSpec("accuracy_at", 0.0, 1.0).selected(CURVE) is None
    assert ObjectiveSpec("auc", 0.0, None).selected(CURVE) == 4
    assert ObjectiveSpec("pareto", 0.0, None).selected(CURVE) == 4
    assert ObjectiveSpec("auc", 0.0, None).selected([]) is None
    # no target given reads as 0 %: a 0.5 % round does not count as reaching it
    assert ObjectiveSpec("accuracy_at", 0.0, None).selected(pts((100.0, 0.5), (0.5, 0.25))) is None
    assert ObjectiveSpec("accuracy_at", 0.0, None).selected(pts((100.0, 0.5), (0.0, 0.25))) == 1


def test_reported_test_reads_the_selected_round():
    assert ObjectiveSpec("sparsest_within", 0.25, None).reported_test(CURVE) == {
        "test_acc_at_selected": 0.25,
        "remaining_pct_at_selected": 12.5,
    }
    assert ObjectiveSpec("accuracy_at", 0.0, 30.0).reported_test(CURVE) == {
        "test_acc_at_selected": 0.125,
        "remaining_pct_at_selected": 25.0,
    }
    assert ObjectiveSpec("accuracy_at", 0.0, 1.0).reported_test(CURVE) == {
        "test_acc_at_selected": None,
        "remaining_pct_at_selected": None,
    }
    assert ObjectiveSpec("sparsest_within", 0.25, None).reported_test([]) == {
        "test_acc_at_selected": None,
        "remaining_pct_at_selected": None,
    }
    two = pts((100.0, 0.75, 0.5), (10.0, 0.5, 0.25))
    assert ObjectiveSpec("auc", 0.0, None).reported_test(two) == {
        "test_acc_at_selected": 0.25,
        "remaining_pct_at_selected": 10.0,
        "test_auc": 1.0 * (0.5 + 0.25) / 2,
    }
    # one round without test accuracy: no test_auc at all
    partial = pts((100.0, 0.75, 0.5), (10.0, 0.5, None))
    assert ObjectiveSpec("auc", 0.0, None).reported_test(partial) == {
        "test_acc_at_selected": None,
        "remaining_pct_at_selected": 10.0,
    }


def test_objective_metrics_by_name():
    two = pts((100.0, 0.75, 0.5), (10.0, 0.5, 0.25))
    three = pts((100.0, 0.75), (10.0, 0.5), (1.0, 0.25))
    assert ObjectiveSpec("pareto", 0.0, None).values(three) == {"pareto_val_acc": 0.25, "pareto_remaining_pct": 1.0}
    assert ObjectiveSpec("sparsest_within", 0.25, None).values(CURVE) == {"objective_sparsest_within": 12.5}
    assert ObjectiveSpec("accuracy_at", 0.0, 30.0).values(CURVE) == {"objective_accuracy_at": 0.25}
    assert ObjectiveSpec("accuracy_at", 0.0, None).values(CURVE) == {"objective_accuracy_at": 0.0}
    # no target reads as 0 %: a 0.5 % round has not reached it
    assert ObjectiveSpec("accuracy_at", 0.0, None).values(pts((100.0, 0.75), (0.5, 0.5))) == {
        "objective_accuracy_at": 0.0
    }
    assert ObjectiveSpec("auc", 0.0, None).values(two) == {"objective_auc": 1.0 * (0.75 + 0.5) / 2}


# ---------------------------------------------------------------- pareto_front


def test_pareto_front_drops_dominated_points_and_keeps_duplicates():
    # (val_acc max, remaining_pct min)
    values = [
        (0.9, 10.0),  # 0: front
        (0.8, 5.0),  # 1: front (sparser)
        (0.85, 20.0),  # 2: dominated by 0 on both
        (0.9, 10.0),  # 3: duplicate of 0: neither dominates the other
        (0.7, 50.0),  # 4: dominated by 0
        (0.9, 15.0),
    ]  # 5: ties 0 on accuracy, worse on sparsity: dominated
    assert pareto_front(values, ["max", "min"]) == [0, 1, 3]
    # flipping the modes flips what is good
    assert pareto_front(values, ["min", "max"]) == [4]
    assert pareto_front([(1.0, 2.0)], ["max", "min"]) == [0]
    assert pareto_front([], ["max"]) == []


# ---------------------------------------------------------------- stable_sparsest_within (instability as a constraint)


def test_stable_sparsest_within_counts_only_rounds_stable_on_validation():
    # CURVE's rounds 0, 1 and 3 are within 0.25 of dense; give them barriers by hand:
    # round 3 (12.5 %) is unstable (0.125 > 0.0625), round 1 (50 %) stable, round 4 unmeasured
    points = [
        RoundPoint(p.remaining_pct, p.val_acc, p.test_acc, b)
        for p, b in zip(CURVE, (0.0, 0.0625, 0.0, 0.125, None), strict=True)
    ]
    assert sparsest_within(points, 0.25) == 12.5, "unconstrained: the barrier is not read"
    assert sparsest_within(points, 0.25, max_barrier=0.0625) == 50.0, "a barrier exactly at the bar counts"
    assert sparsest_within(points, 0.5, max_barrier=0.125) == 12.5, "6.25 % was never measured: it cannot count"
    assert sparsest_within(points, 0.25, max_barrier=0.03125) == 100.0
    unmeasured = [RoundPoint(p.remaining_pct, p.val_acc, p.test_acc) for p in CURVE]
    assert sparsest_within(unmeasured, 0.25, max_barrier=0.5) == 100.0, "no measured round: nothing is proven stable"
    assert ObjectiveSpec("stable_sparsest_within", 0.25, None, 0.0625).values(points) == {
        "objective_stable_sparsest_within": 50.0
    }
    assert (
        ObjectiveSpec("stable_sparsest_within", 0.25, None, 0.0625).reported_test(points)["test_acc_at_selected"]
        == 0.375
    )
    # the test split never enters: a round's test accuracy changes nothing
    flipped = [RoundPoint(p.remaining_pct, p.val_acc, 1.0 - (p.test_acc or 0), p.val_error_barrier) for p in points]
    assert sparsest_within(flipped, 0.25, max_barrier=0.0625) == 50.0


def test_stable_objective_needs_a_max_barrier_and_measured_rounds():
    from conftest import synthetic_spec_dict

    from study.errors import SpecError
    from study.search.study_spec import StudySpec
    from study.typed_yaml import build

    def study(objective, **base):
        raw = {
            "name": "s",
            "base": synthetic_spec_dict(**base),
            "search": {"train.lr": {"type": "log_float", "low": 1e-4, "high": 1e-2}},
            "objective": objective,
        }
        spec = build(StudySpec, raw, "study")
        spec.validate()
        return spec

    with pytest.raises(SpecError, match="needs max_barrier"):
        study({"name": "stable_sparsest_within"}, instability={"rounds": [1]})
    with pytest.raises(SpecError, match="base.instability.rounds is empty"):
        study({"name": "stable_sparsest_within", "max_barrier": 0.02})
    with pytest.raises(SpecError, match="max_barrier constrains stable_sparsest_within, not auc"):
        study({"name": "auc", "max_barrier": 0.02})
    study({"name": "stable_sparsest_within", "max_barrier": 0.02}, instability={"rounds": [0, 1, 2, 3]})


def test_dense_val_acc_reads_the_dense_round_on_validation_only():
    """For choosing training settings before pruning: the dense round's validation accuracy, its
    test accuracy only reported beside it."""
    assert ObjectiveSpec("dense_val_acc", 0.0, None).values(CURVE) == {"objective_dense_val_acc": 0.75}
    assert ObjectiveSpec("dense_val_acc", 0.0, None).values(CURVE[:1]) == {"objective_dense_val_acc": 0.75}
    assert ObjectiveSpec("dense_val_acc", 0.0, None).selected(CURVE) == 0
    assert ObjectiveSpec("dense_val_acc", 0.0, None).reported_test(CURVE) == {
        "test_acc_at_selected": 0.625,
        "remaining_pct_at_selected": 100.0,
    }


def test_dense_val_loss_reads_the_dense_rounds_validation_loss():
    """A language model's settings are chosen on validation perplexity (its log, the loss), which
    next-token accuracy hides: the lower loss wins even at lower accuracy."""
    points = [RoundPoint(100.0, 0.25, 0.5, None, 2.0), RoundPoint(50.0, 0.5, 0.5, None, 1.0)]
    assert ObjectiveSpec("dense_val_loss", 0.0, None).values(points) == {"objective_dense_val_loss": 2.0}
    assert ObjectiveSpec("dense_val_loss", 0.0, None).values([RoundPoint(100.0, 0.25)]) == {
        "objective_dense_val_loss": math.inf
    }, "a round without a loss never wins a minimisation"
    assert ObjectiveSpec("dense_val_loss", 0.0, None).selected(points) == 0


# ---------------------------------------------------------------- seed means


def test_seed_mean_and_the_rounds_every_seed_finished_by_hand():
    """Two seeds: each round's mean by hand; the barrier only when both measured it; the points
    stop at the first round a seed lacks."""
    from types import SimpleNamespace

    from study.analysis.objectives import seed_mean, seed_points

    def row(remaining, val, test, barrier, loss):
        return SimpleNamespace(
            remaining_pct=remaining, val_acc=val, test_acc=test, val_error_barrier=barrier, val_loss=loss
        )

    a = [row(100.0, 0.75, 0.5, 0.25, 1.0), row(50.0, 0.5, 0.25, None, 2.0), row(25.0, 0.25, 0.25, 0.0, 3.0)]
    b = [row(100.0, 0.25, 0.0, 0.125, 3.0), row(40.0, 0.5, 0.75, 0.5, 4.0)]
    assert seed_mean([a[0], b[0]]) == RoundPoint(100.0, 0.5, 0.25, 0.1875, 2.0)
    assert seed_mean([a[1], b[1]]) == RoundPoint(45.0, 0.5, 0.5, None, 3.0)
    assert seed_points([a, b]) == [RoundPoint(100.0, 0.5, 0.25, 0.1875, 2.0), RoundPoint(45.0, 0.5, 0.5, None, 3.0)]
    assert seed_points([a, []]) == [] and seed_points([]) == []


def test_the_app_reads_the_studys_own_objective_settings():
    """The app builds the objective from the study's spec: a tolerance the study set is the one
    it uses, and one it left out is ObjectiveSpec's (no default repeated in the app)."""
    from study.app.search import _objective

    assert _objective("sparsest_within", {"name": "sparsest_within", "tolerance": 0.25}) == ObjectiveSpec(
        "sparsest_within", 0.25
    )
    assert _objective("sparsest_within", {}) == ObjectiveSpec()
    assert _objective("from_a_newer_version", {"name": "from_a_newer_version"}) is None
