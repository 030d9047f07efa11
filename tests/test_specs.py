import pytest
import yaml
from conftest import synthetic_spec_dict

from study.engine.spec import lineage_spec_from_dict, load_lineage_spec
from study.errors import SpecError


def check_error(raw, *fragments):
    with pytest.raises(SpecError) as e:
        lineage_spec_from_dict(raw)
    msg = str(e.value)
    assert "\n" not in msg
    for f in fragments:
        assert f in msg, msg
    return msg


def test_valid_spec_round_trips_and_hash_ignores_data_location():
    a = lineage_spec_from_dict(synthetic_spec_dict())
    b = lineage_spec_from_dict(synthetic_spec_dict(data={"root": "/tmp"}))
    c = lineage_spec_from_dict(synthetic_spec_dict(seed=1))
    assert a.train.lr == 1e-3 and a.prune.scope == "layerwise"
    assert a.config_hash() == b.config_hash()
    assert a.config_hash() != c.config_hash()
    assert a.lineage_id().startswith("lin-")


def test_unknown_keys_are_named_with_a_suggestion():
    check_error(synthetic_spec_dict(strategi="imp"), "unknown key 'strategi'", "did you mean 'strategy'")
    check_error(synthetic_spec_dict(train={"lrr": 1e-3}), "unknown key 'train.lrr'", "did you mean 'lr'")


@pytest.mark.parametrize("rate", [0, 1, 1.5, -0.2])
def test_impossible_rates(rate):
    check_error(synthetic_spec_dict(prune={"rates": {"fc": rate}}), "prune.rates.fc", "impossible")
    check_error(synthetic_spec_dict(prune={"scope": "global", "rate": rate}), "prune.rate", "impossible")


def test_rewind_beyond_round_length():
    check_error(synthetic_spec_dict(rewind_iteration=60), "rewind_iteration 60", "train.iterations = 60")


def test_strategy_scope_mismatches():
    check_error(
        synthetic_spec_dict(strategy="random_prune", prune={"scope": "global", "rate": 0.2}),
        "random_prune",
        "layerwise",
    )
    check_error(synthetic_spec_dict(strategy="snip", rewind_iteration=10), "snip", "rewind_iteration: 0")
    check_error(synthetic_spec_dict(strategy="finetune", rewind_iteration=10), "finetune")
    check_error(synthetic_spec_dict(prune={"scope": "global"}), "needs prune.rate")
    check_error(synthetic_spec_dict(prune={"rates": {"conv": 0.1}}), "has no 'conv' layers")


def test_unknown_values_and_types():
    check_error(synthetic_spec_dict(strategy="imp2"), "unknown value 'imp2'", "did you mean 'imp'")
    check_error(synthetic_spec_dict(model="lenet"), "model")
    check_error(synthetic_spec_dict(train={"iterations": "many"}), "train.iterations must be an integer")
    check_error(synthetic_spec_dict(rounds=None), "exactly one of rounds")
    check_error(synthetic_spec_dict(rounds=None, target_remaining=150), "target_remaining")


def test_yaml_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: lenet_300_100\n  dataset: [\n")
    with pytest.raises(SpecError) as e:
        load_lineage_spec(bad)
    assert "not valid YAML" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(SpecError, match="does not exist"):
        load_lineage_spec(tmp_path / "missing.yaml")
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(synthetic_spec_dict(train={"lr": "1.2e-3"})))
    assert load_lineage_spec(good).train.lr == pytest.approx(1.2e-3)


def test_missing_dataset_fails_before_training(tmp_path, monkeypatch):
    from study.engine.lineage import run_lineage

    spec = lineage_spec_from_dict(synthetic_spec_dict(dataset="mnist", data={"root": str(tmp_path)}))
    with pytest.raises(SpecError) as e:
        run_lineage(spec)
    msg = str(e.value)
    assert "dataset 'mnist' not found" in msg and str(tmp_path) in msg and "download" in msg
