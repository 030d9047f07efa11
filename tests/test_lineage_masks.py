"""Each strategy's mask source and reset point inside a real lineage, checked against an
independent construction: θ_k replayed with the plain loop stopped at k (no capture callback),
pruning-at-init scores computed
by the scoring functions (themselves checked by hand in test_pruning_at_init_scores.py) on θ0,
and the random mask drawn from the generator its documented seed names."""

import pytest
import torch
from conftest import run_capturing, synthetic_spec_dict

from study.engine.data import load_task
from study.engine.models import build_model
from study.engine.plan import plan_lineage
from study.engine.pruning import dense_mask, keep_top, random_scores
from study.engine.pruning_at_init import grasp_scores, snip_scores, synflow_mask
from study.engine.seeding import derive_seed
from study.engine.spec import lineage_spec_from_dict
from study.engine.train import train

pytestmark = pytest.mark.numerics  # `make test-portability` runs it under every CPU dispatch level


def fresh(spec, state):
    task = load_task(spec.dataset, spec.data, batch_size=spec.train.batch_size, seed=spec.seed)
    model = build_model(spec.model, task.input_shape, task.num_classes, spec.seed)
    model.load_state_dict(state)
    return model, task


@pytest.mark.parametrize("strategy", ["imp", "oneshot", "random_prune"])
def test_rewinding_strategies_restart_from_theta_k_at_iteration_k(strategy):
    spec = lineage_spec_from_dict(synthetic_spec_dict(rounds=2, strategy=strategy, rewind_iteration=20))
    results, resets = run_capturing(spec)
    model, task = fresh(spec, resets[0][1])
    train(model, task, spec.train, end=20)  # the dense run's first 20 steps, nothing captured
    theta_k = model.state_dict()
    for r in results[1:]:
        mask, start = resets[r.round]
        for name, m in mask.items():
            assert torch.equal(start[name][m], theta_k[name][m]), (strategy, r.round, name)
        assert r.iterations == spec.train.iterations - 20, "trains from k to the end of the round"


@pytest.mark.parametrize("strategy", ["snip", "grasp", "synflow"])
def test_pruning_at_init_masks_are_their_scores_on_theta0(strategy):
    spec = lineage_spec_from_dict(synthetic_spec_dict(rounds=2, strategy=strategy))
    plan = plan_lineage(spec)
    results, resets = run_capturing(spec)
    theta0 = resets[0][1]
    for r in results[1:]:
        model, task = fresh(spec, theta0)
        full = dense_mask(model, plan.params)
        keep = plan.keep(r.round)
        if strategy == "snip":
            expected = keep_top(snip_scores(model, task, plan.params), full, plan.slots, plan.groups, keep)
        elif strategy == "grasp":
            expected = keep_top(grasp_scores(model, task, plan.params), full, plan.slots, plan.groups, keep)
        else:
            expected = synflow_mask(model, task, plan.params, full, plan.slots, plan.groups, keep)
        mask, start = resets[r.round]
        assert all(torch.equal(mask[n], expected[n]) for n in expected), (strategy, r.round)
        assert all(torch.equal(start[n][mask[n]], theta0[n][mask[n]]) for n in mask)
        assert r.iterations == spec.train.iterations, "trains the whole round from iteration 0"


def test_random_prune_draws_from_the_generator_its_seed_and_round_name():
    """Masks come from a generator seeded by (seed, 'random_prune', round), so they repeat on
    resume and differ between seeds."""
    masks = {}
    for seed in (0, 1):
        spec = lineage_spec_from_dict(synthetic_spec_dict(rounds=2, strategy="random_prune", seed=seed))
        plan = plan_lineage(spec)
        _, resets = run_capturing(spec)
        previous = resets[0][0]
        for r in (1, 2):
            g = torch.Generator().manual_seed(derive_seed(seed, "random_prune", r))
            expected = keep_top(random_scores(previous, g), previous, plan.slots, plan.groups, plan.keep(r))
            assert all(torch.equal(resets[r][0][n], expected[n]) for n in expected), (seed, r)
            previous = expected
        masks[seed] = resets[2][0]["fc1.weight"]
    assert not torch.equal(masks[0], masks[1])
