"""`study report STUDY --out report.html`: one self-contained static HTML file of a study, read
from the lake (Parquet only), that opens offline with no server: the strategy comparison, the
paired controls, instability, mask overlap, cost and search results, each chart a Vega-Lite spec
with its data inline, rendered by the Vega libraries bundled into the same file."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import altair as alt
import pandas as pd

from study.analysis.findings import MIN_TRIALS_FOR_IMPORTANCE
from study.analysis.masks import round_overlap, seed_overlap
from study.analysis.paired import paired_differences, share_dense_rounds
from study.analysis.stability import barrier_bands, path_bands, rewind_bands, with_rewind_series
from study.analysis.summary import study_findings_of
from study.app.charts import (
    band_chart,
    contour_chart,
    cost_chart,
    history_chart,
    importance_chart,
    overlap_heatmap,
    paired_chart,
    parallel_chart,
    param_scatter,
    path_chart,
    rewind_chart,
    rounds_chart,
    series_scale,
    timeline_chart,
)
from study.app.findings import findings_html, ticket_reference
from study.app.lake import Lake, band_table, cost_bands, seed_bands, sparsest_tickets, with_series
from study.app.search import importance, study_info, study_trials
from study.app.search_views import best_trials, contour, contour_params, history, parallel, per_round, timeline
from study.app.sequence_claims import claim_figures, sequence_rows
from study.app.tables import ABSENT, html_table
from study.errors import SpecError
from study.lake.reader import excluded_lineages
from study.lake.schema import FAILED_STATUSES
from study.version import code_version

_GLOBALS = "window.vegaEmbed = vegaEmbed; window.vega = vega; window.vegaLite = vegaLite;"  # for the inline scripts


@dataclass
class Section:
    title: str
    intro: str
    charts: list[tuple[str, alt.TopLevelMixin]] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    absent: str | None = None  # `tables.ABSENT` key: the study has nothing for this section
    html: str = ""  # shown before the charts (the findings block)
    best: dict[str, pd.Series] = field(default_factory=dict)  # table title -> its rows to highlight


def _healthy(lake: Lake, df: pd.DataFrame, study: str) -> pd.DataFrame:
    if df.empty:
        return df
    df = df[df["study"] == study]
    bad = excluded_lineages(lake.lineages.to_dict("records")) if not lake.lineages.empty else set()
    return df[[k not in bad for k in zip(df["study"], df["trial_id"], df["lineage_id"], strict=True)]]


def sections(lake: Lake, study: str) -> list[Section]:
    """The report's sections, findings first; those with nothing to show come last, folded into
    one 'not measured here' list (`not_measured`)."""
    rows = with_series(share_dense_rounds(_healthy(lake, lake.rounds, study)))
    findings, _ = study_findings_of(rows, lake.lineages, lake.studies, study)
    out = [
        Section(
            "Findings", "Selection used validation data only; test accuracy is reported.", html=findings_html(findings)
        )
    ]

    colors = series_scale(rows)
    best, reference = findings.best, ticket_reference(findings)
    strategies = Section(
        "Strategy comparison",
        "Test accuracy at the early-stop iteration (reported) against the % of weights remaining, one line per "
        "configuration (a hue per strategy, a shade per configuration), mean and 95% band over seeds; dashed: the "
        "best configuration's dense network, shaded: the tolerance below it. Early stopping and the ticket table "
        "choose on validation data.",
    )
    strategies.charts.append(
        (
            "test accuracy",
            band_chart(
                seed_bands(rows, "test_acc"), "Test accuracy", "test accuracy", colors=colors, reference=reference
            ),
        )
    )
    tickets = sparsest_tickets(rows, findings.tolerance)
    title = (
        f"Sparsest ticket within {findings.tolerance * 100:g} point of dense per configuration (chosen on validation)"
    )
    strategies.tables.append((title, tickets))
    if best is not None and not tickets.empty:
        strategies.best[title] = (tickets["config id"] == best.config_id) & (tickets["strategy"] == best.strategy)
    out.append(strategies)

    out.append(_search_section(lake, study))

    pairs = paired_differences(rows, "test_acc", by=("series",))
    paired = Section(
        "Paired controls",
        "Trunk − branch test accuracy, taken per seed and round (same seed, restart point and data order) and then "
        "averaged; the 95% band is over the per-seed differences. Above 0, the trunk's ticket beats the control.",
        absent=None if not pairs.empty else "paired",
    )
    if not pairs.empty:
        paired.charts.append(("paired differences", paired_chart(pairs, "test accuracy difference")))
        paired.tables.append(("trunk − branch", band_table(pairs, ["pair", "round", "remaining_pct"], digits=3)))
    out.append(paired)

    instability = _healthy(lake, lake.instability, study)
    stability = Section(
        "Instability",
        "Error barrier on the test split (reported) between two copies trained from the same rewind point on "
        "different data orders: max error on the line − mean of the two ends (Frankle et al., 2020).",
        absent=None if not instability.empty else "instability",
    )
    if not instability.empty:
        instability = with_rewind_series(instability)
        by_remaining = barrier_bands(instability)
        by_k = rewind_bands(instability)
        stability.charts.append(("barrier by sparsity", band_chart(by_remaining, "Error barrier", "error barrier")))
        stability.charts.append(("barrier by rewind point", rewind_chart(by_k, "error barrier")))
        last = int(instability["round"].max())
        stability.charts.append(
            (
                f"error along the path, round {last}",
                path_chart(path_bands(instability[instability["round"] == last]), "test error"),
            )
        )
        stability.tables.append(
            ("test error barrier", band_table(by_remaining, ["series", "round", "remaining_pct"], digits=3))
        )
    out.append(stability)

    masks = _healthy(lake, lake.masks, study)
    overlap = Section(
        "Mask overlap",
        "Jaccard overlap of the masks per layer as a ratio to what two random masks of the same densities would "
        "share (1: no more than chance; printed in each cell), mean over pairs; each panel has its own rounds.",
        absent=None if not masks.empty else "masks",
    )
    if not masks.empty:
        masks = with_series(masks)
        for name, cells, title in (
            ("between seeds", seed_overlap(masks), "Between seeds of one configuration"),
            ("consecutive rounds", round_overlap(masks), "Round r against round r − 1"),
        ):
            if not cells.empty:
                cells["round_label"] = [
                    f"{r} ({p:.3g}%)" for r, p in zip(cells["round"], cells["remaining_pct"], strict=True)
                ]
                overlap.charts.append((name, overlap_heatmap(cells, title)))
    out.append(overlap)

    cost = Section(
        "Cost",
        "Test accuracy against the compression ratio and the theoretical speed-up (Blalock et al., 2020), "
        "95% error bars over seeds.",
    )
    for column, title in (("compression_ratio", "compression ratio"), ("theoretical_speedup", "theoretical speed-up")):
        bands = cost_bands(rows, column)
        if not bands.empty:
            cost.charts.append((title, cost_chart(bands, column, f"{title} (log scale)", "test accuracy", colors)))
    if not cost.charts:
        cost.absent = "cost"
    out.append(cost)

    figures = claim_figures(sequence_rows(_healthy(lake, lake.rounds, study)))
    out.append(
        Section(
            "Sequence models",
            "The ON-LSTM paper's claims (Shen et al., 2019): parse F1 of each layer's distances against every trivial "
            "tree and a model without distances, accuracy per operator count against its chance line, and both "
            "against sparsity; mean and 95% band over seeds.",
            charts=list[tuple[str, alt.TopLevelMixin]](figures.charts),
            tables=figures.tables,
            absent=None if figures.charts else "sequences",
        )
    )
    shown = [s for s in out if s.absent is None]
    missing = [s for s in out if s.absent is not None]
    if missing:
        items = "".join(f"<li>{_code(ABSENT[s.absent].sentence())}</li>" for s in missing if s.absent)
        shown.append(
            Section(
                "Not measured here",
                "What this study did not measure, and how to measure it.",
                html=f"<ul class='absent'>{items}</ul>",
            )
        )
    return shown


def _code(text: str) -> str:
    """`text` as HTML, its `backticked` parts as code (as the app's Markdown shows them)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _search_section(lake: Lake, study: str) -> Section:
    """The standard search views (`app.search_views`) and the trials table of a searched study."""
    info = study_info(lake, study)
    search = Section(
        "Search",
        "Each trial's searched values and its objective, recomputed from the lake on validation data (the only "
        "data the search saw); test accuracy of the same round is reported beside it. Trials are named by their "
        "Optuna trial number and searched values.",
        absent=None if info else "search",
    )
    if not info:
        return search
    trials = study_trials(lake, study, info)
    done = trials[~trials["status"].isin(FAILED_STATUSES)] if not trials.empty else trials
    objective, mode = info["metrics"][0], info["modes"][0]
    if done.empty or objective not in done:
        search.absent = "search"
        return search
    single = len(info["metrics"]) == 1
    best = best_trials(done, objective, mode) if single else done.get("pareto")
    search.charts.append(("optimisation history", history_chart(history(done, objective, mode), objective, mode)))
    lines, ticks = parallel(done, info["search"], objective)
    if not lines.empty:
        search.charts.append(("parallel coordinates", parallel_chart(lines, ticks, objective)))
    rounds = per_round(lake, study, info)
    if not rounds.empty:
        search.charts.append(("objective per round", rounds_chart(rounds, objective)))
    imp, why = importance(done, info)
    pair = contour_params(done, info["search"], imp if not why else None)
    if len(pair) == 2:
        grid = contour(done, info["search"], pair[0], pair[1], objective)
        if not grid.empty:
            search.charts.append(("contour", contour_chart(grid, done, pair[0], pair[1], objective, info["search"])))
    spans = timeline(lake, study)
    if not spans.empty:
        search.charts.append(("trial timeline", timeline_chart(spans)))
    for param in (p for p in info["search"] if p in done):
        shown = done.dropna(subset=[objective, param])
        search.charts.append(
            (param, param_scatter(shown, param, objective, info["search"][param], best_trials(shown, objective, mode)))
        )
    if not why:
        n = len(done.dropna(subset=[objective]))
        caveat = (
            f"{n} trials, a hint only (fewer than {MIN_TRIALS_FOR_IMPORTANCE})"
            if n < MIN_TRIALS_FOR_IMPORTANCE
            else None
        )
        search.charts.append(("parameter importance", importance_chart(imp, caveat)))
    title = f"trials (objective {info['objective']}; highlighted: best)"
    search.tables.append((title, done))
    if best is not None:
        search.best[title] = best
    failed = trials[trials["status"].isin(FAILED_STATUSES)]
    if not failed.empty:
        search.tables.append(("failed trials (never eligible as best)", failed))
    return search


def _lineage_counts(lake: Lake, study: str) -> str:
    lin = lake.lineages[lake.lineages["study"] == study] if not lake.lineages.empty else lake.lineages
    if lin.empty:
        return "no lineages"
    kind = lin["branch"].map(lambda b: "branch" if isinstance(b, str) else "trunk")
    counts = lin.groupby([kind, lin["status"]]).size()
    return ", ".join(f"{n} {k} {s}" for (k, s), n in counts.items())


def build_report(lake: Lake, study: str) -> str:
    """The report's HTML: one file, every chart's spec and data inline, the Vega libraries bundled."""
    import vl_convert

    known = sorted(set(lake.rounds["study"])) if not lake.rounds.empty else []
    if study not in known:
        raise SpecError(f"study {study!r} has no rounds in {lake.root}; studies there: {', '.join(known) or 'none'}")
    body: list[str] = []
    specs: list[tuple[str, dict]] = []
    with alt.data_transformers.enable("default", max_rows=None):
        for s in sections(lake, study):
            body.append(f"<section><h2>{html.escape(s.title)}</h2><p class='intro'>{html.escape(s.intro)}</p>")
            body.append(s.html)
            for title, chart in s.charts:
                chart_id = f"chart-{len(specs)}"
                specs.append((chart_id, _sized(chart.to_dict())))
                body.append(
                    f"<figure><figcaption>{html.escape(title)}</figcaption><div class='chart' id='{chart_id}'></div></figure>"
                )
            for title, table in s.tables:
                body.append(f"<h3>{html.escape(title)}</h3>{html_table(table, s.best.get(title))}")
            body.append("</section>")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    embeds = "\n".join(
        f"vegaEmbed('#{cid}', {_script_json(spec)}, {{renderer: 'svg', actions: false}})"
        f".then(() => document.getElementById('{cid}').dataset.rendered = 'yes')"
        f".catch(e => {{ document.getElementById('{cid}').dataset.rendered = 'error'; console.error(e); }});"
        for cid, spec in specs
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Study {html.escape(study)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }}
h1 {{ margin-bottom: 0.2rem; }} section {{ margin-top: 2.5rem; }} .intro {{ color: #555; }}
.note {{ color: #8a6d3b; }} figure {{ margin: 1rem 0; }} figcaption {{ font-weight: 600; }}
table {{ border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0 1rem; }}
th, td {{ padding: 0.25rem 0.6rem; border-bottom: 1px solid #ddd; text-align: right; }}
th {{ cursor: pointer; }} .txt {{ text-align: left; white-space: nowrap; }} tr.best td {{ background: #fde2e1; font-weight: 600; }}
.wide {{ overflow-x: auto; }}
.findings {{ border: 1px solid #ccc; border-radius: 6px; padding: 0.4rem 1rem; background: #fafafa; }}
.caveats {{ background: #fff8e1; border-radius: 4px; padding: 0.4rem 0.8rem; margin: 0.6rem 0; color: #7a5a00; }}
</style>
<script>{vl_convert.javascript_bundle(_GLOBALS)}</script>
</head><body>
<h1>Study {html.escape(study)}</h1>
<p class="intro">Lake {html.escape(lake.root)} · {html.escape(_lineage_counts(lake, study))} · written {stamp}
by code {html.escape(code_version())}. Selection (early stopping, tickets, objectives) used validation data only;
test accuracy is reported.</p>
{"".join(body)}
<script>{embeds}</script>
<script>{_SORT_SCRIPT}</script>
</body></html>
"""


REPORT_WIDTH = 820  # px: a chart's plot area in the report (the app stretches its charts to the page)


def _sized(spec: dict) -> dict:
    """A chart spec with the report's width where it names none (a faceted chart: per panel)."""
    inner = spec.get("spec") if "facet" in spec or "row" in spec else spec
    if isinstance(inner, dict) and "width" not in inner and not any(k in inner for k in ("hconcat", "vconcat")):
        inner["width"] = REPORT_WIDTH - 200 if inner is not spec else REPORT_WIDTH
    return spec


_SORT_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach((th, col) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0];
  const up = th.dataset.order !== 'up'; th.dataset.order = up ? 'up' : 'down';
  const key = tr => { const v = tr.cells[col].dataset.sort; const n = parseFloat(v); return isNaN(n) ? v : n; };
  [...body.rows].sort((a, b) => { const x = key(a), y = key(b); return (x > y ? 1 : x < y ? -1 : 0) * (up ? 1 : -1); })
    .forEach(tr => body.appendChild(tr));
}));
"""


def _script_json(value: object) -> str:
    """JSON that can sit inside a <script> element (a '</script>' in a value cannot close it)."""
    return json.dumps(value).replace("</", "<\\/")


def write_report(lake: Lake, study: str, out: str | Path) -> Path:
    """Write the report to `out` (whole or not at all) and return its path."""
    target = Path(out).expanduser()
    if "://" not in lake.root and target.resolve().is_relative_to(Path(lake.root).expanduser().resolve()):
        raise SpecError(
            f"--out {out} is inside the results lake {lake.root} (it could replace a lake file); write the report "
            f"outside it, e.g. --out {study}.html"
        )
    if not target.parent.is_dir():
        raise SpecError(f"--out {out}: folder {target.parent} does not exist; create it or pass another path")
    if target.is_dir():
        raise SpecError(
            f"--out {out} cannot be written (it is a folder); pass a file path such as {target}/report.html"
        )
    text = build_report(lake, study)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise SpecError(
            f"--out {out} cannot be written ({e.strerror or type(e).__name__}); pass a writable path"
        ) from None
    return target
