import pytest
import torch
import torch.nn.functional as F

from study.engine.models import MODELS, build_model, prunable_layers

SHAPES = {"lenet_300_100": (1, 28, 28)}
VISION = [name for name, info in MODELS.items() if "embedding" not in info.layer_kinds]  # RNNs: test_onlstm.py


@pytest.mark.parametrize("name", VISION)
def test_forward_backward_shapes_and_prunable_layers(name):
    shape = SHAPES.get(name, (3, 32, 32))
    model = build_model(name, shape, 10, seed=0)
    x = torch.randn(4, *shape)
    out = model(x)
    assert out.shape == (4, 10)
    F.cross_entropy(out, torch.arange(4)).backward()
    layers = prunable_layers(model)
    params = dict(model.named_parameters())
    for n, p in params.items():
        assert p.grad is not None and p.grad.shape == p.shape
        if n in layers:
            assert n.endswith("weight") and p.dim() >= 2
        else:
            assert p.dim() == 1, f"{n} is not prunable but is a weight matrix"
    assert list(layers.values()).count("output") == 1
    assert set(layers.values()) == set(MODELS[name].layer_kinds)


def test_paper_parameter_counts():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(build_model("lenet_300_100", (1, 28, 28), 10, 0)) == 266_610
    assert round(count(build_model("conv2", (3, 32, 32), 10, 0)) / 1e6, 1) == 4.3
    assert round(count(build_model("conv4", (3, 32, 32), 10, 0)) / 1e6, 1) == 2.4
    assert round(count(build_model("conv6", (3, 32, 32), 10, 0)) / 1e6, 1) == 2.3
    assert round(count(build_model("resnet20", (3, 32, 32), 10, 0)) / 1e3) == 272


@pytest.mark.parametrize("name", ["lenet_300_100", "conv2", "resnet20"])
def test_seed_alone_decides_the_init(name):
    shape = SHAPES.get(name, (3, 32, 32))
    torch.manual_seed(123)
    a = build_model(name, shape, 10, seed=7)
    torch.manual_seed(456)
    b = build_model(name, shape, 10, seed=7)
    c = build_model(name, shape, 10, seed=8)
    for (n, pa), pb, _pc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), n
    assert not torch.equal(
        a.state_dict()[next(iter(prunable_layers(a)))], c.state_dict()[next(iter(prunable_layers(c)))]
    )


def test_gaussian_glorot_and_kaiming_scales():
    lenet = build_model("lenet_300_100", (1, 28, 28), 10, seed=0)
    w = lenet.fc1.weight
    assert abs(float(w.detach().std()) - (2 / (784 + 300)) ** 0.5) < 0.002
    assert torch.count_nonzero(lenet.fc1.bias) == 0
    kaiming = build_model("lenet_300_100", (1, 28, 28), 10, seed=0, init="kaiming_normal")
    assert abs(float(kaiming.fc1.weight.detach().std()) - (2 / 784) ** 0.5) < 0.002


def test_recurrent_schemes_draw_embeddings_at_their_own_scale():
    """uniform: weights U(±1/sqrt(fan_in)), embeddings U(±0.1); uniform_normal_embedding: the same
    weights' law with N(0, 1) embeddings; biases zero under both."""
    args = {"embedding": 64, "hidden": 32, "layers": 2, "chunk_size": 4, "pair": True}
    small = build_model("onlstm_classifier", (200,), 7, seed=0, init="uniform", **args)
    normal = build_model("onlstm_classifier", (200,), 7, seed=0, init="uniform_normal_embedding", **args)
    assert float(small.encoder.weight.abs().max()) <= 0.1
    assert abs(float(small.encoder.weight.std()) - 0.2 / 12**0.5) < 0.003
    assert abs(float(normal.encoder.weight.std()) - 1.0) < 0.02
    assert abs(float(normal.encoder.weight.mean())) < 0.02
    for model in (small, normal):
        hh = model.rnn.layers[1].hh.weight
        assert float(hh.abs().max()) <= 1 / 32**0.5
        assert abs(float(hh.std()) - (1 / 32**0.5) / 3**0.5) < 0.005
        assert torch.count_nonzero(model.rnn.layers[0].ih.bias) == 0
