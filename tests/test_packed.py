"""Packed training (issue 16): K lineages of one architecture trained as one stacked model give
each lineage what the lone loop gives it: the trainer's curves and weights (to float64 rounding,
for every model family that packs), and the lineage's rows and masks (float32, to rounding)."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from conftest import synthetic_spec_dict

import study.engine.packing as packing
from study.engine.data import DATASETS, SharedTasks
from study.engine.failures import TrainingDiverged
from study.engine.lineage import Lineage, LineageHooks, RunContext, run_lineage
from study.engine.models import MODELS, build_model
from study.engine.packed_train import pack_key, train_packed
from study.engine.packing import run_packed
from study.engine.spec import DataSpec, TrainSpec, lineage_spec_from_dict
from study.engine.train import CaptureWeights, KeepBest, TrainRequest, train_request

pytestmark = pytest.mark.numerics  # `make test-portability` runs it under every CPU dispatch level

FAMILIES = {  # model -> (dataset, input shape, iterations, batch size): float64 convolutions are slow on CPU
    "lenet_300_100": ("synthetic", (1, 28, 28), 14, 16),
    "conv2": ("synthetic", (1, 28, 28), 7, 8),
    "resnet20": ("synthetic_cifar", (3, 32, 32), 7, 8),
    "vgg19": ("synthetic_cifar", (3, 32, 32), 3, 2),  # one step: 20M weights in float64
}


def _double_task(dataset, batch_size, stride=1):
    """The dataset's task in float64; `stride` 2 halves the images' sides (VGG-19 pools them to 1x1)."""
    task = DATASETS[dataset].load(DataSpec(validation_size=24, synthetic_size=160), batch_size, 0, torch.device("cpu"))

    def small(x):
        return x[..., ::stride, ::stride].double().contiguous()

    return dataclasses.replace(task, train_x=small(task.train_x), val_x=small(task.val_x), test_x=small(task.test_x))


def _requests(model_name, specs, masks, tasks, callbacks=None):
    _, shape, _, _ = FAMILIES[model_name]
    out = []
    for k, (spec, mask) in enumerate(zip(specs, masks, strict=True)):
        model = build_model(model_name, shape, 10, seed=k).double()
        if mask:
            with torch.no_grad():
                for name, m in mask.items():
                    dict(model.named_parameters())[name].mul_(m)
        out.append(
            TrainRequest(
                model, tasks[k], spec, mask=mask, start=2, callbacks=(callbacks or [()] * len(specs))[k], packs=True
            )
        )
    return out


def _random_mask(model_name, seed):
    _, shape, _, _ = FAMILIES[model_name]
    g = torch.Generator().manual_seed(seed)
    with torch.device("meta"):  # shapes only
        model = MODELS[model_name].factory(shape, 10)
    return {n: torch.rand(p.shape, generator=g) < 0.6 for n, p in model.named_parameters() if p.dim() > 1}


def _assert_same_training(packed, lone, packed_requests, lone_requests, tol=1e-9):
    for mine, theirs, rp, rl in zip(packed, lone, packed_requests, lone_requests, strict=True):
        assert [p.iteration for p in mine.curve] == [p.iteration for p in theirs.curve]
        for a, b in zip(mine.curve, theirs.curve, strict=True):
            for field in ("train_loss", "val_loss", "test_loss", "val_acc", "test_acc"):
                x, y = getattr(a, field), getattr(b, field)
                # both loops sum training losses in float32: at most eval_every (3) ulps, 1.8e-7 relative
                near = 1e-6 if field == "train_loss" else tol
                assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=near, abs=near), (field, a, b)
        assert mine.early_stop.iteration == theirs.early_stop.iteration
        for (name, p), (_, q) in zip(rp.model.state_dict().items(), rl.model.state_dict().items(), strict=True):
            assert torch.allclose(p.double(), q.double(), rtol=tol, atol=tol), name


@pytest.mark.parametrize("model_name", list(FAMILIES))
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_pack_trains_each_member_as_the_lone_loop_does(model_name, optimizer):
    """Every packing family, in float64: members with their own data order, mask (one dense),
    learning rate and (on LeNet) schedule; SGD with momentum and weight decay; clipped gradients."""
    if model_name != "lenet_300_100" and optimizer == "sgd":
        pytest.skip("the optimizers act on the stacked buffer whatever the model: SGD is checked on LeNet")
    dataset, _, iterations, batch_size = FAMILIES[model_name]
    base = TrainSpec(
        lr=1e-3 if optimizer == "adam" else 0.05,
        iterations=iterations,
        eval_every=iterations if model_name == "vgg19" else 3,  # VGG-19 in float64: evaluate at the ends only
        batch_size=batch_size,
        optimizer=optimizer,
        momentum=0.9 if optimizer == "sgd" else 0.0,
        weight_decay=1e-4,
        grad_clip=0.5,
    )
    specs = [base, dataclasses.replace(base, lr=base.lr * 2), dataclasses.replace(base, schedule="cosine")]
    masks = [None, _random_mask(model_name, 1), _random_mask(model_name, 2)]
    if model_name != "lenet_300_100":  # float64 convolutions are slow: schedules are checked on LeNet
        specs, masks = specs[:2], masks[:2]
    shared = _double_task(dataset, batch_size, stride=2 if model_name == "vgg19" else 1)
    seeds = range(len(specs))
    packed_requests = _requests(model_name, specs, masks, [shared.reordered(seed) for seed in seeds])
    lone_requests = _requests(model_name, specs, masks, [shared.reordered(seed) for seed in seeds])
    assert len({pack_key(r) for r in packed_requests}) == 1
    packed = train_packed(packed_requests)
    lone = [train_request(r) for r in lone_requests]
    _assert_same_training(packed, lone, packed_requests, lone_requests)


def test_a_diverging_member_fails_alone_and_its_callbacks_see_their_own_weights():
    """The member with a huge learning rate fails with the lone loop's error at the same
    evaluation; the others train on untouched. θ_k captured mid-pack and the early-stop weights
    are each member's own."""
    base = TrainSpec(lr=0.05, iterations=12, eval_every=4, batch_size=16, optimizer="sgd")
    specs = [base, dataclasses.replace(base, lr=1e30), base]
    shared = _double_task("synthetic", 16)

    def callbacks():
        return [(CaptureWeights(5), KeepBest()) for _ in specs]

    packed_cbs, lone_cbs = callbacks(), callbacks()
    packed_requests = _requests("lenet_300_100", specs, [None] * 3, [shared.reordered(s) for s in range(3)], packed_cbs)
    lone_requests = _requests("lenet_300_100", specs, [None] * 3, [shared.reordered(s) for s in range(3)], lone_cbs)
    packed = train_packed(packed_requests)
    with pytest.raises(TrainingDiverged) as lone_error:
        train_request(lone_requests[1])
    assert isinstance(packed[1], TrainingDiverged) and str(packed[1]) == str(lone_error.value)
    lone = [train_request(lone_requests[k]) for k in (0, 2)]
    _assert_same_training([packed[0], packed[2]], lone, packed_requests[::2], lone_requests[::2])
    for k in (0, 2):
        for mine, theirs in zip(packed_cbs[k], lone_cbs[k], strict=True):
            assert mine.state.keys() == theirs.state.keys()
            for name in mine.state:
                assert torch.allclose(mine.state[name], theirs.state[name], rtol=1e-9, atol=1e-9), name


