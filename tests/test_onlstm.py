"""Comparisons between two code paths (our layer and nn.LSTM, padded and unpadded batches, a pair
encoded together and alone) run in float64: they claim mathematical equivalence, and float32
rounding differs with the SIMD kernels each CPU picks. A float64 difference of a few ulps per
operation over these few steps stays far below 1e-12 (outputs are O(1): tanh and sigmoid bound
them); any real error (a wrong gate row, a padded step read) is O(1e-2) or more."""

import pytest
import torch
from torch import nn

from study.engine.models.onlstm import RecurrentLayer, RNNLanguageModel, SequenceClassifier, cumax

pytestmark = pytest.mark.numerics  # `make test-portability` runs it under every CPU dispatch level
TOL = 1e-12


def test_cumax_is_monotone_in_unit_interval():
    x = torch.randn(7, 13) * 5
    y = cumax(x)
    assert (y >= 0).all() and (y <= 1 + 1e-6).all()
    assert (y[:, 1:] - y[:, :-1] >= -1e-7).all()
    assert torch.allclose(y[:, -1], torch.ones(7))


def _as_torch_lstm(layer: RecurrentLayer) -> nn.LSTM:
    """nn.LSTM with the layer's gate rows ([o, cell, i, f] here; [i, f, g, o] in torch)."""
    ref = nn.LSTM(layer.ih.in_features, layer.hidden_size).to(layer.ih.weight.dtype)

    with torch.no_grad():
        ref.weight_ih_l0.copy_(_gate_rows_in_torch_order(layer, layer.ih.weight))
        ref.weight_hh_l0.copy_(_gate_rows_in_torch_order(layer, layer.hh.weight))
        ref.bias_ih_l0.copy_(_gate_rows_in_torch_order(layer, layer.ih.bias))
        ref.bias_hh_l0.copy_(_gate_rows_in_torch_order(layer, layer.hh.bias))
    return ref


def test_with_master_gates_forced_to_one_the_cell_is_a_standard_lstm():
    torch.manual_seed(0)
    layer = RecurrentLayer(12, 24, 4, masters=True).double().eval()
    x = torch.randn(9, 5, 12, dtype=torch.float64)
    ours, (h, c), _ = layer(x, force_master_ones=True)
    ref_out, (ref_h, ref_c) = _as_torch_lstm(layer)(x)
    torch.testing.assert_close(ours, ref_out, rtol=0, atol=TOL)
    torch.testing.assert_close(h, ref_h[0], rtol=0, atol=TOL)
    torch.testing.assert_close(c, ref_c[0], rtol=0, atol=TOL)
    plain = RecurrentLayer(12, 24, 4, masters=False).double().eval()
    out, _, d = plain(x)
    torch.testing.assert_close(out, _as_torch_lstm(plain)(x)[0], rtol=0, atol=TOL)
    assert (d == 0).all()


def test_shapes_and_distances_in_unit_interval():
    torch.manual_seed(1)
    layer = RecurrentLayer(10, 20, 5, masters=True, dropconnect=0.3)
    x = torch.randn(6, 3, 10)
    out, (h, c), d = layer(x)
    assert out.shape == (6, 3, 20) and h.shape == (3, 20) and c.shape == (3, 20) and d.shape == (6, 3)
    assert (d >= 0).all() and (d <= 1).all()
    assert layer.ih.weight.shape == (2 * 4 + 4 * 20, 10) and layer.hh.weight.shape == (2 * 4 + 4 * 20, 20)
    assert layer.row_blocks() == {"gates": slice(8, 88), "master": slice(0, 8)}
    out.sum().backward()
    assert layer.hh.weight.grad is not None


