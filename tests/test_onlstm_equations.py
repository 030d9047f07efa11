"""RecurrentLayer (ON-LSTM) against a step-by-step transcription of Shen et al. (ICLR 2019), eqs. 9-14:

    f̃_t = cumax(W_f̃ x_t + U_f̃ h_{t-1} + b_f̃)        ĩ_t = 1 - cumax(W_ĩ x_t + U_ĩ h_{t-1} + b_ĩ)
    ω_t = f̃_t ∘ ĩ_t
    f̂_t = f_t ∘ ω_t + (f̃_t - ω_t)                    î_t = i_t ∘ ω_t + (ĩ_t - ω_t)
    c_t = f̂_t ∘ c_{t-1} + î_t ∘ ĉ_t                   h_t = o_t ∘ tanh(c_t)

with cumax(x) = cumsum(softmax(x)), the master gates computed per chunk and each chunk's value
shared by its chunk_size consecutive units, f, i, o the usual sigmoid gates and ĉ the tanh cell
candidate, and the per-token distance d_t = 1 - mean(f̃_t).
"""

import pytest
import torch

from study.engine.models.onlstm import RecurrentLayer

pytestmark = pytest.mark.numerics  # `make test-portability` runs it under every CPU dispatch level

INPUT, HIDDEN, CHUNK, STEPS, BATCH = 5, 12, 3, 7, 3
N = HIDDEN // CHUNK


def paper_onlstm(layer: RecurrentLayer, x, h, c):
    """The equations above, one time step at a time. Returns outputs, (h, c), distances and the
    master gates of every step."""
    W, U = layer.ih.weight, layer.hh.weight
    b = layer.ih.bias + layer.hh.bias
    # fused rows: master forget, master input (N each), then output, cell, input, forget (HIDDEN each)
    rows, start = {}, 0
    for name, size in [("mf", N), ("mi", N), ("o", HIDDEN), ("cell", HIDDEN), ("i", HIDDEN), ("f", HIDDEN)]:
        rows[name] = slice(start, start + size)
        start += size

    def affine(name, x_t, h_prev):
        r = rows[name]
        return x_t @ W[r].T + h_prev @ U[r].T + b[r]

    def cumax(v):
        return torch.cumsum(torch.softmax(v, dim=-1), dim=-1)

    def per_unit(v):  # chunk k covers units k*CHUNK .. (k+1)*CHUNK - 1
        return v.repeat_interleave(CHUNK, dim=-1)

    outputs, distances, masters = [], [], []
    for t in range(len(x)):
        master_f = cumax(affine("mf", x[t], h))
        master_i = 1 - cumax(affine("mi", x[t], h))
        f = torch.sigmoid(affine("f", x[t], h))
        i = torch.sigmoid(affine("i", x[t], h))
        o = torch.sigmoid(affine("o", x[t], h))
        c_hat = torch.tanh(affine("cell", x[t], h))
        mf, mi = per_unit(master_f), per_unit(master_i)
        omega = mf * mi
        f_hat = f * omega + (mf - omega)
        i_hat = i * omega + (mi - omega)
        c = f_hat * c + i_hat * c_hat
        h = o * torch.tanh(c)
        outputs.append(h)
        distances.append(1 - master_f.mean(-1))
        masters.append((master_f, master_i))
    return torch.stack(outputs), (h, c), torch.stack(distances), masters


def random_layer(seed: int = 0) -> RecurrentLayer:
    g = torch.Generator().manual_seed(seed)
    layer = RecurrentLayer(INPUT, HIDDEN, CHUNK, masters=True).double().eval()
    with torch.no_grad():  # std 0.6: master logits spread enough to be far from uniform, not saturated
        for p in layer.parameters():
            p.copy_(0.6 * torch.randn(p.shape, generator=g, dtype=torch.float64))
    return layer


def inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(STEPS, BATCH, INPUT, generator=g, dtype=torch.float64)
    h0 = 0.5 * torch.randn(BATCH, HIDDEN, generator=g, dtype=torch.float64)
    c0 = torch.randn(BATCH, HIDDEN, generator=g, dtype=torch.float64)
    return x, h0, c0


def test_layer_matches_the_paper_equations_step_by_step():
    layer = random_layer()
    x, h0, c0 = inputs()
    with torch.no_grad():
        for state in (None, (h0, c0)):
            h_init, c_init = state or (torch.zeros(BATCH, HIDDEN, dtype=torch.float64),) * 2
            out, (h, c), d = layer(x, state)
            ref_out, (ref_h, ref_c), ref_d, masters = paper_onlstm(layer, x, h_init, c_init)
            assert out.shape == (STEPS, BATCH, HIDDEN) and d.shape == (STEPS, BATCH)
            torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-5)
            torch.testing.assert_close(h, ref_h, rtol=0, atol=1e-5)
            torch.testing.assert_close(c, ref_c, rtol=0, atol=1e-5)
            torch.testing.assert_close(d, ref_d, rtol=0, atol=1e-5)
            # the masters are far from trivial: many entries strictly inside (0.05, 0.95), and the
            # overlap ω is neither empty nor everything
            mf = torch.stack([m[0] for m in masters])
            mi = torch.stack([m[1] for m in masters])
            for gate in (mf, mi):
                assert ((gate > 0.05) & (gate < 0.95)).double().mean() > 0.3
            omega = mf * mi
            assert omega.max() > 0.3 and omega.min() < 0.05
            assert d.std() > 0.05, "distances vary across tokens"


def test_master_gates_matter():
    layer = random_layer()
    x, h0, c0 = inputs()
    with torch.no_grad():
        with_masters = layer(x, (h0, c0))[0]
        without = layer(x, (h0, c0), force_master_ones=True)[0]
    assert (with_masters - without).abs().max() > 0.1


def test_one_step_by_hand():
    # Zero weights and biases, 2 chunks of 1 unit: master logits (0, 0) give softmax (½, ½), so
    # f̃ = (½, 1), ĩ = (½, 0), ω = (¼, 0); f = i = o = σ(0) = ½ and ĉ = tanh(0) = 0.
    # f̂ = ½·ω + f̃ - ω = (⅜, 1); with c_0 = (1, 1): c_1 = f̂ ∘ c_0 = (0.375, 1), h_1 = ½ tanh(c_1),
    # d_1 = 1 - mean(½, 1) = 0.25: the high-ranking chunk keeps its memory, the low one mostly forgets.
    layer = RecurrentLayer(1, 2, 1, masters=True).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.zero_()
        out, (h, c), d = layer(
            torch.zeros(1, 1, 1, dtype=torch.float64),
            (torch.zeros(1, 2, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64)),
        )
    expected_c = torch.tensor([[0.375, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(c, expected_c)
    torch.testing.assert_close(h, 0.5 * torch.tanh(expected_c))
    torch.testing.assert_close(out[0], h)
    torch.testing.assert_close(d, torch.tensor([[0.25]], dtype=torch.float64))
