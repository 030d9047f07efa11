"""The cost columns (Blalock et al., 2020) against hand-counted multiply-accumulates."""

import pytest
import torch
from conftest import synthetic_spec_dict
from torch import nn

from study.engine.cost import cost, weight_positions
from study.engine.lineage import RunContext, run_lineage
from study.engine.models import MODELS
from study.engine.models.onlstm import RNNLanguageModel
from study.engine.spec import lineage_spec_from_dict


def test_lenet_300_100_costs_what_its_three_matrices_cost_by_hand():
    model = MODELS["lenet_300_100"].factory((1, 28, 28), 10)
    positions = weight_positions(model, lambda m: m(torch.ones(1, 1, 28, 28)))
    assert positions == {"fc1.weight": 1, "fc2.weight": 1, "fc3.weight": 1}
    mask = {name: torch.ones_like(p, dtype=torch.bool) for name, p in model.named_parameters() if p.dim() == 2}
    mask["fc1.weight"][:150] = False  # half of fc1: 150 x 784 = 117,600 weights gone
    price = cost(model, positions, mask)
    assert price.macs_dense == 784 * 300 + 300 * 100 + 100 * 10 == 266_200
    assert price.macs_remaining == 266_200 - 117_600
    assert price.parameters == 266_200 + 300 + 100 + 10  # and the biases
    assert price.compression_ratio == 266_610 / (266_610 - 117_600)
    assert price.theoretical_speedup == 266_200 / 148_600


def test_a_convolution_costs_its_kernel_at_every_output_pixel():
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 6, 3, stride=2), nn.Flatten(), nn.Linear(6 * 2 * 2, 3)
    )
    positions = weight_positions(model, lambda m: m(torch.ones(1, 2, 5, 5)))
    assert positions == {"0.weight": 25, "1.weight": 4, "3.weight": 1}  # 5x5 'same'; (5-3)/2+1 = 2x2 pixels
    mask = {"1.weight": torch.zeros(6, 4, 3, 3, dtype=torch.bool)}
    mask["1.weight"][0] = True  # one output channel of the second conv left: 36 weights
    price = cost(model, positions, mask)
    assert price.macs_dense == 25 * (4 * 2 * 9) + 4 * (6 * 4 * 9) + 24 * 3 == 1800 + 864 + 72
    assert price.macs_remaining == 1800 + 4 * 36 + 72


def test_a_recurrent_language_model_pays_every_matrix_once_per_token():
    """8 probe tokens: the input and recurrent maps of each layer run 8 times, and the decoder
    (tied to the embedding, whose lookup costs nothing) once per token."""
    lm = RNNLanguageModel(vocab=50, embedding=16, hidden=32, layers=3, chunk_size=4)
    positions = weight_positions(lm, lambda m: m(torch.zeros(8, 1, dtype=torch.long)))
    assert positions == {
        **{f"rnn.layers.{i}.{m}.weight": 8 for i in range(3) for m in ("ih", "hh")},
        "encoder.weight": 8,
    }
    rows = 4 * 32 + 2 * (32 // 4)  # four gates of 32 plus two master gates of 32/4 chunks = 144
    per_token = rows * 16 + rows * 32 + rows * 32 + rows * 32 + 72 * 32 + 72 * 16 + 50 * 16
    assert cost(lm, positions, {}).macs_dense == 8 * per_token


def test_every_round_of_a_lineage_reports_its_cost():
    spec = lineage_spec_from_dict(synthetic_spec_dict(rounds=2))
    rounds = run_lineage(spec, context=RunContext(threads=1))
    dense = rounds[0]
    assert dense.compression_ratio == 1.0 and dense.theoretical_speedup == 1.0
    assert dense.macs_remaining == dense.macs_dense > 0
    assert all(r.macs_dense == dense.macs_dense for r in rounds)
    later = [r.theoretical_speedup for r in rounds]
    assert later == sorted(later) and later[-1] > 1.0, "pruning only makes the network cheaper"


@pytest.mark.parametrize("name", list(MODELS))
def test_every_prunable_weight_of_every_model_is_priced(name):
    """A weight used some other way than linear/conv2d would drop out of the count silently: every
    prunable tensor but a lookup-only embedding has positions."""
    from study.engine.models import build_model, prunable_slots

    info = MODELS[name]
    if info.inputs == "image":
        shape = (1, 28, 28) if name == "lenet_300_100" else (3, 32, 32)
        model = build_model(name, shape, 10, seed=0)
        probe = lambda m: m(torch.ones(1, *shape))  # noqa: E731
    else:
        model = build_model(name, (20,), 10, seed=0)
        probe = lambda m: (  # noqa: E731
            m(torch.zeros(8, 1, dtype=torch.long))
            if info.inputs == "text"
            else m(*[torch.full((8, 1), 3), torch.tensor([8])] * (2 if getattr(m, "pair", False) else 1))
        )
    positions = weight_positions(model, probe)
    for slot in prunable_slots(model).values():
        if slot.kind != "embedding" or slot.param in positions:
            assert positions.get(slot.param, 0) > 0, (name, slot.param)
