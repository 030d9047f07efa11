"""`study report` (issue 13, part 6): one static HTML file per study, opened from disk in headless
Chromium with every network request refused; every chart must render."""

from pathlib import Path

import pytest

from study.app.screenshots import CHROMIUM, CHROMIUM_ARGS
from study.cli import main

pytestmark = pytest.mark.timeout(300)


def open_offline(paths: list[Path]) -> list[dict]:
    """Load each file with the network cut off; wait for every chart to finish; count what drew."""
    from playwright.sync_api import sync_playwright

    seen = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        for path in paths:
            requests, errors = [], []
            page = browser.new_page()
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)

            def refuse(route, requests=requests):
                if not route.request.url.startswith("file://"):
                    requests.append(route.request.url)
                    route.abort()
                else:
                    route.continue_()

            page.route("**/*", refuse)
            page.goto(path.resolve().as_uri())
            page.wait_for_function(
                "() => [...document.querySelectorAll('.chart')].every(c => c.dataset.rendered)", timeout=60_000
            )
            charts = page.eval_on_selector_all(
                ".chart",
                # marks drawn from data: a line, area, point or cell path (axes, rules and empty groups do not count)
                "cs => cs.map(c => ({id: c.id, state: c.dataset.rendered, marks: c.querySelectorAll("
                "'svg .mark-symbol path, svg .mark-line path, svg .mark-area path, svg .mark-rect path').length}))",
            )
            titles = page.eval_on_selector_all("section h2", "hs => hs.map(h => h.textContent)")
            seen.append({"charts": charts, "requests": requests, "errors": errors, "sections": titles})
            page.close()
        browser.close()
    return seen


def test_the_report_opens_offline_and_every_chart_renders(app_lake, tmp_path, capsys):
    """A study with branches and masks, one with instability, a searched one and one of sequence models:
    findings first, then what the study measured, then one list of what it did not."""
    studies = {"compare": 6, "stability": 6, "searched": 10, "sequences": 8}  # the charts each must draw at least
    measured = {
        "compare": ["Paired controls", "Mask overlap", "Cost"],
        "stability": ["Instability", "Mask overlap", "Cost"],
        "searched": ["Search", "Mask overlap", "Cost"],
        "sequences": ["Mask overlap", "Cost", "Sequence models"],
    }
    paths = []
    for study in studies:
        out = tmp_path / f"{study}.html"
        assert main(["report", study, "--results", str(app_lake), "--out", str(out)]) == 0
        assert "opens offline" in capsys.readouterr().out
        text = out.read_text()
        assert "<script src=" not in text and "http://" not in text.split("<script>")[0], "nothing fetched"
        paths.append(out)
    for (study, at_least), seen in zip(studies.items(), open_offline(paths), strict=True):
        assert seen["requests"] == [] and seen["errors"] == [], study
        assert len(seen["charts"]) >= at_least, study
        for chart in seen["charts"]:
            assert chart["state"] == "yes" and chart["marks"] > 0, (study, chart)
        assert seen["sections"] == ["Findings", "Strategy comparison", *measured[study], "Not measured here"], study


def test_the_report_quotes_the_lake_numbers(app_lake, tmp_path):
    """The paired table in the report holds the numbers the lake's raw files give."""
    import pandas as pd
    from conftest import raw_rows

    out = tmp_path / "compare.html"
    assert main(["report", "compare", "--results", str(app_lake), "--out", str(out)]) == 0
    tables = [pd.DataFrame(rows[1:], columns=rows[0]) for rows in html_tables(out.read_text())]
    paired = next(t for t in tables if "pair" in t.columns)
    paired = paired.astype({"round": int, "mean": float}).set_index("round")
    acc = {
        (r["seed"], r["round"], str(r["strategy"])): r["test_acc"]
        for r in raw_rows(app_lake)
        if r["study"] == "compare"
    }
    for round_ in (1, 2, 3):
        mean = sum(acc[(s, round_, "imp")] - acc[(s, round_, "imp.random_reinit")] for s in (0, 1)) / 2
        assert paired.loc[round_, "mean"] == pytest.approx(mean, abs=5e-4), "3 decimals"


def test_the_report_quotes_the_sequence_claims(app_lake, tmp_path):
    """The parse table of the report: each layer's F1 and the LSTM's distance-free parse are the
    numbers of the lake's raw rows (one seed each here)."""
    import pandas as pd
    from conftest import raw_rows

    out = tmp_path / "sequences.html"
    assert main(["report", "sequences", "--results", str(app_lake), "--out", str(out)]) == 0
    tables = [pd.DataFrame(rows[1:], columns=rows[0]) for rows in html_tables(out.read_text())]
    parse = next(t for t in tables if "parser" in t.columns).astype({"mean": float})
    means = {(r["series"], r["parser"]): r["mean"] for r in parse.to_dict("records")}
    rows = [r for r in raw_rows(app_lake) if r["study"] == "sequences" and r["round"] == 0]
    onlstm = next(r for r in rows if r["model"] == "onlstm_lm")
    lstm = next(r for r in rows if r["model"] == "lstm_lm")
    for layer, f1 in dict(onlstm["parse_f1"]).items():
        assert means[("onlstm_lm · imp", layer)] == pytest.approx(f1, abs=5e-4)
    right = dict(lstm["parse_baselines"])["right_branching"]
    assert means[("lstm_lm · imp", "no distances (right-branching)")] == pytest.approx(right, abs=5e-4)


