"""SNIP, GraSP and SynFlow scores checked against closed-form values on tiny bias-free nets.

Every expected number is computed here from the tiny net's explicit gradient formulas (or on
paper, as literals), never by the code under test or by autograd.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from study.engine import pruning_at_init
from study.engine.models.slots import Slot
from study.engine.pruning import dense_mask
from study.engine.pruning_at_init import GRASP_TEMPERATURE, SCORE_BATCHES, grasp_scores, snip_scores, synflow_mask

pytestmark = pytest.mark.numerics  # `make test-portability` runs it under every CPU dispatch level

PARAMS = ["0.weight", "2.weight"]
SLOTS = {"fc1": Slot("0.weight", None, "fc"), "fc2": Slot("2.weight", None, "output")}


def tiny_net(w1, w2, activation: nn.Module | None = None) -> nn.Sequential:
    """x -> W1 x -> activation -> W2 (.), bias-free, float64."""
    w1, w2 = torch.as_tensor(w1, dtype=torch.float64), torch.as_tensor(w2, dtype=torch.float64)
    net = nn.Sequential(
        nn.Linear(w1.shape[1], w1.shape[0], bias=False),
        activation or nn.Identity(),
        nn.Linear(w2.shape[1], w2.shape[0], bias=False),
    ).double()
    with torch.no_grad():
        net[0].weight.copy_(w1)
        net[2].weight.copy_(w2)
    return net


class SquaredErrorTask:
    """L = mean ½(f(x)/T - y)² over fixed batches."""

    def __init__(self, batches):
        self.batches = [
            (torch.tensor([[x]], dtype=torch.float64), torch.tensor([[y]], dtype=torch.float64)) for x, y in batches
        ]

    def batch(self, i):
        return self.batches[i]

    def loss(self, model, x, y, temperature=1.0):
        return (0.5 * (model(x) / temperature - y) ** 2).mean()


class CrossEntropyTask:
    """Cross-entropy of f(x)/T over fixed batches; SynFlow reads f(all-ones)."""

    def __init__(self, batches, inputs: int = 3):
        self.batches, self.inputs = batches, inputs

    def batch(self, i):
        return self.batches[i]

    def loss(self, model, x, y, temperature=1.0):
        return F.cross_entropy(model(x) / temperature, y)

    def synflow_output(self, model):
        return model(torch.ones(1, self.inputs, dtype=next(model.parameters()).dtype))


# The 1-2-1 linear net of the literal cases: W1 = (a1, a2)ᵀ = (1, 2)ᵀ, W2 = (b1, b2) = (1, -1), so
# f(x) = s·x with s = a1·b1 + a2·b2 = -1 and ∇s = (∂s/∂a, ∂s/∂b) = (b1, b2, a1, a2) = (1, -1, 1, 2).
A, B = [[1.0], [2.0]], [[1.0, -1.0]]


def test_snip_literal_on_a_one_two_one_net():
    assert SCORE_BATCHES == 4
    # δ = f(x) - y = -x - y per batch: (x, y) = (1, 0), (1, -4), (-1, 2), (2, 1) give δ·x = -1, 3, 1, -6,
    # Σ δ·x = -3. ∂L/∂a_j = Σδx·b_j and ∂L/∂b_j = Σδx·a_j, so θ ⊙ ∂L/∂θ = a_j·b_j·Σδx = (1, -2)·(-3)
    # in both layers. (The abs is of the batch-summed gradient: Σ of per-batch |.| would give (11, 22).)
    task = SquaredErrorTask([(1, 0), (1, -4), (-1, 2), (2, 1)])
    scores = snip_scores(tiny_net(A, B), task, PARAMS)
    torch.testing.assert_close(scores["0.weight"], torch.tensor([[3.0], [6.0]], dtype=torch.float64))
    torch.testing.assert_close(scores["2.weight"], torch.tensor([[3.0, 6.0]], dtype=torch.float64))


def test_grasp_literal_on_a_one_two_one_net():
    # x = T makes f(x)/T = s; y = 1, so every batch has L = ½(s - 1)², u = s - 1 = -2, U = Σu = -8.
    # g = U·∇s; H = Σ(∇s∇sᵀ + u·∇²s) where ∇²s swaps a_j <-> b_j, so
    # Hg = U·(4|∇s|²∇s + U·swap(∇s)) = -8·((28, -28, 28, 56) - 8·(1, 2, 1, -1)) = (-160, 352, -160, -512);
    # θ ⊙ Hg = (-160, 704, -160, 512), which sums to 896.
    task = SquaredErrorTask([(GRASP_TEMPERATURE, 1)] * SCORE_BATCHES)
    scores = grasp_scores(tiny_net(A, B), task, PARAMS)
    torch.testing.assert_close(scores["0.weight"], torch.tensor([[-160.0], [704.0]], dtype=torch.float64) / 896)
    torch.testing.assert_close(scores["2.weight"], torch.tensor([[-160.0, 512.0]], dtype=torch.float64) / 896)


# A 3-2-2 ReLU net with cross-entropy: the closed-form cases.
W1 = [[1.0, -2.0, 0.5], [-1.0, 1.0, 2.0]]
W2 = [[2.0, -1.0], [0.5, 1.0]]


def ce_batches():
    g = torch.Generator().manual_seed(0)
    return [
        (torch.randn(3, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (3,), generator=g))
        for _ in range(SCORE_BATCHES)
    ]


def ce_gradients(w1, w2, batches, temperature):
    """Σ over batches of ∂L/∂W1, ∂L/∂W2 for L = CE(W2 relu(W1 x) / T, y), from the chain rule by hand:
    δz = (softmax(z/T) - onehot(y)) / (T·B), ∂L/∂W2 = δzᵀh, ∂L/∂W1 = (δz W2 ⊙ [W1x > 0])ᵀ x."""
    d1, d2 = torch.zeros_like(w1), torch.zeros_like(w2)
    for x, y in batches:
        pre = x @ w1.T
        h = pre.clamp(min=0)
        z = h @ w2.T
        dz = (torch.softmax(z / temperature, dim=1) - F.one_hot(y, 2)) / (temperature * len(x))
        d2 += dz.T @ h
        d1 += ((dz @ w2) * (pre > 0)).T @ x
    return d1, d2


def test_ce_batches_stay_off_the_relu_kinks():
    pre = torch.cat([x for x, _ in ce_batches()]) @ torch.tensor(W1, dtype=torch.float64).T
    assert pre.abs().min() > 0.05, "finite differences below must not cross a kink"
    assert (pre < 0).any() and (pre > 0).any(), "both ReLU branches are exercised"


def test_snip_is_abs_theta_times_the_batch_summed_gradient():
    w1, w2 = torch.tensor(W1, dtype=torch.float64), torch.tensor(W2, dtype=torch.float64)
    batches = ce_batches()
    d1, d2 = ce_gradients(w1, w2, batches, temperature=1.0)
    scores = snip_scores(tiny_net(W1, W2, nn.ReLU()), CrossEntropyTask(batches), PARAMS)
    torch.testing.assert_close(scores["0.weight"], (w1 * d1).abs(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(scores["2.weight"], (w2 * d2).abs(), rtol=1e-10, atol=1e-12)


def test_grasp_is_theta_times_hessian_gradient_product_at_temperature():
    w1, w2 = torch.tensor(W1, dtype=torch.float64), torch.tensor(W2, dtype=torch.float64)
    batches = ce_batches()
    T = GRASP_TEMPERATURE
    g1, g2 = ce_gradients(w1, w2, batches, T)
    # Hg = d/dε ∇L(θ + εg) at ε = 0, by a central difference of the hand-written gradient.
    eps = 1e-4 / float(torch.cat([g1.flatten(), g2.flatten()]).norm())
    p1, p2 = ce_gradients(w1 + eps * g1, w2 + eps * g2, batches, T)
    m1, m2 = ce_gradients(w1 - eps * g1, w2 - eps * g2, batches, T)
    s1, s2 = w1 * (p1 - m1) / (2 * eps), w2 * (p2 - m2) / (2 * eps)
    total = (s1.sum() + s2.sum()).abs()
    assert total > 0.1 * (s1.abs().sum() + s2.abs().sum()), "a well-conditioned normaliser"
    norm = total + 1e-10  # |Σ θ ⊙ Hg| + ε, ε = 1e-10 as in GraSP's reference code (θ ⊙ Hg is ~1e-5 at T = 200)
    scores = grasp_scores(tiny_net(W1, W2, nn.ReLU()), CrossEntropyTask(batches), PARAMS)
    torch.testing.assert_close(scores["0.weight"], s1 / norm, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(scores["2.weight"], s2 / norm, rtol=1e-6, atol=1e-8)
    assert abs(abs(float(sum(s.sum() for s in scores.values()))) - 1) < 1e-5


# SynFlow net: W1 has row |.|-sums (6, 5.5), W2 has column |.|-sums (5, 2.5). With an all-ones input
# and |θ|, R = 1ᵀ|W2||W1|1, so ∂R/∂W1[j,k] = Σ_i |W2[i,j]| and ∂R/∂W2[i,j] = Σ_k |W1[j,k]|:
# score(W1[j,k]) = |W1[j,k]|·colsum_j|W2|, score(W2[i,j]) = |W2[i,j]|·rowsum_j|W1|.
SW1 = [[1.0, -2.0, 3.0], [3.0, 1.0, -1.5]]
SW2 = [[3.0, 1.0], [-2.0, 1.5]]
S1 = torch.tensor([[5.0, 10.0, 15.0], [7.5, 2.5, 3.75]], dtype=torch.float64)
S2 = torch.tensor([[18.0, 5.5], [12.0, 8.25]], dtype=torch.float64)


def test_synflow_literal_scores_match_the_path_formula():
    w1, w2 = torch.tensor(SW1, dtype=torch.float64).abs(), torch.tensor(SW2, dtype=torch.float64).abs()
    torch.testing.assert_close(w1 * w2.sum(0)[:, None], S1)
    torch.testing.assert_close(w2 * w1.sum(1)[None, :], S2)
    # synaptic flow is conserved at each hidden unit: in = out
    torch.testing.assert_close(S1.sum(1), S2.sum(0))


def test_one_round_synflow_keeps_the_top_path_scores_for_every_count(monkeypatch):
    monkeypatch.setattr(pruning_at_init, "SYNFLOW_ITERATIONS", 1)
    model = tiny_net(SW1, SW2, nn.ReLU())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    flat = torch.cat([S1.flatten(), S2.flatten()])
    for k in range(1, flat.numel()):
        kept = torch.zeros(flat.numel(), dtype=torch.bool)
        kept[torch.argsort(flat, descending=True)[:k]] = True
        mask = synflow_mask(
            model, CrossEntropyTask([]), PARAMS, dense_mask(model, PARAMS), SLOTS, {"all": ["fc1", "fc2"]}, {"all": k}
        )
        assert torch.equal(mask["0.weight"], kept[:6].view(2, 3)), f"keep {k}: W1 mask {mask['0.weight']}"
        assert torch.equal(mask["2.weight"], kept[6:].view(2, 2)), f"keep {k}: W2 mask {mask['2.weight']}"
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters()), "the model is not touched"


def test_iterative_synflow_keeps_the_strongest_path_where_magnitude_collapses_a_layer():
    # Layer 1 is 100x layer 2 in magnitude: global magnitude pruning to 2 weights keeps two weights of
    # W1 and none of W2 (a dead net). SynFlow scores are path sums, so it keeps the strongest path
    # in0 -> h0 -> out0 (|10·0.1| = 1, next best 0.2): one weight per layer.
    w1, w2 = [[10.0, -1.0, 1.0], [1.0, 1.0, -1.0]], [[0.1, -0.01], [-0.02, 0.01]]
    model = tiny_net(w1, w2, nn.ReLU())
    mask = synflow_mask(
        model, CrossEntropyTask([]), PARAMS, dense_mask(model, PARAMS), SLOTS, {"all": ["fc1", "fc2"]}, {"all": 2}
    )
    assert torch.equal(mask["0.weight"], torch.tensor([[True, False, False], [False, False, False]]))
    assert torch.equal(mask["2.weight"], torch.tensor([[True, False], [False, False]]))


def test_iterative_synflow_honours_exact_counts():
    model = tiny_net(SW1, SW2, nn.ReLU())
    task = CrossEntropyTask([])
    dense = dense_mask(model, PARAMS)
    layerwise = synflow_mask(model, task, PARAMS, dense, SLOTS, {"fc1": ["fc1"], "fc2": ["fc2"]}, {"fc1": 4, "fc2": 3})
    assert (int(layerwise["0.weight"].sum()), int(layerwise["2.weight"].sum())) == (4, 3)
    # W1 drops its lowest (2.5, W1[1,1]) at round 22, W2 its lowest at round 47: W2[0,1], now 1·4.5;
    # at round 71 W1 drops W1[1,2] (1.5·colsum 1.5 = 2.25). Both match the one-shot order of S1, S2.
    assert torch.equal(layerwise["0.weight"], torch.tensor([[True, True, True], [True, False, False]]))
    assert torch.equal(layerwise["2.weight"], torch.tensor([[True, False], [True, True]]))
    for k in (1, 5, 9):
        mask = synflow_mask(model, task, PARAMS, dense, SLOTS, {"all": ["fc1", "fc2"]}, {"all": k})
        assert sum(int(m.sum()) for m in mask.values()) == k
        assert mask["0.weight"].dtype == torch.bool and mask["0.weight"].shape == (2, 3)
