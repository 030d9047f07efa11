"""The lineage's small rules, without training anything: pruning groups and their rates, how long
each round trains, and when a dense round is degenerate. Expected values are written out by hand."""

from types import SimpleNamespace

import pytest
from conftest import synthetic_spec_dict

from study.engine.lineage import degenerate_reason
from study.engine.models.slots import Slot
from study.engine.plan import pruning_groups as _groups
from study.engine.plan import round_length
from study.engine.spec import lineage_spec_from_dict
from study.engine.strategies import STRATEGIES
from study.errors import SpecError

SLOTS = {
    "fc1.weight": Slot("fc1.weight", None, "fc"),
    "fc2.weight": Slot("fc2.weight", None, "fc"),
    "fc3.weight": Slot("fc3.weight", None, "output"),
}


def spec(**kw):
    return lineage_spec_from_dict(synthetic_spec_dict(**kw))


def test_layerwise_groups_take_kind_rates_over_the_model_defaults():
    # lenet_300_100 defaults: fc 0.2, output 0.1; the spec overrides fc
    groups, rates = _groups(spec(prune={"rates": {"fc": 0.3}}), SLOTS)
    assert groups == {"fc1.weight": ["fc1.weight"], "fc2.weight": ["fc2.weight"], "fc3.weight": ["fc3.weight"]}
    assert rates == {"fc1.weight": 0.3, "fc2.weight": 0.3, "fc3.weight": 0.1}
    groups, rates = _groups(spec(prune={"exempt": ["output"]}), SLOTS)
    assert groups == {"fc1.weight": ["fc1.weight"], "fc2.weight": ["fc2.weight"]}
    assert rates == {"fc1.weight": 0.2, "fc2.weight": 0.2}


def test_global_groups_pool_everything_or_split_off_the_output_layer():
    groups, rates = _groups(spec(prune={"scope": "global", "rate": 0.25}), SLOTS)
    assert groups == {"global": ["fc1.weight", "fc2.weight", "fc3.weight"]} and rates == {"global": 0.25}
    groups, rates = _groups(spec(prune={"scope": "global", "rate": 0.25, "output_rate": 0.5}), SLOTS)
    assert groups == {"global": ["fc1.weight", "fc2.weight"], "output": ["fc3.weight"]}
    assert rates == {"global": 0.25, "output": 0.5}
    groups, rates = _groups(spec(prune={"scope": "global", "rate": 0.25, "exempt": ["fc"]}), SLOTS)
    assert groups == {"global": ["fc3.weight"]} and rates == {"global": 0.25}


def test_round_length_per_strategy():
    imp = spec(rewind_iteration=10)  # train.iterations is 60
    assert round_length(imp, 0) == 60 and round_length(imp, 1) == 50 and round_length(imp, 3) == 50
    assert round_length(imp.replace(strategy="lr_rewind"), 2) == 50
    assert round_length(imp.replace(strategy="random_reinit"), 2) == 50
    assert round_length(spec(strategy="finetune"), 2) == 60  # fine-tuning never rewinds: k = 0
    assert round_length(spec(strategy="snip"), 1) == 60


# DESIGN §4, written out by hand: what a pruning round's survivors restart from, on which
# learning rate, where its mask comes from, and what each strategy refuses.
RESETS = {
    "imp": "theta_k",
    "lr_rewind": "trained",
    "finetune": "trained",
    "random_reinit": "fresh",
    "random_prune": "theta_k",
    "oneshot": "theta_k",
    "snip": "theta0",
    "grasp": "theta0",
    "synflow": "theta0",
}
REFUSED = {
    "finetune": {"rewind_iteration": 10},
    "snip": {"rewind_iteration": 10},
    "grasp": {"rewind_iteration": 10},
    "synflow": {"rewind_iteration": 10},
    "oneshot": {"rounds": 0},
    "random_prune": {"prune": {"scope": "global", "rate": 0.2}},
}