def test_requests_that_cannot_share_a_stacked_model_do_not_pack():
    spec = lineage_spec_from_dict(synthetic_spec_dict())
    task = DATASETS["synthetic"].load(spec.data, 32, 0, torch.device("cpu"))
    model = build_model("lenet_300_100", (1, 28, 28), 10, seed=0)
    request = TrainRequest(model, task, spec.train, packs=True)
    assert pack_key(request) is not None
    assert pack_key(dataclasses.replace(request, packs=False)) is None
    assert pack_key(dataclasses.replace(request, start=5)) != pack_key(request)
    other_data = DATASETS["synthetic"].load(spec.data, 32, 0, torch.device("cpu"))  # equal, not shared
    assert pack_key(dataclasses.replace(request, task=other_data)) != pack_key(request)
    assert pack_key(dataclasses.replace(request, task=task.reordered(7))) == pack_key(request)
    assert not MODELS["onlstm_lm"].packs and not MODELS["lstm_classifier"].packs  # dropout: draws differ by member


def _run_members(specs):
    rows, masks = {}, {}

    def hooks(i):
        return LineageHooks(
            on_round=lambda r: rows.setdefault(i, []).append(r), on_mask=lambda m: masks.setdefault(i, []).append(m)
        )

    context = RunContext(threads=1, tasks=SharedTasks())
    members = [Lineage(s, context=context, hooks=hooks(i)) for i, s in enumerate(specs)]
    events = list(run_packed(members))
    return rows, masks, events