def test_language_model_ties_its_embedding_and_reports_distances_per_layer():
    lm = RNNLanguageModel(vocab=50, embedding=16, hidden=32, layers=3, chunk_size=4)
    names = [n for n, _ in lm.named_parameters()]
    assert "encoder.weight" in names and "decoder.weight" not in names, "one shared parameter"
    assert lm.decoder.weight is lm.encoder.weight
    logits, distances = lm(torch.randint(0, 50, (7, 4)))
    assert logits.shape == (7, 4, 50) and len(distances) == 3 and distances[0].shape == (7, 4)
    lstm = RNNLanguageModel(vocab=50, embedding=16, hidden=32, layers=3, chunk_size=4, masters=False)
    assert sum(p.numel() for p in lstm.parameters()) < sum(p.numel() for p in lm.parameters())


def test_pair_classifier_reads_the_last_real_token():
    torch.manual_seed(2)
    model = (
        SequenceClassifier(vocab=20, num_classes=7, embedding=8, hidden=16, layers=2, chunk_size=4, pair=True)
        .double()
        .eval()
    )
    a = torch.randint(1, 20, (6, 3))
    lengths = torch.tensor([6, 4, 2])
    padded = a.clone()
    padded[4:, 1] = 0
    padded[2:, 2] = 0
    b = torch.randint(1, 20, (5, 3))
    lb = torch.tensor([5, 5, 3])
    out1 = model(a, lengths, b, lb)
    out2 = model(padded, lengths, b, lb)
    assert out1.shape == (3, 7)
    torch.testing.assert_close(out1, out2, rtol=0, atol=TOL, msg="padding after the end changes nothing")


def test_pair_classifier_equals_each_side_encoded_alone():
    """Both sides go through the RNN as one batch padded to the longer side; the features must be
    those of each sentence encoded on its own, unpadded ([u, v, u*v, |u-v|] into the head)."""
    torch.manual_seed(3)
    model = (
        SequenceClassifier(vocab=20, num_classes=7, embedding=8, hidden=16, layers=2, chunk_size=4, pair=True)
        .double()
        .eval()
    )
    left, left_lengths = torch.randint(1, 20, (4, 3)), torch.tensor([4, 1, 3])
    right, right_lengths = torch.randint(1, 20, (9, 3)), torch.tensor([2, 9, 5])
    out = model(left, left_lengths, right, right_lengths)

    def alone(tokens, length):
        return model.rnn(model.encoder(tokens[:length, None]))[0][-1, 0]

    for j in range(3):
        u, v = alone(left[:, j], left_lengths[j]), alone(right[:, j], right_lengths[j])
        expected = model.head(torch.cat([u, v, u * v, (u - v).abs()]))
        torch.testing.assert_close(out[j], expected, rtol=0, atol=TOL)


def test_gradients_with_master_gates_forced_to_one_are_a_standard_lstms():
    """The biases are folded into the input map and the steps are unbound/split from one tensor:
    every weight's and bias's gradient must still be nn.LSTM's (gate rows reordered)."""
    torch.manual_seed(4)
    for masters in (False, True):
        layer = RecurrentLayer(6, 8, 2, masters=masters).double()
        ref = _as_torch_lstm(layer)
        x = torch.randn(7, 3, 6, dtype=torch.float64)
        (layer(x, force_master_ones=True)[0] ** 2).sum().backward()
        (ref(x)[0] ** 2).sum().backward()
        ours = {
            "weight_ih_l0": layer.ih.weight.grad,
            "weight_hh_l0": layer.hh.weight.grad,
            "bias_ih_l0": layer.ih.bias.grad,
            "bias_hh_l0": layer.hh.bias.grad,
        }
        for name, grad in ours.items():
            torch.testing.assert_close(
                _gate_rows_in_torch_order(layer, grad), getattr(ref, name).grad, rtol=0, atol=TOL
            )


def _gate_rows_in_torch_order(layer: RecurrentLayer, t: torch.Tensor) -> torch.Tensor:
    H, m = layer.hidden_size, layer.n_master
    o, g, i, f = (t[m + k * H : m + (k + 1) * H] for k in range(4))
    return torch.cat([i, f, g, o])
