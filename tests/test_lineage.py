import dataclasses

import pytest
import torch
from conftest import run_capturing

from study.engine.data import load_task
from study.engine.lineage import RunContext, run_lineage
from study.engine.models import build_model
from study.engine.plan import plan_lineage
from study.engine.train import train


@pytest.mark.numerics
def test_imp_masks_are_nested_and_survivors_equal_theta_k(make_spec, tmp_path):
    spec = make_spec(rewind_iteration=10, rounds=3)
    results, resets = run_capturing(spec, workdir=tmp_path)
    assert [r.round for r in results] == [0, 1, 2, 3]
    task = load_task(spec.dataset, spec.data, batch_size=spec.train.batch_size, seed=spec.seed)
    model = build_model(spec.model, task.input_shape, task.num_classes, spec.seed)
    model.load_state_dict(resets[0][1])
    train(model, task, spec.train, end=10)  # θ_k replayed: the dense run's first k steps, nothing captured
    theta_k = model.state_dict()
    for r in (1, 2, 3):
        mask, weights = resets[r]
        prev = resets[r - 1][0]
        assert all(not (mask[n] & ~prev[n]).any() for n in mask), "nested"
        for n, m in mask.items():
            assert torch.equal(weights[n][m], theta_k[n][m]), f"survivors of {n} are θ_k bit for bit"
            assert torch.count_nonzero(weights[n][~m]) == 0
        assert results[r].iterations == 50
    # θ_k really is the dense run's weights after k iterations (not θ0)
    theta0 = resets[0][1]
    assert not torch.equal(theta_k["fc1.weight"], theta0["fc1.weight"])


def test_per_layer_sparsity_is_exact_and_reported(make_spec):
    spec = make_spec(rounds=2)
    plan = plan_lineage(spec)
    results = run_lineage(spec, context=RunContext(threads=1))
    for i, r in enumerate(results):
        for name, pct in r.layer_remaining_pct.items():
            assert pct == pytest.approx(100.0 * plan.counts[i][name] / plan.counts[0][name])
        assert r.remaining_pct == pytest.approx(plan.remaining_pct(i))
    assert results[1].layer_remaining_pct["fc3.weight"] == pytest.approx(90.0)
    assert results[1].layer_remaining_pct["fc1.weight"] == pytest.approx(80.0)


def test_random_prune_keeps_per_layer_sparsity_but_not_the_mask(make_spec):
    imp, imp_resets = run_capturing(make_spec(rounds=2))
    rnd, rnd_resets = run_capturing(make_spec(rounds=2, strategy="random_prune"))
    for r in (1, 2):
        assert rnd[r].layer_remaining_pct == imp[r].layer_remaining_pct
        assert not torch.equal(rnd_resets[r][0]["fc1.weight"], imp_resets[r][0]["fc1.weight"])
        # reset to θ0 (k = 0) like imp
        m = rnd_resets[r][0]["fc1.weight"]
        assert torch.equal(rnd_resets[r][1]["fc1.weight"][m], imp_resets[0][1]["fc1.weight"][m])


def test_random_reinit_keeps_the_mask_but_not_the_init(make_spec):
    imp, imp_resets = run_capturing(make_spec(rounds=2))
    rr, rr_resets = run_capturing(make_spec(rounds=2, strategy="random_reinit"))
    for r in (1, 2):
        for n in imp_resets[r][0]:
            assert torch.equal(rr_resets[r][0][n], imp_resets[r][0][n]), "the imp mask"
        m = rr_resets[r][0]["fc1.weight"]
        assert not torch.equal(rr_resets[r][1]["fc1.weight"][m], imp_resets[r][1]["fc1.weight"][m])
    assert rr[0].test_acc == imp[0].test_acc, "round 0 is the same dense run"
    assert rr[2].remaining_pct == imp[2].remaining_pct


def test_oneshot_reaches_the_target_in_one_round(make_spec):
    imp = run_lineage(make_spec(rounds=3), context=RunContext(threads=1))
    one = run_lineage(make_spec(rounds=3, strategy="oneshot"), context=RunContext(threads=1))
    assert [r.round for r in one] == [0, 1]
    assert one[1].remaining_pct == pytest.approx(imp[3].remaining_pct)
    assert one[1].layer_remaining_pct == imp[3].layer_remaining_pct


