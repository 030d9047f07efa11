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
    """A study with branches and masks, one with instability, a searched one and one of sequence models."""
    studies = {"compare": 6, "stability": 6, "searched": 4, "sequences": 8}  # the charts each must draw at least
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
        sections = ["Strategy comparison", "Paired controls", "Instability", "Mask overlap", "Cost", "Sequence models"]
        sections.append("Search")
        assert seen["sections"] == sections, study


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
        assert paired.loc[round_, "mean"] == pytest.approx(mean, abs=1e-4)


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