def html_tables(text: str) -> list[list[list[str]]]:
    """The cells of every <table> of a page, row by row (header row first)."""
    from html.parser import HTMLParser

    class Tables(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tables, self.cell = [], None

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.tables.append([])
            elif tag == "tr":
                self.tables[-1].append([])
            elif tag in ("td", "th"):
                self.cell = ""

        def handle_endtag(self, tag):
            if tag in ("td", "th"):
                self.tables[-1][-1].append(self.cell.strip())
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

    parser = Tables()
    parser.feed(text)
    return parser.tables


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "nosuch", "--out", "{tmp}/r.html"], "study 'nosuch' is not in"),
        (["report", "compare", "--out", "{tmp}/missing/r.html"], "does not exist"),
        (["report", "compare", "--out", "{tmp}"], "cannot be written (it is a folder)"),
    ],
)
def test_report_bad_input_is_one_line(app_lake, tmp_path, capsys, args, message):
    argv = [a.format(tmp=tmp_path) for a in args] + ["--results", str(app_lake)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def figures_in_chromium(path: Path) -> dict[str, dict]:
    """Per figure of a report (by caption): its marks by kind and its legends (title, labels), as drawn."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        page.goto(path.resolve().as_uri())
        page.wait_for_function(
            "() => [...document.querySelectorAll('.chart')].every(c => c.dataset.rendered)", timeout=60_000
        )
        figures = page.eval_on_selector_all(
            "figure",
            """fs => fs.map(f => ({
                caption: f.querySelector('figcaption').textContent,
                symbols: f.querySelectorAll('svg .mark-symbol.role-mark path').length,
                lines: f.querySelectorAll('svg .mark-line.role-mark path').length,
                rects: f.querySelectorAll('svg .mark-rect.role-mark path').length,
                legends: [...f.querySelectorAll('svg .role-legend')].map(l => ({
                    title: (l.querySelector('.role-legend-title text') || {}).textContent || '',
                    labels: [...l.querySelectorAll('.role-legend-label text')].map(t => t.textContent),
                })),
            }))""",
        )
        browser.close()
    return {f["caption"]: f for f in figures}


def test_the_search_views_draw_the_lakes_trials_and_legends_name_them(app_lake, tmp_path):
    """The report of a searched study in Chromium: each standard search view draws one mark per
    trial the lake holds (raw lineage files), and every legend names a configuration by its Optuna
    trial number and searched values, never by a bare hash."""
    import re

    from conftest import raw_rows

    out = tmp_path / "searched.html"
    assert main(["report", "searched", "--results", str(app_lake), "--out", str(out)]) == 0
    trials = {r["optuna_trial_number"] for r in raw_rows(app_lake, "lineages", "searched") if r["status"] == "finished"}
    assert len(trials) == 4
    figures = figures_in_chromium(out)
    assert figures["optimisation history"]["symbols"] == len(trials)
    assert figures["optimisation history"]["lines"] == 1, "the best so far"
    assert figures["parallel coordinates"]["lines"] == len(trials)
    assert figures["objective per round"]["lines"] == len(trials)
    assert "contour" not in figures, "one numeric parameter (and a category): no plane to draw"
    assert figures["trial timeline"]["rects"] == len(trials)
    assert figures["prune.rates.fc"]["symbols"] == len(trials) + 1, "a dot per trial and a ring round the best"
    names = [
        label
        for f in figures.values()
        for legend in f["legends"]
        if legend["title"] == "configuration"
        for label in legend["labels"]
    ]
    assert len(names) >= 2 * len(trials), names  # the strategy chart and the per-round chart
    assert all(re.fullmatch(r"#\d+ (imp|random_reinit) fc=0\.\d+", n) for n in names), names
    every = [label for f in figures.values() for legend in f["legends"] for label in legend["labels"]]
    assert not [x for x in every if re.search(r"\b[0-9a-f]{6}\b", x)], "no legend is a bare hash"
    # two numeric parameters (fc and rounds, study 'paretos'): the contour, a cell per grid point and a dot per trial
    out = tmp_path / "paretos.html"
    assert main(["report", "paretos", "--results", str(app_lake), "--out", str(out)]) == 0
    contour = figures_in_chromium(out)["contour"]
    paretos = {r["optuna_trial_number"] for r in raw_rows(app_lake, "lineages", "paretos")}
    assert contour["rects"] == 20 * 20 and contour["symbols"] == len(paretos) == 4
