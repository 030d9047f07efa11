import dataclasses
import math

import pytest
import torch

from study.engine.data import load_task
from study.engine.data.classification import ClassificationTask
from study.engine.failures import TrainingDiverged
from study.engine.lineage import RunContext
from study.engine.models import build_model, prunable_layers
from study.engine.optim import LeanAdam
from study.engine.spec import DataSpec, TrainSpec
from study.engine.train import CaptureWeights, lr_at, train


@pytest.fixture(scope="module")
def task():
    return load_task("synthetic", DataSpec(validation_size=300, synthetic_size=1200), batch_size=32, seed=0)


def fresh(task, seed=0):
    return build_model("lenet_300_100", task.input_shape, 10, seed=seed)


def random_mask(model, keep=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        n: torch.rand(p.shape, generator=g) < keep for n, p in model.named_parameters() if n in prunable_layers(model)
    }


@pytest.mark.numerics
def test_same_seed_gives_identical_weights(task):
    spec = TrainSpec(lr=1e-3, iterations=40, eval_every=20)
    a, b = fresh(task), fresh(task)
    train(a, task, spec)
    train(b, task, spec)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    c = fresh(task, seed=1)
    train(c, task, spec)
    assert not torch.equal(a.fc1.weight, c.fc1.weight)


class WatchingTask(ClassificationTask):
    """Checks before every batch (i.e. after every optimizer step) that pruned weights are 0."""

    watched: list = []

    def batch(self, iteration):
        for p, m in self.watched:
            assert torch.count_nonzero(p.detach()[~m]) == 0, f"pruned weight moved at iteration {iteration}"
        return super().batch(iteration)


@pytest.mark.parametrize(
    "optimizer,extra",
    [("adam", {}), ("adam", {"weight_decay": 1e-3}), ("sgd", {"momentum": 0.9, "weight_decay": 5e-4})],
)
def test_pruned_weights_stay_exactly_zero_after_every_step(task, optimizer, extra):
    watching = WatchingTask(**{f.name: getattr(task, f.name) for f in dataclasses.fields(task) if f.init})
    model = fresh(watching)
    mask = random_mask(model)
    params = dict(model.named_parameters())
    watching.watched = [(params[n], m) for n, m in mask.items()]
    spec = TrainSpec(lr=1e-2, iterations=30, eval_every=10, optimizer=optimizer, **extra)
    train(model, watching, spec, mask=mask)
    for p, m in watching.watched:
        assert torch.count_nonzero(p.detach()[~m]) == 0
        assert torch.count_nonzero(p.detach()[m]) == int(m.sum())


class ScriptedEvalTask(ClassificationTask):
    script: list = []

    def evaluate(self, model, split):
        i = len(self.calls) // 2
        self.calls.append(split)
        return self.script[i]


def test_early_stop_is_the_iteration_of_minimum_validation_loss(task):
    scripted = ScriptedEvalTask(**{f.name: getattr(task, f.name) for f in dataclasses.fields(task) if f.init})
    scripted.calls = []
    # evaluations at 0, 10, 20, 30, 40, 45: the minimum validation loss is at 30 (a tie at 40 loses)
    scripted.script = [(2.0, 0.1), (1.0, 0.5), (0.6, 0.7), (0.4, 0.8), (0.4, 0.85), (0.9, 0.6)]
    result = train(fresh(task), scripted, TrainSpec(lr=1e-3, iterations=45, eval_every=10))
    assert [p.iteration for p in result.curve] == [0, 10, 20, 30, 40, 45]
    assert result.early_stop.iteration == 30 and result.early_stop.val_acc == 0.8
    assert result.final.iteration == 45 and result.final.test_acc == 0.6
    assert scripted.calls[:2] == ["val", "test"]


def test_real_training_learns_and_reports_early_stop(task):
    result = train(fresh(task), task, TrainSpec(lr=1e-3, iterations=100, eval_every=20))
    assert result.final.test_acc > 0.7 > result.curve[0].test_acc
    assert result.early_stop.val_loss == min(p.val_loss for p in result.curve)
    assert result.iterations == 100


@pytest.mark.numerics
def test_rewound_training_starts_at_k_with_the_schedule_from_k(task):
    spec = TrainSpec(lr=1e-2, iterations=60, eval_every=20, schedule="step", milestones=(30,), gamma=0.1)
    assert lr_at(spec, 29) == 1e-2 and lr_at(spec, 30) == pytest.approx(1e-3)
    warm = TrainSpec(lr=1e-2, iterations=60, schedule="warmup", warmup_iterations=10)
    assert lr_at(warm, 0) == pytest.approx(1e-3) and lr_at(warm, 9) == 1e-2
    seen = []
    train(fresh(task), task, spec, start=20, lr_fn=lambda it: seen.append(it) or lr_at(spec, it))
    assert seen[0] == 20 and seen[-1] == 59