def _lone(spec):
    rows, masks = [], []
    run_lineage(spec, context=RunContext(threads=1), hooks=LineageHooks(on_round=rows.append, on_mask=masks.append))
    return rows, masks


def _bits(mask_result, name):
    return np.unpackbits(np.frombuffer(mask_result.layer_bits[name], dtype=np.uint8))


@pytest.fixture
def float64_lineages(monkeypatch):
    """Lineages on the synthetic data train in float64: models and inputs (the engine trains the
    dtype it is given). Packed-vs-lone is a claim of mathematical equivalence, and float32 rounds
    differently per CPU's SIMD kernels (on an AVX-512 CPU a packed float32 val_loss differed from
    the lone one by 5e-4 after 2 rounds)."""

    def double_task(load):
        def loaded(*args):
            task = load(*args)
            return dataclasses.replace(
                task, train_x=task.train_x.double(), val_x=task.val_x.double(), test_x=task.test_x.double()
            )

        return loaded

    entry = DATASETS["synthetic"]
    monkeypatch.setitem(DATASETS, "synthetic", dataclasses.replace(entry, load=double_task(entry.load)))
    build = Lineage._build
    monkeypatch.setattr(Lineage, "_build", lambda self, seed: build(self, seed).double())


# Packed and lone rows in float64: bmm and mm sum in other orders, a few ulps (1e-16) per
# operation; over 3 rounds of 30 Adam steps the largest relative difference of a loss was 4.4e-16
# under every dispatch level (default, avx2, avx512) and 1 or 2 threads, so 1e-9 leaves a margin
# of a million while a real difference (another batch, mask or learning rate) moves them by 1e-3
# or more. Both loops sum training losses in a float32 accumulator, whatever the model's dtype:
# a float64 loss a few ulps off can round to a neighbouring float32 (2**-24 relative) on each of
# the eval_every (10) terms summed, so the train loss is held to 10 * 2**-24 (6e-7; seen 3.9e-8).
ROW_TOL = 1e-9
TRAIN_LOSS_TOL = 10 * 2**-24


def _assert_same_rows(mine, theirs):
    for a, b in zip(mine, theirs, strict=True):
        assert (a.lineage_id, a.round, a.branch, a.remaining_pct, a.layer_remaining_pct) == (
            b.lineage_id,
            b.round,
            b.branch,
            b.remaining_pct,
            b.layer_remaining_pct,
        )
        assert a.early_stop_iteration == b.early_stop_iteration and a.iterations == b.iterations
        for field in ("val_loss", "test_loss", "final_train_loss", "val_error_barrier"):
            x, y = getattr(a, field), getattr(b, field)
            tol = TRAIN_LOSS_TOL if field == "final_train_loss" else ROW_TOL
            assert (x is None and y is None) or x == pytest.approx(y, rel=tol, abs=ROW_TOL), (field, a.round)
        for field in ("val_acc", "test_acc", "final_val_acc", "final_test_acc"):  # the same predictions
            assert getattr(a, field) == getattr(b, field), (field, a.round)
        assert a.curve_val_loss == pytest.approx(b.curve_val_loss, rel=ROW_TOL, abs=ROW_TOL)


