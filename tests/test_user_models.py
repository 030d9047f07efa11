"""Any torch model (issue 26): a factory by import path, a torchvision classifier by name, or a
plugin's; its prunable weights found with their kinds, its cost counted, every engine feature
on it, and whether its lineages may pack decided on the built model."""

import math

import pytest
import torch
import usernets
from conftest import FASHION_DIR, requires_fashion_mnist, synthetic_spec_dict
from torch import nn

from study.engine.branches import BRANCHES
from study.engine.cost import cost, weight_positions
from study.engine.lineage import Lineage, RunContext, run_lineage
from study.engine.models import prunable_layers
from study.engine.models.external import pack_refusal
from study.engine.registry import model_info
from study.engine.spec import lineage_spec_from_dict
from study.engine.strategies import STRATEGIES

TINY = {"train": {"iterations": 20, "eval_every": 10}, "data": {"validation_size": 100, "synthetic_size": 400}}


def spec_of(model, **kw):
    return lineage_spec_from_dict(synthetic_spec_dict(model=model, **{**TINY, **kw}))


def test_prunable_weights_are_found_with_their_kinds():
    model = usernets.Mixed(10)
    assert prunable_layers(model) == {
        "conv3.weight": "conv",
        "conv1.weight": "conv",
        "position.weight": "embedding",
        "gru.weight_ih_l0": "rnn_ih",
        "gru.weight_hh_l0": "rnn_hh",
        "out.weight": "output",  # the last Linear
    }  # no bias, no LayerNorm weight
    assert prunable_layers(model, output_layer="conv1")["conv1.weight"] == "output"
    assert prunable_layers(model, output_layer="conv1")["out.weight"] == "fc"


def test_tied_weights_are_pruned_once_and_attention_projections_not_at_all():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(20, 8)
            self.attn = nn.MultiheadAttention(8, 2)
            self.lstm = nn.LSTM(8, 8, num_layers=2, bidirectional=True)
            self.decode = nn.Linear(8, 20)
            self.decode.weight = self.embed.weight

    kinds = prunable_layers(Tied())
    assert kinds == {
        "embed.weight": "embedding",
        **{f"lstm.weight_{m}_l{i}{d}": f"rnn_{m}" for i in (0, 1) for d in ("", "_reverse") for m in ("ih", "hh")},
    }, kinds  # the decoder shares the embedding's weight; attn.out_proj is nn.MultiheadAttention's own


def _hand_macs(model, x, mask):
    """The weight products of one forward, counted independently of engine/cost: a forward hook per
    conv or linear module multiplies its output positions by its kept weights (the layer's
    C_out x C_in/groups x kernel)."""
    names = {id(m): n for n, m in model.named_modules()}
    total = {"dense": 0, "kept": 0}

    def hook(module, inputs, out):
        if isinstance(module, nn.Linear):
            positions = inputs[0].numel() // module.in_features
        else:
            positions = out[0].numel() // module.out_channels  # one example's output pixels
        w = module.weight
        assert w.numel() == module.weight.shape[0] * math.prod(module.weight.shape[1:])
        kept = mask.get(f"{names[id(module)]}.weight", torch.ones_like(w, dtype=torch.bool))
        total["dense"] += positions * w.numel()
        total["kept"] += positions * int(kept.sum())

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    model.eval()
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return total["dense"], total["kept"]


def _random_mask(model, keep=0.4, seed=0):
    g, prunable = torch.Generator().manual_seed(seed), prunable_layers(model)
    return {n: torch.rand(p.shape, generator=g) < keep for n, p in model.named_parameters() if n in prunable}


@pytest.mark.parametrize(
    "name, shape", [("torchvision:resnet18", (3, 16, 16)), ("study_example.models:build_res_cnn", (1, 28, 28))]
)
def test_macs_of_resnet18_and_the_plugin_model_match_an_independent_count(name, shape, example_plugin_path):
    model = model_info(name).factory(shape, 10)
    mask = _random_mask(model)
    x = torch.zeros((1, *shape))
    price = cost(model, weight_positions(model, lambda m: m(x)), mask)
    assert (price.macs_dense, price.macs_remaining) == _hand_macs(model, x, mask)


def test_resnet18_macs_at_imagenet_size_are_torchvisions_published_count():
    import torchvision

    model = model_info("torchvision:resnet18").factory((3, 224, 224), 1000)
    positions = weight_positions(model, lambda m: m(torch.zeros(1, 3, 224, 224)))
    macs = cost(model, positions, {}).macs_dense
    assert round(macs / 1e9, 3) == torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["_ops"]  # 1.814 G