@pytest.mark.numerics
def test_capture_sees_weights_after_k_iterations(task):
    spec = TrainSpec(lr=1e-3, iterations=30, eval_every=10)
    a, at_12, at_0 = fresh(task), CaptureWeights(12), CaptureWeights(0)
    untouched = {k: v.clone() for k, v in a.state_dict().items()}
    train(a, task, spec, callbacks=[at_12, at_0])
    b = fresh(task)
    train(b, task, spec, end=12)
    assert all(torch.equal(at_12.state[k], v) for k, v in b.state_dict().items())
    assert all(torch.equal(at_0.state[k], v) for k, v in untouched.items())  # k = 0: the weights before any step


@pytest.mark.numerics
def test_lean_adam_matches_torch_fused_adam_bit_for_bit():
    torch.manual_seed(0)
    a = [torch.randn(30, 20, requires_grad=True), torch.randn(30, requires_grad=True)]
    b = [t.detach().clone().requires_grad_() for t in a]
    oa = LeanAdam(a, lr=1e-2, weight_decay=1e-4)
    ob = torch.optim.Adam(b, lr=1e-2, weight_decay=1e-4, fused=True)
    x = torch.randn(8, 20)
    for _ in range(25):
        for ps in (a, b):
            ((x @ ps[0].t() + ps[1]).tanh().sum() ** 2).backward()
        oa.step()
        ob.step()
        oa.zero_grad()
        ob.zero_grad()
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


def test_divergence_is_a_clear_error(task):
    with pytest.raises(TrainingDiverged, match="lower train.lr"):
        train(fresh(task), task, TrainSpec(lr=1e12, iterations=40, eval_every=10, optimizer="sgd"))


def test_thread_count_is_settable_per_run(task):
    from conftest import synthetic_spec_dict

    from study.engine.lineage import run_lineage
    from study.engine.spec import lineage_spec_from_dict

    before = torch.get_num_threads()
    try:
        run_lineage(lineage_spec_from_dict(synthetic_spec_dict(rounds=0)), context=RunContext(threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_cosine_schedule_by_hand():
    from study.errors import SpecError

    with pytest.raises(SpecError, match="takes no milestones"):
        TrainSpec(lr=0.2, iterations=100, schedule="cosine", milestones=(50,)).validate()
    spec = TrainSpec(lr=0.2, iterations=100, schedule="cosine")
    assert lr_at(spec, 0) == 0.2
    assert lr_at(spec, 50) == pytest.approx(0.1)  # 0.2 * (1 + cos(pi / 2)) / 2
    assert lr_at(spec, 75) == pytest.approx(0.2 * (1 - 0.5**0.5) / 2)
    assert lr_at(spec, 99) == pytest.approx(0.2 * (1 + math.cos(math.pi * 0.99)) / 2)


@pytest.mark.numerics
@pytest.mark.parametrize("clip", [0.0, 1e-3])
def test_gradient_clipping_bounds_one_plain_sgd_step(task, clip):
    """One SGD step (lr 1, no momentum) moves the weights by exactly the gradient, rescaled to norm
    `clip` when its global norm is larger; the norm is computed here from autograd's gradient by
    another reduction than the clip's. In float64: the two reductions round differently per CPU,
    and in float32 the step (1e-3 spread over 266,610 weights) is read back as a difference of
    weights 10^4 times larger; in float64 both errors stay below 1e-10 relative."""
    task = dataclasses.replace(
        task, train_x=task.train_x.double(), val_x=task.val_x.double(), test_x=task.test_x.double()
    )
    model = fresh(task).double()
    x, y = task.batch(0)
    reference = fresh(task).double()
    task.loss(reference, x, y).backward()
    grad_norm = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in reference.parameters()]))
    assert grad_norm > 1e-2, "the check needs a gradient well above the clip"
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    train(model, task, TrainSpec(lr=1.0, iterations=1, optimizer="sgd", eval_every=1, grad_clip=clip))
    moved = before - torch.cat([p.detach().flatten() for p in model.parameters()])
    norm = float(grad_norm)
    expected = norm if clip == 0 else clip * norm / (norm + 1e-6)  # torch's clip_grad_norm_: max / (norm + 1e-6)
    assert float(torch.linalg.vector_norm(moved)) == pytest.approx(expected, rel=1e-10)
