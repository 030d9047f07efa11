"""What a researcher reads first: `study results` one row per configuration (never an average of
two), and the findings block (the CLI, the report and the app print the same one), every figure
recomputed here from the raw Parquet files, read one file at a time."""

import json
import math
import re

import pytest
from conftest import raw_rows, synthetic_spec_dict

from study.cli import main
from study.engine.lineage import RunContext
from study.engine.spec import lineage_spec_from_dict
from study.lake.recorder import run_to_lake

T95 = {1: 12.706, 2: 4.303, 3: 3.182}  # two-sided 95% Student t quantiles


def band(values):
    """Mean and 95% t interval of `values`, by hand."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = T95[n - 1] * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def by_config(lake, study):
    """Trunk rows of each configuration (its lineage config without the seed), from raw files."""
    configs = {}
    for lin in raw_rows(lake, "lineages", study):
        if lin["branch"] is None and lin["status"] == "finished":
            cfg = json.loads(lin["config_json"])
            cfg.pop("seed")
            cfg["data"].pop("root", None)
            configs.setdefault(json.dumps(cfg, sort_keys=True), set()).add(lin["trial_id"])
    rows = raw_rows(lake, "rounds", study)
    return {
        cfg: [r for r in rows if r["trial_id"] in trials and r["branch"] is None] for cfg, trials in configs.items()
    }


def ticket(rows, tolerance=0.01):
    """(round, seed-mean % left, per-seed test accuracies) of the sparsest round whose seed-mean
    validation accuracy is within `tolerance` of the dense round's."""
    rounds = sorted({r["round"] for r in rows})
    mean = {k: sum(r["val_acc"] for r in rows if r["round"] == k) / 2 for k in rounds}
    left = {k: sum(r["remaining_pct"] for r in rows if r["round"] == k) / 2 for k in rounds}
    ok = [k for k in rounds if mean[k] >= mean[0] - tolerance]
    best = min(ok, key=lambda k: (left[k], k))
    return best, left[best], [r["test_acc"] for r in rows if r["round"] == best]


@pytest.fixture(scope="module")
def two_lrs(tmp_path_factory):
    """Two configurations of one strategy (imp at two learning rates), two seeds each."""
    lake = tmp_path_factory.mktemp("two_lrs")
    for lr in (1e-3, 4e-3):
        for seed in (0, 1):
            spec = synthetic_spec_dict(seed=seed, rounds=2, train={"lr": lr})
            run_to_lake(lineage_spec_from_dict(spec), lake, study="lrs", context=RunContext(threads=1))
    return lake