def test_every_strategy_restarts_from_the_weights_design_names():
    state = SimpleNamespace(theta0={"w": "theta0"}, theta_k={"w": "theta_k"}, trained={"w": "trained"})
    assert set(STRATEGIES) == set(RESETS)
    for name, expected in RESETS.items():
        s = spec(strategy=name, rewind_iteration=0 if name in ("finetune", "snip", "grasp", "synflow") else 10)
        start = STRATEGIES[name].reset.start(s, state, lambda: {"w": "fresh"})
        assert start.weights == {"w": expected}, name
        assert start.iteration == s.rewind_iteration, name
        if name == "finetune":  # the schedule's last rate throughout: step schedule 1e-3 -> 1e-4 at 30
            s = spec(strategy=name, train={"schedule": "step", "milestones": [30], "gamma": 0.1})
            lr_fn = STRATEGIES[name].reset.start(s, state, dict).lr_fn
            assert [lr_fn(0), lr_fn(59)] == [pytest.approx(1e-4)] * 2
        else:
            assert start.lr_fn is None, name  # the spec's own schedule from iteration k


def test_only_oneshot_is_one_shot_and_only_random_reinit_trains_an_imp_track():
    assert [n for n, s in STRATEGIES.items() if s.one_shot] == ["oneshot"]
    assert [n for n, s in STRATEGIES.items() if s.imp_track] == ["random_reinit"]


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_each_strategy_refuses_the_specs_it_cannot_run(name):
    with pytest.raises(SpecError, match=f"strategy {name} "):
        spec(strategy=name, **REFUSED[name])
    for other in set(STRATEGIES) - {name}:  # the same setting is fine for a strategy that has no such rule
        if REFUSED.get(other) != REFUSED[name]:
            try:
                spec(strategy=other, **REFUSED[name])
            except SpecError as e:
                assert f"strategy {other} " in str(e) or "rewind" not in str(e), (other, e)


def dense(val, chance):
    return SimpleNamespace(val_acc=val, chance_val_acc=chance)


def test_degenerate_reason_at_and_below_the_margin():
    s = spec(chance_margin=0.125)  # lr 1e-3
    assert degenerate_reason(s, dense(0.375, 0.25)) is None  # exactly chance + margin: fine
    assert degenerate_reason(s, dense(0.5, 0.25)) is None
    assert degenerate_reason(s, dense(0.3125, 0.25)) == (
        "the dense round's validation accuracy 0.3125 does not beat chance (0.2500, the most frequent class) "
        "by chance_margin 0.125; check train.lr (now 0.001) and the data"
    )
    assert degenerate_reason(s, dense(0.1, None)) is None  # no chance level known
    assert degenerate_reason(spec(chance_margin=None), dense(0.1, 0.25)) is None


def test_a_zero_margin_only_asks_to_reach_chance():
    s = spec(chance_margin=0.0)
    assert degenerate_reason(s, dense(0.25, 0.25)) is None
    assert degenerate_reason(s, dense(0.1875, 0.25)) is not None


def test_a_registry_entry_whose_parts_contradict_each_other_is_refused():
    from study.engine.strategies import Magnitude, Reset, Strategy, random_within_mask

    with pytest.raises(ValueError, match="cannot rewind"):  # θ0 has no iteration k to rewind to
        Strategy("x", "", random_within_mask, Reset("theta0"))
    with pytest.raises(ValueError, match="cannot rewind"):
        Strategy("x", "", Magnitude(), Reset("trained", final_lr=True))
    with pytest.raises(ValueError, match="imp_track"):  # IMP-track masks need the IMP track
        Strategy("x", "", Magnitude("imp_trained"), Reset("fresh_init"))
    with pytest.raises(ValueError, match="imp_track"):
        Strategy("x", "", Magnitude(), Reset("fresh_init"), imp_track=True)
    Strategy("x", "", Magnitude("imp_trained"), Reset("fresh_init"), imp_track=True)  # random_reinit's parts


def test_the_refusals_name_the_fix():
    with pytest.raises(SpecError) as e:
        spec(strategy="finetune", rewind_iteration=10)
    assert str(e.value) == (
        "strategy finetune keeps the trained weights and does not rewind; set rewind_iteration: 0 (or use lr_rewind)"
    )
    with pytest.raises(SpecError) as e:
        spec(strategy="synflow", rewind_iteration=10)
    assert str(e.value) == "strategy synflow prunes at init and resets to θ0; set rewind_iteration: 0"