def test_macs_of_conv1d_conv3d_gru_and_embedding_by_hand():
    model = usernets.Mixed(10)
    positions = weight_positions(model, lambda m: m(torch.zeros(1, 1, 28, 28)))
    mask = {"conv1.weight": torch.zeros(16, 56, 3, dtype=torch.bool)}
    mask["conv1.weight"][:8] = True  # half of the Conv1d's filters kept
    price = cost(model, positions, mask)
    conv3 = 28 * 28 * (2 * 1 * 1 * 3 * 3)  # every output voxel x the kernel's weights
    conv1 = 28 * (16 * 56 * 3)  # every output step x the kernel's weights
    gru = 2 * 28 * (48 * 16)  # input and hidden matrices (3 gates x 16 rows, 16 columns), once per step
    linear = 16 * 10
    assert price.macs_dense == conv3 + conv1 + gru + linear  # the embedding lookup multiplies nothing
    assert price.macs_remaining == conv3 + conv1 // 2 + gru + linear


def test_every_strategy_and_branch_runs_on_an_import_path_model():
    for name, strategy in STRATEGIES.items():
        base = spec_of("usernets:mlp", strategy=name, rounds=1 if strategy.one_shot else 2)
        branches = tuple(b for b in BRANCHES if BRANCHES[b].problem(base) is None)
        instability = {"rounds": [1]} if name == "imp" else {}
        spec = spec_of(
            "usernets:mlp", strategy=name, rounds=base.rounds, branches=list(branches), instability=instability
        )
        lineage = Lineage(spec, context=RunContext(threads=1))
        rows = [r.trunk for r in lineage]
        assert [r.round for r in rows] == lineage.plan.rounds, name
        assert len(lineage.state.branch_results) == len(branches) * (len(rows) - 1), name
        last = rows[-1]
        assert last.layer_remaining_pct["body.1.weight"] == pytest.approx(100 * 0.8 ** (len(rows) - 1), abs=0.01)
        assert last.layer_remaining_pct["head.weight"] == pytest.approx(100 * 0.9 ** (len(rows) - 1), abs=0.5)
        assert last.macs_remaining < last.macs_dense == 784 * 32 + 32 * 10, name
        if name == "imp":
            assert rows[1].val_error_barrier is not None and rows[2].val_error_barrier is None


def test_resume_of_an_import_path_model_repeats_the_uninterrupted_run(tmp_path):
    spec = spec_of("usernets:mlp", rounds=2)
    whole = run_lineage(spec, context=RunContext(threads=1))
    first = Lineage(spec, workdir=tmp_path, context=RunContext(threads=1))
    next(first)  # round 0 only, then the process "dies"
    resumed = Lineage(spec, workdir=tmp_path, context=RunContext(threads=1))
    rows = resumed.previous + [r.trunk for r in resumed]
    for a, b in zip(whole, rows, strict=True):
        assert (a.round, a.val_acc, a.test_loss, a.remaining_pct) == (b.round, b.val_acc, b.test_loss, b.remaining_pct)


def test_an_import_path_models_identity_carries_its_source():
    spec = spec_of("usernets:mlp")
    source = spec.hparam_dict()["sources"]["model"]
    assert source["import_path"] == "usernets:mlp" and len(source["source"]) == 16
    assert spec_of("usernets:mlp", model_args={"hidden": 32}).lineage_id() == spec.lineage_id()  # its default
    assert spec_of("usernets:mlp", model_args={"hidden": 16}).lineage_id() != spec.lineage_id()
    tv = lineage_spec_from_dict(synthetic_spec_dict(model="torchvision:resnet18", data={"channels": 3}))
    import torchvision

    assert tv.hparam_dict()["sources"]["model"] == {"torchvision": torchvision.__version__}


def test_which_models_pack_is_decided_on_the_built_model(example_plugin_path):
    from study_example.models import build_res_cnn

    assert pack_refusal(build_res_cnn((1, 28, 28), 10), (1, 28, 28)) is None  # BN stacked per member: exact
    assert "Dropout(p=0.5)" in pack_refusal(usernets.mlp_dropout((1, 28, 28), 10), (1, 28, 28))
    assert "GRU" in pack_refusal(usernets.Mixed(10), (1, 28, 28))
    assert "does not run stacked" in pack_refusal(usernets.noisy((1, 28, 28), 10), (1, 28, 28))


def test_the_plugin_model_trains_packed_as_it_trains_alone(example_plugin_path):
    """What `pack_refusal` lets through is exact: two members of the residual BN model trained
    stacked get the lone loop's curves and weights to float64 rounding."""
    from test_packed import _assert_same_training, _double_task

    from study.engine.models import build_from
    from study.engine.packed_train import train_packed
    from study.engine.spec import TrainSpec
    from study.engine.train import TrainRequest, train_request

    info = model_info("study_example.models:build_res_cnn")
    task = _double_task("synthetic", 8)
    spec = TrainSpec(lr=1e-3, iterations=5, eval_every=5, batch_size=8)

    def requests():
        return [
            TrainRequest(build_from(info, (1, 28, 28), 10, seed=k).double(), task.reordered(k), spec, packs=True)
            for k in range(2)
        ]

    packed, lone = requests(), requests()
    _assert_same_training(train_packed(packed), [train_request(r) for r in lone], packed, lone)


