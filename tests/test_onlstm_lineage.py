"""Lottery tickets for recurrent nets: every strategy on ON-LSTM, per-group sparsity, the
master-gate exemption, a tied embedding masked once, and the sequence metrics in the lake."""

import pytest
import torch

from study.engine.lineage import LineageHooks, RunContext, run_lineage
from study.engine.optim import LeanAdam
from study.engine.plan import plan_lineage
from study.engine.spec import lineage_spec_from_dict
from study.errors import SpecError

TINY = {
    "embedding": 16,
    "hidden": 32,
    "layers": 2,
    "chunk_size": 4,
    "dropout": 0.1,
    "dropout_hidden": 0.1,
    "dropout_input": 0.1,
    "dropconnect": 0.1,
}


def lm_spec(**kw):
    # 30 iterations: these tiny nets barely leave chance, so no degenerate check here
    raw = {
        "model": "onlstm_lm",
        "dataset": "pcfg",
        "strategy": "imp",
        "rounds": 2,
        "model_args": dict(TINY),
        "chance_margin": None,
        "train": {"lr": 3e-3, "batch_size": 16, "iterations": 30, "eval_every": 15},
        "prune": {"scope": "global", "rate": 0.3},
        "data": {"synthetic_size": 400, "validation_size": 60},
    }
    for key, value in kw.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and isinstance(raw.get(key), dict) else value
    return lineage_spec_from_dict(raw)


@pytest.mark.parametrize(
    "strategy", ["imp", "lr_rewind", "finetune", "random_reinit", "random_prune", "oneshot", "snip", "grasp", "synflow"]
)
def test_every_strategy_runs_on_onlstm_with_sequence_metrics(strategy):
    scope = {"scope": "layerwise"} if strategy == "random_prune" else {}
    spec = lm_spec(
        strategy=strategy,
        rewind_iteration=5 if strategy in ("imp", "lr_rewind") else 0,
        prune={**scope, "rate": None} if scope else {},
    )
    plan = plan_lineage(spec)
    results = run_lineage(spec, context=RunContext(threads=1))
    assert [r.round for r in results] == plan.rounds
    last = results[-1]
    assert last.remaining_pct == pytest.approx(plan.remaining_pct(len(plan.rounds) - 1))
    assert last.test_perplexity > 1 and set(last.parse_f1) == {"layer1", "layer2"}
    assert {"right_branching", "left_branching", "balanced", "random", "grammar_perplexity"} <= set(
        last.parse_baselines
    )
    assert set(last.group_remaining_pct) == {"embedding", "ih_gates", "ih_master", "hh_gates", "hh_master"}


def test_master_gate_exemption_and_per_group_budgets():
    exempt = run_lineage(lm_spec(prune={"exempt": ["ih_master", "hh_master"]}), context=RunContext(threads=1))
    assert exempt[-1].group_remaining_pct["ih_master"] == 100.0 and exempt[-1].group_remaining_pct["hh_master"] == 100.0
    budgets = run_lineage(
        lm_spec(
            prune={
                "scope": "layerwise",
                "rate": None,
                "rates": {"embedding": 0.1, "ih_gates": 0.2, "hh_gates": 0.2, "ih_master": 0.5, "hh_master": 0.5},
            }
        ),
        context=RunContext(threads=1),
    )
    g = budgets[1].group_remaining_pct
    assert g["ih_master"] == pytest.approx(50.0, abs=0.5) and g["hh_gates"] == pytest.approx(80.0, abs=0.1)
    assert g["embedding"] == pytest.approx(90.0, abs=0.1)
    with pytest.raises(SpecError, match="has no 'conv' weights"):
        lm_spec(prune={"exempt": ["conv"]})


def test_tied_embedding_is_masked_once_and_stays_tied():
    seen = {}

    def on_reset(round_, model, mask):
        seen[round_] = (
            model.decoder.weight is model.encoder.weight,
            set(mask),
            mask["encoder.weight"].clone(),
            model.encoder.weight.detach().clone(),
        )

    run_lineage(lm_spec(), context=RunContext(threads=1), hooks=LineageHooks(on_reset=on_reset))
    tied, names, mask, weight = seen[2]
    assert tied and "decoder.weight" not in names
    assert 0 < int(mask.sum()) < mask.numel() and torch.count_nonzero(weight[~mask]) == 0