def test_packed_lineages_write_the_rows_and_masks_lone_lineages_do(monkeypatch, float64_lineages):
    """Three seeds of a trial (one with another learning rate; a random-reinit branch and
    instability measured), run packed: every row and mask is the one the lineage writes alone
    (float64: to ROW_TOL, masks bit for bit), and all of a round's trainings of all seeds trained
    as one pack."""
    model_name, dataset = "lenet_300_100", "synthetic"
    sizes = []
    original = packing.train_packed

    def spy(requests, cuda_graph=True):
        sizes.append(len(requests))
        return original(requests, cuda_graph)

    monkeypatch.setattr(packing, "train_packed", spy)
    common = {
        "model": model_name,
        "dataset": dataset,
        "rounds": 2,
        "chance_margin": None,
        "branches": ["random_reinit"],
        "instability": {"rounds": [1], "points": 11},
        "train": {"iterations": 30, "eval_every": 10},
    }
    specs = [
        lineage_spec_from_dict(synthetic_spec_dict(**common, seed=0)),
        lineage_spec_from_dict(synthetic_spec_dict(**common, seed=1)),
        lineage_spec_from_dict(synthetic_spec_dict(**{**common, "train": {**common["train"], "lr": 2e-3}}, seed=2)),
    ]
    rows, masks, events = _run_members(specs)
    assert [e for e in events if e[1] is None] == [(0, None), (1, None), (2, None)]
    for i, spec in enumerate(specs):
        lone_rows, lone_masks = _lone(spec)
        _assert_same_rows(rows[i], lone_rows)
        for a, b in zip(masks[i], lone_masks, strict=True):
            assert a.layer_kept == b.layer_kept
            assert all(np.array_equal(_bits(a, n), _bits(b, n)) for n in a.layer_bits), (i, a.round, a.branch)
    # one pack per round: the dense trunks; then each seed's trunk, instability copy and branch
    # (round 1) and trunk and branch (round 2) trained together
    assert sizes == [3, 9, 6]


def test_a_member_that_fails_ends_alone():
    """A degenerate seed (its dense round cannot beat chance) ends with its error; its sibling
    finishes every round."""
    good = lineage_spec_from_dict(synthetic_spec_dict(rounds=1, seed=0))
    bad = lineage_spec_from_dict(synthetic_spec_dict(rounds=1, seed=1, chance_margin=0.99))
    rows, _, events = _run_members([good, bad])
    assert [r.round for r in rows[0]] == [0, 1]
    errors = [(i, type(e).__name__) for i, e in events if isinstance(e, BaseException)]
    assert errors == [(1, "LineageDegenerate")]
    assert (0, None) in events


def _study(tmp_path, resources, model="lenet_300_100", seeds=(0, 1, 2)):
    import yaml

    from study.search.study_spec import load_study_spec

    raw = {
        "name": "p",
        "base": synthetic_spec_dict(model=model, **({} if model == "lenet_300_100" else {"dataset": "pcfg"})),
        "seeds": list(seeds),
        "resources": resources,
        "storage": {"results": str(tmp_path / "lake")},
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"study": raw}))
    return load_study_spec(path)