@requires_fashion_mnist
def test_resnet18_runs_an_imp_lineage_with_a_random_reinit_branch_on_fashion_mnist(tmp_path):
    """torchvision's ResNet-18 (random init) on real Fashion-MNIST, its grey 28x28 images
    repeated to 3 channels and resized to 16x16 (a few hundred of them: the suite's budget)."""
    from study.lake.reader import read_table
    from study.lake.recorder import run_to_lake

    assert FASHION_DIR
    spec = lineage_spec_from_dict(
        {
            "model": "torchvision:resnet18",
            "dataset": "fashion_mnist",
            "data": {"channels": 3, "resize": [16, 16], "train_subset": 120, "test_subset": 40, "validation_size": 40},
            "rounds": 2,
            "branches": ["random_reinit"],
            "chance_margin": None,
            "train": {"lr": 1e-3, "iterations": 1, "eval_every": 1, "batch_size": 4},
        }
    )
    rows = run_to_lake(spec, tmp_path, context=RunContext(threads=2, pack=False))
    lake = read_table(tmp_path, "rounds").table.to_pylist()
    assert sorted((r["strategy"], r["round"]) for r in lake) == [
        ("imp", 0), ("imp", 1), ("imp", 2), ("imp.random_reinit", 1), ("imp.random_reinit", 2)
    ]  # fmt: skip
    model = model_info("torchvision:resnet18").factory((3, 16, 16), 10)
    convs = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    masked = set(dict(read_table(tmp_path, "masks").table.to_pylist()[0]["layer_size"]))
    assert masked == convs | {"fc.weight"}  # no BatchNorm parameter, no bias
    for round_, left in ((1, 90.0), (2, 81.0)):  # 10% of what remains, each round
        pruned = rows[round_].layer_remaining_pct
        assert all(pruned[c] == pytest.approx(left, abs=0.01) for c in convs) and pruned["fc.weight"] == pytest.approx(
            left, abs=0.01
        )
    dense, kept = _hand_macs(model, torch.zeros(1, 3, 16, 16), {})
    assert rows[0].macs_dense == dense


BAD_MODELS = [
    ({"model": "usernets:not_a_module"}, "the factory returned a str, not an nn.Module"),
    ({"model": "usernets:NOT_CALLABLE"}, "int is not callable"),
    ({"model": "usernets:bias_only"}, "has no prunable weights"),
    ({"model": "usernets:three_classes"}, "outputs shape (2, 3) for 2 examples, but dataset synthetic has 10 classes"),
    ({"model": "usernets:nope"}, "usernets has no attribute 'nope'"),
    ({"model": "nosuchpackage.nets:build"}, "module 'nosuchpackage' is not importable here"),
    ({"model": "usernets:mlp", "model_args": {"width": 3}}, "model_args.width: usernets:mlp has no such argument"),
    ({"model": "usernets:mlp", "output_layer": "body.9"}, "output_layer 'body.9': the model has no such module"),
    ({"model": "lenet_300_100", "output_layer": "fc3"}, "declares its own output layer"),
    ({"model": "torchvision:resnet17"}, "did you mean 'torchvision:resnet18'"),
]


@pytest.mark.parametrize("change, message", BAD_MODELS)
def test_bad_models_are_one_line_exit_2_and_nothing_written(tmp_path, capsys, change, message):
    import yaml

    from study.cli import main

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(synthetic_spec_dict(**{**TINY, **change})))
    lake = tmp_path / "lake"
    assert main(["lineage", str(spec), "--results", str(lake), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not any(p.is_file() for p in lake.rglob("*")), "nothing written"


def test_study_plan_says_whether_a_model_packs_and_a_packed_study_refuses_one_that_does_not(tmp_path, capsys):
    import yaml

    from study.cli import main

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(synthetic_spec_dict(**TINY, model="usernets:mlp_dropout")))
    assert main(["plan", str(spec)]) == 0
    why = "drop is Dropout(p=0.5): each lineage draws its own dropout masks, which a packed step cannot reproduce"
    out = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert f"packing: trains alone (model usernets:mlp_dropout does not pack: {why})" in out
    space = tmp_path / "study.yaml"
    base = synthetic_spec_dict(**TINY, model="usernets:mlp_dropout")
    space.write_text(yaml.safe_dump({"study": {"name": "s", "base": base, "resources": {"cpu": 1, "pack": "on"}}}))
    assert main(["tune", str(space), "--results", str(tmp_path / "lake")]) == 2
    assert f"resources.pack is on, but model usernets:mlp_dropout does not pack: {why}" in capsys.readouterr().err
    assert not (tmp_path / "lake").exists()
