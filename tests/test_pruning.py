import torch

from study.engine.models import build_model, prunable_layers, prunable_slots
from study.engine.pruning import (
    dense_mask,
    keep_top,
    magnitude_scores,
    next_keep,
    planned_counts,
    random_scores,
    remaining,
)


def lenet():
    return build_model("lenet_300_100", (1, 28, 28), 10, seed=0)


def test_layerwise_counts_are_exact_to_the_weight():
    model = lenet()
    layers = list(prunable_layers(model))
    groups = {n: [n] for n in layers}
    rates = {"fc1.weight": 0.2, "fc2.weight": 0.2, "fc3.weight": 0.1}
    sizes = {n: p.numel() for n, p in model.named_parameters() if n in layers}
    counts = planned_counts(sizes, groups, rates, 3)
    assert counts[1] == {"fc1.weight": 188160, "fc2.weight": 24000, "fc3.weight": 900}
    assert counts[3]["fc3.weight"] == 729
    mask = dense_mask(model, layers)
    for r in (1, 2, 3):
        new = keep_top(magnitude_scores(model, layers), mask, prunable_slots(model), groups, counts[r])
        assert {n: int(m.sum()) for n, m in new.items()} == counts[r]
        assert all(not (new[n] & ~mask[n]).any() for n in layers), "masks are nested"
        mask = new


def test_magnitude_pruning_removes_the_smallest_surviving_weights():
    model = lenet()
    layers = list(prunable_layers(model))
    mask = dense_mask(model, layers)
    new = keep_top(
        magnitude_scores(model, layers),
        mask,
        prunable_slots(model),
        {n: [n] for n in layers},
        {n: next_keep(int(m.sum()), 0.5) for n, m in mask.items()},
    )
    w = model.fc2.weight.detach().abs()
    assert w[new["fc2.weight"]].min() >= w[~new["fc2.weight"]].max()


def test_global_pruning_uses_one_threshold_and_an_output_rate_of_its_own():
    model = lenet()
    layers = prunable_layers(model)
    pooled = [n for n, k in layers.items() if k != "output"]
    groups = {"global": pooled, "output": ["fc3.weight"]}
    mask = dense_mask(model, layers)
    total = sum(int(mask[n].sum()) for n in pooled)
    keep = {"global": next_keep(total, 0.3), "output": next_keep(1000, 0.1)}
    new = keep_top(magnitude_scores(model, layers), mask, prunable_slots(model), groups, keep)
    assert sum(int(new[n].sum()) for n in pooled) == keep["global"] and int(new["fc3.weight"].sum()) == 900
    kept = torch.cat([model.get_parameter(n).detach().abs()[new[n]] for n in pooled])
    cut = torch.cat([model.get_parameter(n).detach().abs()[~new[n]] for n in pooled])
    assert kept.min() >= cut.max()
    per_layer = remaining(new, prunable_slots(model))[1]
    assert per_layer["fc1.weight"] != per_layer["fc2.weight"], "global pruning sets different per-layer rates"


def test_random_pruning_keeps_counts_and_is_seeded():
    model = lenet()
    layers = list(prunable_layers(model))
    mask = dense_mask(model, layers)
    keep = {n: int(m.sum()) // 3 for n, m in mask.items()}
    groups = {n: [n] for n in layers}
    slots = prunable_slots(model)
    a = keep_top(random_scores(mask, torch.Generator().manual_seed(1)), mask, slots, groups, keep)
    b = keep_top(random_scores(mask, torch.Generator().manual_seed(1)), mask, slots, groups, keep)
    c = keep_top(random_scores(mask, torch.Generator().manual_seed(2)), mask, slots, groups, keep)
    assert all(torch.equal(a[n], b[n]) for n in layers)
    assert all(int(c[n].sum()) == keep[n] for n in layers) and not torch.equal(a["fc1.weight"], c["fc1.weight"])


def test_biases_are_never_in_a_mask():
    model = build_model("resnet20", (3, 32, 32), 10, seed=0)
    layers = prunable_layers(model)
    assert all(n.endswith(".weight") and model.get_parameter(n).dim() > 1 for n in layers)
    assert not any("bn" in n or "bias" in n for n in layers)


def test_row_block_slots_prune_master_and_gate_rows_separately():
    from study.engine.models.onlstm import RNNLanguageModel

    model = RNNLanguageModel(vocab=30, embedding=16, hidden=32, layers=2, chunk_size=4)
    slots = prunable_slots(model)
    assert {s.kind for s in slots.values()} == {"embedding", "ih_gates", "ih_master", "hh_gates", "hh_master"}
    master = slots["layer0.hh.master"]
    assert master.param == "rnn.layers.0.hh.weight" and master.rows == slice(0, 16)
    params = list(dict.fromkeys(s.param for s in slots.values()))
    mask = dense_mask(model, params)
    groups = {n: [n] for n in slots if slots[n].kind != "hh_master"}  # hh masters exempt
    keep = {n: next_keep(mask[slots[n].param][slots[n].rows or slice(None)].numel(), 0.5) for n in groups}
    new = keep_top(magnitude_scores(model, params), mask, slots, groups, keep)
    assert bool(new["rnn.layers.0.hh.weight"][0:16].all()), "exempt master rows untouched"
    assert int(new["rnn.layers.0.hh.weight"][16:].sum()) == keep["layer0.hh.gates"]
    overall, per_slot, per_kind = remaining(new, slots)
    assert per_slot["layer0.hh.master"] == 100.0 and abs(per_slot["layer0.ih.master"] - 50.0) < 0.5
    assert set(per_kind) == {"embedding", "ih_gates", "ih_master", "hh_gates", "hh_master"} and 50 < overall < 60