@pytest.mark.parametrize(
    ("resources", "packed", "size", "request_"),
    [
        ({"cpu": 2, "gpu": 0.25}, True, 3, (2, 0.75)),  # auto: part of a GPU each, and LeNet packs
        ({"cpu": 2, "lineages_per_gpu": 2}, True, 2, (2, 1.0)),  # a GPU holds two: 3 seeds in 2 tasks
        ({"cpu": 2, "gpu": 0.25, "pack": "off"}, False, 1, (2, 0.25)),
        ({"cpu": 2, "gpu": 1}, False, 1, (2, 1)),  # a whole GPU each: nothing to share
        ({"cpu": 2}, False, 1, (2, 0)),  # CPU lineages run in parallel tasks unless told
        ({"cpu": 2, "pack": "on"}, True, 3, (2, 0)),
    ],
)
def test_the_study_says_when_a_trials_lineages_pack_and_what_their_task_holds(
    tmp_path, resources, packed, size, request_
):
    study = _study(tmp_path, resources)
    assert (study.packed(), study.pack_size(), study.task_request()) == (packed, size, request_)
    assert study.tasks_per_trial() == -(-3 // size)


@pytest.mark.parametrize(
    ("resources", "model", "words"),
    [
        ({"lineages_per_gpu": 0}, "lenet_300_100", "resources.lineages_per_gpu must be >= 1"),
        ({"gpu": 0.5, "lineages_per_gpu": 2}, "lenet_300_100", "keep one"),
        ({"pack": "always"}, "lenet_300_100", "resources.pack"),
        ({"pack": "on"}, "onlstm_lm", "does not pack"),
    ],
)
def test_impossible_packing_is_refused_in_one_line(tmp_path, resources, model, words):
    from study.errors import SpecError

    with pytest.raises(SpecError) as error:
        study = _study(tmp_path, resources, model)
        study.validate()
    assert words in str(error.value) and "\n" not in str(error.value)


def test_yaml_on_and_off_switch_packing(tmp_path):
    """YAML reads a bare on/off as a boolean; the switch takes it as written."""
    from study.search.study_spec import load_study_spec

    for word, packed in (("on", True), ("off", False)):
        path = tmp_path / f"{word}.yaml"
        path.write_text(
            "study:\n  name: p\n  base: {model: lenet_300_100, dataset: synthetic, rounds: 1, train: {lr: 0.001, iterations: 10}}\n"
            f"  resources: {{gpu: 0.25, pack: {word}}}\n  storage: {{results: {tmp_path / 'lake'}}}\n"
        )
        study = load_study_spec(path)
        assert study.resources.pack == word and study.packed() is packed


def test_a_members_failing_callback_fails_that_member_only():
    """A callback of one member raises mid-pack: that member gets its exception (as alone it
    would raise from training), its pack-mate trains on as it would alone."""

    class Breaks(CaptureWeights):
        def on_step(self, iteration, model):
            if self.wants_step(iteration):
                raise ValueError("broken callback")

    spec = TrainSpec(lr=1e-3, iterations=10, eval_every=5, batch_size=16)
    shared = _double_task("synthetic", 16)
    packed_requests = _requests(
        "lenet_300_100", [spec, spec], [None, None], [shared.reordered(s) for s in (0, 1)], [(), (Breaks(4),)]
    )
    (lone_request,) = _requests("lenet_300_100", [spec], [None], [shared.reordered(0)])
    good, broken = train_packed(packed_requests)
    assert isinstance(broken, ValueError) and str(broken) == "broken callback"
    _assert_same_training([good], [train_request(lone_request)], packed_requests[:1], [lone_request])


def test_siblings_of_a_crashed_packed_lineage_stay_running_for_the_retry(tmp_path):
    """A lake lineage that crashes (not a LineageFailure) is filed failed; closing the pack (as
    its Ray task does when it raises) leaves its siblings filed running, as killed lone tasks
    leave theirs: the trial's retry resumes them, or the driver files them."""
    from study.lake.reader import read_lineages
    from study.lake.recorder import LakeLineage

    def crash(row):
        if row.round == 1:
            raise OSError("disk full")

    context = RunContext(threads=1, tasks=SharedTasks())
    members = [
        LakeLineage(
            lineage_spec_from_dict(synthetic_spec_dict(seed=seed, rounds=3)),
            tmp_path,
            study="s",
            trial_id=f"t-s{seed}",
            context=context,
            on_round=crash if seed == 1 else None,
        )
        for seed in (0, 1, 2)
    ]
    events = run_packed(members)
    for index, event in events:
        if isinstance(event, BaseException):
            assert (index, str(event)) == (1, "disk full")
            events.close()
            break
    status = {r["trial_id"]: r["status"] for r in read_lineages(tmp_path, "s").table.to_pylist()}
    assert status == {"t-s0": "running", "t-s1": "failed", "t-s2": "running"}


def test_a_lone_round_whose_trunk_fails_trains_nothing_more(monkeypatch):
    """Alone, a round's trainings run one after another: when the trunk's diverges, its
    instability copy and branch are not trained (their rows could never be written)."""
    import study.engine.train as train_mod

    real, pruned_trainings = train_mod.train, []

    def trunk_diverges_at_round_1(model, task, spec, *, mask=None, **kw):
        if mask is not None:
            pruned_trainings.append(task.seed)
            raise TrainingDiverged("training diverged by iteration 20 (train loss nan); lower train.lr or add warm-up")
        return real(model, task, spec, mask=mask, **kw)

    monkeypatch.setattr(train_mod, "train", trunk_diverges_at_round_1)
    spec = lineage_spec_from_dict(
        synthetic_spec_dict(rounds=2, branches=["random_reinit"], instability={"rounds": [1], "points": 11})
    )
    with pytest.raises(TrainingDiverged):
        run_lineage(spec, context=RunContext(threads=1))
    assert pruned_trainings == [0], "only the trunk's round-1 training ran"