@pytest.mark.numerics
def test_recurrent_lineages_repeat_exactly_with_dropout():
    a = run_lineage(lm_spec(), context=RunContext(threads=1))
    b = run_lineage(lm_spec(), context=RunContext(threads=1))
    assert [(r.test_perplexity, r.parse_f1) for r in a] == [(r.test_perplexity, r.parse_f1) for r in b]


def test_lstm_baseline_has_no_distances_and_classifiers_report_accuracy_by_length():
    lstm = run_lineage(lm_spec(model="lstm_lm", rounds=1), context=RunContext(threads=1))
    assert lstm[0].parse_f1 is None and lstm[0].parse_baselines is not None
    assert "ih_master" not in lstm[1].group_remaining_pct
    logic = run_lineage(
        lineage_spec_from_dict(
            {
                "model": "onlstm_classifier",
                "dataset": "logical_inference",
                "rounds": 1,
                "chance_margin": None,
                "model_args": {"embedding": 16, "hidden": 32, "layers": 2, "chunk_size": 4},
                "train": {"lr": 3e-3, "batch_size": 32, "iterations": 20, "eval_every": 10},
                "data": {"synthetic_size": 300, "validation_size": 120},
            }
        ),
        context=RunContext(threads=1),
    )
    assert set(logic[1].accuracy_by_length) == {str(k) for k in range(1, 13)}
    # chance per operator count: the majority label's share of that count's test pairs, by hand
    from study.engine.data.sequences import logical_inference

    twelve = logical_inference(50, 10 + 12, 12, exact_ops=12)  # what the loader generates for 12 operators
    labels = [ex.label for ex in twelve]
    assert logic[1].chance_by_length["12"] == max(labels.count(c) for c in set(labels)) / 50
    assert logic[1].trained_max_length == 6, "trained on formulas of at most 6 operators"
    assert set(logic[1].parse_f1) == {"layer1", "layer2"} and "fc" in logic[1].group_remaining_pct


def test_masked_gradients_keep_optimizer_averages_zero():
    w = torch.randn(6, 4, requires_grad=True)
    keep = torch.rand(6, 4) < 0.5
    opt = LeanAdam([w], lr=1e-2)
    for _ in range(5):
        (w**2).sum().backward()
        w.grad.mul_(keep)  # what the training loop does before every step
        opt.step()
        opt.zero_grad()
    assert torch.count_nonzero(opt.exp_avgs[0][~keep]) == 0 and torch.count_nonzero(opt.exp_avg_sqs[0][~keep]) == 0


def test_sequence_rows_land_in_the_lake(tmp_path):
    import duckdb

    from study.lake.reader import duckdb_rounds_sql, read_rounds
    from study.lake.recorder import run_to_lake

    run_to_lake(lm_spec(rounds=1), tmp_path, study="seq", context=RunContext(threads=1))
    rows = read_rounds(tmp_path).table.to_pylist()
    assert rows[1]["test_perplexity"] > 1 and dict(rows[1]["parse_f1"]).keys() == {"layer1", "layer2"}
    assert rows[1]["parse_examples_json"].startswith("[")
    got = (
        duckdb.connect()
        .sql(f"select group_remaining_pct['hh_master'] from {duckdb_rounds_sql(tmp_path)} where round = 1")
        .fetchall()[0][0]
    )
    assert 0 < got <= 100


def test_ptb_format_text_language_model(tmp_path):
    from study.engine.data.sequences import pcfg_corpus

    for name, seed, n in (("train.txt", 1, 300), ("valid.txt", 2, 40), ("test.txt", 3, 40)):
        (tmp_path / name).write_text("\n".join(" ".join(s.tokens) for s in pcfg_corpus(n, seed)) + "\n")
    spec = lineage_spec_from_dict(
        {
            "model": "onlstm_lm",
            "dataset": "text",
            "rounds": 1,
            "model_args": dict(TINY),
            "chance_margin": None,
            "train": {"lr": 3e-3, "batch_size": 16, "iterations": 20, "eval_every": 10},
            "prune": {"scope": "global", "rate": 0.3},
            "data": {"root": str(tmp_path)},
        }
    )
    results = run_lineage(spec, context=RunContext(threads=1))
    assert results[1].test_perplexity > 1 and results[1].parse_f1 is None, "no gold trees in plain text"
    with pytest.raises(SpecError, match="needs data.root"):
        plan_lineage(lineage_spec_from_dict({**spec.to_dict(), "data": {}}))
    (tmp_path / "valid.txt").unlink()
    with pytest.raises(SpecError, match="valid.txt is missing"):
        run_lineage(spec, context=RunContext(threads=1))
