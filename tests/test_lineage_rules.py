"""The lineage's small rules, without training anything: pruning groups and their rates, how long
each round trains, and when a dense round is degenerate. Expected values are written out by hand."""
import dataclasses
from types import SimpleNamespace

from conftest import synthetic_spec_dict

from study.engine.lineage import _groups, degenerate_reason, round_length
from study.engine.models.slots import Slot
from study.engine.spec import lineage_spec_from_dict

SLOTS = {"fc1.weight": Slot("fc1.weight", None, "fc"), "fc2.weight": Slot("fc2.weight", None, "fc"),
         "fc3.weight": Slot("fc3.weight", None, "output")}


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
    assert round_length(dataclasses.replace(imp, strategy="lr_rewind"), 2) == 50
    assert round_length(dataclasses.replace(imp, strategy="finetune"), 2) == 60
    assert round_length(spec(strategy="snip"), 1) == 60  # k = 0


def dense(val, chance):
    return SimpleNamespace(val_acc=val, chance_val_acc=chance)


def test_degenerate_reason_at_and_below_the_margin():
    s = spec(chance_margin=0.125)  # lr 1e-3
    assert degenerate_reason(s, dense(0.375, 0.25)) is None          # exactly chance + margin: fine
    assert degenerate_reason(s, dense(0.5, 0.25)) is None
    assert degenerate_reason(s, dense(0.3125, 0.25)) == (
        "the dense round's validation accuracy 0.3125 does not beat chance (0.2500, the most frequent class) "
        "by chance_margin 0.125; check train.lr (now 0.001) and the data")
    assert degenerate_reason(s, dense(0.1, None)) is None               # no chance level known
    assert degenerate_reason(spec(chance_margin=None), dense(0.1, 0.25)) is None


def test_a_zero_margin_only_asks_to_reach_chance():
    s = spec(chance_margin=0.0)
    assert degenerate_reason(s, dense(0.25, 0.25)) is None
    assert degenerate_reason(s, dense(0.1875, 0.25)) is not None
