"""`study report STUDY --out report.html`: one self-contained static HTML file of a study, read
from the lake (Parquet only), that opens offline with no server: the strategy comparison, the
paired controls, instability, mask overlap, cost and search results, each chart a Vega-Lite spec
with its data inline, rendered by the Vega libraries bundled into the same file."""

from __future__ import annotations

import datetime as dt
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import altair as alt
import pandas as pd

from study.analysis.masks import round_overlap, seed_overlap
from study.analysis.paired import paired_differences, share_dense_rounds
from study.analysis.stability import barrier_bands, path_bands, rewind_bands, with_rewind_series
from study.app.charts import (
    band_chart,
    cost_chart,
    overlap_heatmap,
    paired_chart,
    param_scatter,
    path_chart,
    rewind_chart,
)
from study.app.lake import Lake, band_table, cost_bands, seed_bands, sparsest_tickets, with_series
from study.app.search import study_info, study_trials
from study.app.sequence_claims import claim_figures, sequence_rows
from study.errors import SpecError
from study.lake.reader import excluded_lineages
from study.version import code_version

TICKET_TOLERANCE = 0.01
_GLOBALS = "window.vegaEmbed = vegaEmbed; window.vega = vega; window.vegaLite = vegaLite;"  # for the inline scripts


@dataclass
class Section:
    title: str
    intro: str
    charts: list[tuple[str, alt.TopLevelMixin]] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    note: str | None = None  # shown instead when the study has nothing for this section


def _healthy(lake: Lake, df: pd.DataFrame, study: str) -> pd.DataFrame:
    if df.empty:
        return df
    df = df[df["study"] == study]
    bad = excluded_lineages(lake.lineages.to_dict("records")) if not lake.lineages.empty else set()
    return df[[k not in bad for k in zip(df["study"], df["trial_id"], df["lineage_id"], strict=True)]]


def sections(lake: Lake, study: str) -> list[Section]:
    rows = with_series(share_dense_rounds(_healthy(lake, lake.rounds, study)))
    out = []

    strategies = Section(
        "Strategy comparison",
        "Test accuracy at the early-stop iteration (reported) against the % of weights remaining, mean and 95% "
        "band over seeds; early stopping and the ticket table choose on validation data.",
    )
    strategies.charts.append(
        ("test accuracy", band_chart(seed_bands(rows, "test_acc"), "Test accuracy", "test accuracy"))
    )
    strategies.tables.append(
        ("Sparsest ticket within 1 point of dense (chosen on validation)", sparsest_tickets(rows, TICKET_TOLERANCE))
    )
    out.append(strategies)

    pairs = paired_differences(rows, "test_acc", by=("series",))
    paired = Section(
        "Paired controls",
        "Trunk − branch test accuracy, taken per seed and round (same seed, restart point and data order) and then "
        "averaged; the 95% band is over the per-seed differences. Above 0, the trunk's ticket beats the control.",
        note=None if not pairs.empty else "No branches in this study (a lineage spec's `branches:` adds them).",
    )
    if not pairs.empty:
        paired.charts.append(("paired differences", paired_chart(pairs, "test accuracy difference")))
        paired.tables.append(("trunk − branch", band_table(pairs, ["pair", "round", "remaining_pct"])))
    out.append(paired)

    instability = _healthy(lake, lake.instability, study)
    stability = Section(
        "Instability",
        "Error barrier on the test split (reported) between two copies trained from the same rewind point on "
        "different data orders: max error on the line − mean of the two ends (Frankle et al., 2020).",
        note=None if not instability.empty else "No instability measured (a lineage spec's `instability:` adds it).",
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
        stability.tables.append(("test error barrier", band_table(by_remaining, ["series", "round", "remaining_pct"])))
    out.append(stability)

    masks = _healthy(lake, lake.masks, study)
    overlap = Section(
        "Mask overlap",
        "Jaccard overlap of the masks per layer, mean over pairs; 'chance' is what two random masks of the same "
        "densities would share.",
        note=None if not masks.empty else "No masks recorded for this study.",
    )
    if not masks.empty:
        masks = with_series(masks)
        for name, cells, title in (
            ("between seeds", seed_overlap(masks), "Between seeds of one configuration"),
            ("consecutive rounds", round_overlap(masks), "Round r against round r − 1"),
        ):
            if not cells.empty:
                cells["round_label"] = [
                    f"{r} ({p:.1f}%)" for r, p in zip(cells["round"], cells["remaining_pct"], strict=True)
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
            cost.charts.append((title, cost_chart(bands, column, f"{title} (log scale)", "test accuracy")))
    if not cost.charts:
        cost.note = "No cost columns in these rows (written before they existed)."
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
            note=None if figures.charts else "No sequence-model rounds in this study.",
        )
    )

    info = study_info(lake, study)
    search = Section(
        "Search",
        "Each trial's searched values and its objective, recomputed from the lake on validation data (the only "
        "data the search saw); test accuracy of the same round is reported beside it.",
        note=None if info else "Not a searched study (its lineages were run one by one).",
    )
    if info:
        trials = study_trials(lake, study, info)
        if not trials.empty:
            objective = info["metrics"][0]
            for param in (p for p in info["search"] if p in trials):
                if objective in trials:
                    search.charts.append((param, param_scatter(trials, param, objective)))
            search.tables.append((f"trials (objective {info['objective']})", trials))
    out.append(search)
    return out


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
            if s.note:
                body.append(f"<p class='note'>{html.escape(s.note)}</p>")
            for title, chart in s.charts:
                chart_id = f"chart-{len(specs)}"
                specs.append((chart_id, chart.to_dict()))
                body.append(
                    f"<figure><figcaption>{html.escape(title)}</figcaption><div class='chart' id='{chart_id}'></div></figure>"
                )
            for title, table in s.tables:
                body.append(f"<h3>{html.escape(title)}</h3>{table.to_html(index=False, border=0, na_rep='–')}")
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
</style>
<script>{vl_convert.javascript_bundle(_GLOBALS)}</script>
</head><body>
<h1>Study {html.escape(study)}</h1>
<p class="intro">Lake {html.escape(lake.root)} · {html.escape(_lineage_counts(lake, study))} · written {stamp}
by code {html.escape(code_version())}. Selection (early stopping, tickets, objectives) used validation data only;
test accuracy is reported.</p>
{"".join(body)}
<script>{embeds}</script>
</body></html>
"""


def _script_json(value: object) -> str:
    """JSON that can sit inside a <script> element (a '</script>' in a value cannot close it)."""
    return json.dumps(value).replace("</", "<\\/")


def write_report(lake: Lake, study: str, out: str | Path) -> Path:
    """Write the report to `out` (whole or not at all) and return its path."""
    target = Path(out).expanduser()
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