def test_results_shows_each_configuration_of_a_strategy_and_averages_neither(two_lrs, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    assert main(["results", "--results", str(two_lrs), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["configurations"]
    assert sorted(r["configuration"] for r in rows) == ["imp lr=1e-3", "imp lr=4e-3"]
    configs = by_config(two_lrs, "lrs")
    assert len(configs) == 2
    for cfg, raw in configs.items():
        lr = json.loads(cfg)["train"]["lr"]
        (row,) = [r for r in rows if r["configuration"] == f"imp lr={'1e-3' if lr == 1e-3 else '4e-3'}"]
        dense = [r["test_acc"] for r in raw if r["round"] == 0]
        assert len(dense) == 2 and row["dense test acc"] == pytest.approx(sum(dense) / 2, abs=1e-12)
        round_, left, tests = ticket(raw)
        mean, lo, hi = band(tests)
        assert row["ticket round"] == round_ and row["ticket % left (val)"] == pytest.approx(left, abs=1e-9)
        assert row["ticket test acc"] == pytest.approx(mean, abs=1e-12)
        assert (row["test 95% lo"], row["test 95% hi"]) == (pytest.approx(lo, abs=1e-9), pytest.approx(hi, abs=1e-9))
        assert row["lineages"] == "2 finished"
    every = [r["test_acc"] for raw in configs.values() for r in raw if r["round"] == 0]
    assert all(r["dense test acc"] != pytest.approx(sum(every) / 4, abs=1e-6) for r in rows), "nothing pooled"
    # the table a person reads at 120 columns: both names whole, no line wider than the terminal
    assert main(["results", "--results", str(two_lrs)]) == 0
    out = capsys.readouterr().out
    assert "imp lr=1e-3" in out and "imp lr=4e-3" in out
    assert max(len(line) for line in out.splitlines()) <= 120


def findings_lines(lake, study, capsys, monkeypatch) -> list[str]:
    monkeypatch.setenv("COLUMNS", "400")  # one statement a line
    assert main(["results", "--results", str(lake), "--study", study]) == 0
    out = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(out) if line.startswith("Best configuration:"))
    return out[start : out.index("", start)]


NUMBER = r"([-+]?\d+\.\d+)"


def test_findings_of_a_study_with_paired_controls_are_the_raw_files_figures(app_lake, capsys, monkeypatch):
    """Study 'compare': imp (with a random_reinit branch) and random_prune, two seeds each, run
    lineage by lineage: the best configuration is the sparsest ticket within 1 point of dense."""
    lines = findings_lines(app_lake, "compare", capsys, monkeypatch)
    configs = by_config(app_lake, "compare")
    tickets = {json.loads(c)["strategy"]: ticket(rows) for c, rows in configs.items()}
    best = min(tickets, key=lambda s: (tickets[s][1], s))
    round_, left, tests = tickets[best]
    mean, lo, hi = band(tests)
    head = re.match(rf"Best configuration: (\S+) \(config \w{{6}}\), sparsest_within \(min\) = {NUMBER}%", lines[0])
    assert head and head.group(1) == best and float(head.group(2)) == pytest.approx(left, abs=0.05)
    there = re.search(rf"round (\d+), .*\): {NUMBER}, 95% CI \[{NUMBER}, {NUMBER}\], 2 seeds", lines[1])
    assert there and int(there.group(1)) == round_
    assert [float(there.group(i)) for i in (2, 3, 4)] == pytest.approx([mean, lo, hi], abs=5e-4)
    for strategy, (r, pct, values) in tickets.items():
        line = next(x for x in lines if x.strip().startswith(f"{strategy}:"))
        m, a, b = band(values)
        assert f"{pct:.3g}% left at round {r}" in line and f"test {m:.3f}, 95% CI [{a:.3f}, {b:.3f}], 2 seeds" in line
    # ticket − random re-initialisation, paired per seed at imp's ticket round
    imp_round = tickets["imp"][0]
    acc = {
        (r["seed"], str(r["strategy"])): r["test_acc"]
        for r in raw_rows(app_lake, "rounds", "compare")
        if r["round"] == imp_round
    }
    d, dlo, dhi = band([acc[(s, "imp")] - acc[(s, "imp.random_reinit")] for s in (0, 1)])
    paired = next(x for x in lines if x.startswith("Ticket − imp.random_reinit"))
    assert f"(round {imp_round}): {d:+.3f}, 95% CI [{dlo:+.3f}, {dhi:+.3f}], 2 seeds" in paired
    assert any(x.startswith("- 2 seeds per configuration") for x in lines), "two seeds: the caveat says so"


def test_findings_of_a_searched_study_name_the_best_trial(app_lake, capsys, monkeypatch):
    """Study 'searched' (Optuna: strategy and fc prune rate, two seeds per trial): the best trial is
    the one whose seed-mean validation reaches the sparsest round within 1 point of dense."""
    lines = findings_lines(app_lake, "searched", capsys, monkeypatch)
    trials = {}
    for lin in raw_rows(app_lake, "lineages", "searched"):
        if lin["branch"] is None:
            trials.setdefault(lin["optuna_trial_number"], set()).add(lin["trial_id"])
    rows = raw_rows(app_lake, "rounds", "searched")
    value = {n: ticket([r for r in rows if r["trial_id"] in ids])[1] for n, ids in trials.items()}
    best = min(value.values())
    head = re.match(rf"Best configuration: #(\d+) (\S+) fc=(\S+) \(config \w{{6}}\), .* = {NUMBER}%", lines[0])
    assert head and value[int(head.group(1))] == best
    assert float(head.group(4)) == pytest.approx(best, abs=0.05)
    cfg = json.loads(
        next(r for r in raw_rows(app_lake, "lineages", "searched") if r["optuna_trial_number"] == int(head.group(1)))[
            "config_json"
        ]
    )
    assert head.group(2) == cfg["strategy"]
    assert float(head.group(3)) == pytest.approx(cfg["prune"]["rates"]["fc"], rel=0.05), "2 significant digits"
    assert any("parameter importance from fewer than 20 trials" in x for x in lines)


def test_the_report_and_the_app_state_the_same_findings_and_names(app_lake, capsys, monkeypatch, tmp_path):
    """The block `study results --study` prints is the one on top of the report and of the app's
    Strategies page; the app's legend names each configuration by trial number and searched value."""
    import html

    from streamlit.testing.v1 import AppTest

    from study.app.screenshots import APP

    lines = findings_lines(app_lake, "searched", capsys, monkeypatch)
    out = tmp_path / "r.html"
    assert main(["report", "searched", "--results", str(app_lake), "--out", str(out)]) == 0
    text = out.read_text()
    block = html.unescape(
        text[text.index("<div class='findings'>") : text.index("</div></div>", text.index("<div class='findings'>"))]
    )
    statements = [x for x in lines if not x.startswith(("- ", "Caveats"))]
    assert all(x.strip() in block for x in statements), (statements, block)
    assert text.index("<h2>Findings</h2>") < text.index("<h2>Strategy comparison</h2>"), "findings first"

    monkeypatch.setenv("STUDY_RESULTS", str(app_lake))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state["filter_study"] = ["searched"]
    at.run()
    assert not at.exception
    shown = "\n".join(m.value for m in at.markdown).replace("\\", "")
    assert all(x.strip() in shown for x in statements)
    chart = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    names = next(
        layer["encoding"]["color"]["scale"]["domain"]
        for layer in chart["layer"]
        if "color" in layer.get("encoding", {})
    )
    assert len(names) == 4 and all(re.fullmatch(r"#\d (imp|random_reinit) fc=0\.\d+", n) for n in names), names