def test_lr_rewind_and_finetune_keep_trained_weights(make_spec):
    for strategy, k in (("lr_rewind", 10), ("finetune", 0)):
        results, resets = run_capturing(make_spec(rounds=1, strategy=strategy, rewind_iteration=k))
        mask, weights = resets[1]
        dense_trained = resets[0][1]
        assert not torch.equal(
            weights["fc1.weight"][mask["fc1.weight"]], dense_trained["fc1.weight"][mask["fc1.weight"]]
        )
        assert results[1].iterations == (50 if strategy == "lr_rewind" else 60)


def test_finetune_runs_at_the_final_learning_rate(make_spec, monkeypatch):
    import study.engine.train as train_mod

    seen = []
    original = train_mod.train

    def spy(*args, **kw):
        if kw.get("lr_fn") is not None:
            seen.append(kw["lr_fn"](0))
        return original(*args, **kw)

    monkeypatch.setattr(train_mod, "train", spy)
    run_lineage(
        make_spec(rounds=1, strategy="finetune", train={"schedule": "step", "milestones": [30], "gamma": 0.1}),
        context=RunContext(threads=1),
    )
    assert seen == [pytest.approx(1e-4)]


@pytest.mark.parametrize("strategy", ["snip", "grasp", "synflow"])
def test_pruning_at_init_reaches_exact_counts_from_theta0(make_spec, strategy):
    spec = make_spec(rounds=2, strategy=strategy, prune={"scope": "global", "rate": 0.5, "output_rate": 0.2})
    plan = plan_lineage(spec)
    results, resets = run_capturing(spec)
    theta0 = resets[0][1]
    for r in (1, 2):
        mask, weights = resets[r]
        pooled = plan.groups["global"]
        assert sum(int(mask[n].sum()) for n in pooled) == plan.counts[r]["global"]
        assert int(mask["fc3.weight"].sum()) == plan.counts[r]["output"]
        assert torch.equal(weights["fc1.weight"][mask["fc1.weight"]], theta0["fc1.weight"][mask["fc1.weight"]])
    assert results[2].remaining_pct == pytest.approx(plan.remaining_pct(2))


def test_global_scope_imp_and_target_remaining(make_spec):
    spec = make_spec(rounds=None, target_remaining=40, prune={"scope": "global", "rate": 0.3})
    plan = plan_lineage(spec)
    assert plan.remaining_pct(len(plan.rounds) - 1) <= 40 < plan.remaining_pct(len(plan.rounds) - 2)
    results = run_lineage(spec, context=RunContext(threads=1))
    assert results[-1].remaining_pct <= 40
    assert results[1].prune_rate == pytest.approx(0.3, abs=1e-5)


def test_conv_models_prune_by_kind(make_spec):
    spec = make_spec(
        model="conv2",
        dataset="synthetic_cifar",
        rounds=1,
        chance_margin=0.0,  # 10 iterations: near chance
        train={"iterations": 10, "eval_every": 5, "batch_size": 16},
        data={"validation_size": 100, "synthetic_size": 300},
    )
    results = run_lineage(spec, context=RunContext(threads=1))
    pct = results[1].layer_remaining_pct
    assert pct["conv.0.weight"] == pytest.approx(100 * (1728 - 173) / 1728)  # 10% of 1728, rounded
    assert pct["fc1.weight"] == pytest.approx(80.0, abs=0.01)
    assert pct["fc3.weight"] == pytest.approx(90.0, abs=0.01)


def test_engine_imports_no_ray():
    import subprocess
    import sys

    code = "import sys, study.engine.lineage, study.lake.recorder; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("like", ["imp", "random_reinit", "oneshot"])
def test_a_new_strategy_is_one_registry_entry(make_spec, monkeypatch, like):
    """A strategy registered under a new name with the parts of an existing one behaves exactly
    like it: nothing outside the registry entry looks at strategy names."""
    from study.engine import strategies

    original = strategies.STRATEGIES[like]
    monkeypatch.setitem(strategies.STRATEGIES, "copy", dataclasses.replace(original, name="copy"))
    spec = make_spec(strategy=like, rounds=2, rewind_iteration=10)
    runs = [run_lineage(s, context=RunContext(threads=1)) for s in (spec, spec.replace(strategy="copy"))]
    assert [r.round for r in runs[1]] == [r.round for r in runs[0]]
    for a, b in zip(*runs, strict=True):
        assert (b.strategy, b.val_acc, b.test_acc, b.remaining_pct, b.layer_remaining_pct, b.iterations) == (
            "copy",
            a.val_acc,
            a.test_acc,
            a.remaining_pct,
            a.layer_remaining_pct,
            a.iterations,
        )
