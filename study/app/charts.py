"""Altair charts of the app (checked in tests through their Vega-Lite specs)."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Any

import altair as alt
import pandas as pd

REMAINING_AXIS = alt.X(
    "remaining_pct:Q", title="% of weights remaining (log scale)", scale=alt.Scale(type="log", reverse=True, nice=False)
)
# one hue per strategy (Vega's tableau10, its pale yellow left out), lightness per configuration
HUES = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#9d755d", "#ff9da6", "#bab0ac"]
BEST = "#d62728"
HISTORY_HEIGHT, SLICE_HEIGHT, PARETO_HEIGHT = 280, 240, 360
_LEGEND = alt.Legend(labelLimit=360, symbolLimit=60, symbolOpacity=1)  # a band's light fill would fade the key


LEGEND_ROW_PX = 30  # one legend entry under Streamlit's chart theme, measured in Chromium


def legend_height(entries: int) -> int:
    """A chart tall enough for a legend of `entries` and its title: the app fits the whole chart,
    axes included, into this height and clips a legend that runs past it."""
    return LEGEND_ROW_PX * entries + 60


AXIS_TITLE_CHAR_PX = 7.5  # a character of an axis title under Streamlit's chart theme, about
PLOT_MARGIN_PX = 110  # a chart's title, x axis and its title: what its height gives the plot less


def axis_title(text: str, chart_height: int) -> str | list[str]:
    """`text` as lines that each fit along the y axis of a chart `chart_height` tall. A longer
    rotated title runs past the plot, and Vega then sets the chart's own title above the top of
    what the app shows (the Search page lost its chart titles so). Lines break at spaces, and a
    word too long for a line at its underscores."""
    room = max(8, int((chart_height - PLOT_MARGIN_PX) / AXIS_TITLE_CHAR_PX))
    if len(text) <= room:
        return text
    words = [piece for word in text.split(" ") for piece in _split_long(word, room)]
    lines = [words[0]]
    for word in words[1:]:
        joiner = "" if lines[-1].endswith("_") else " "
        if len(lines[-1]) + len(joiner) + len(word) <= room:
            lines[-1] += joiner + word
        else:
            lines.append(word)
    return lines


def _split_long(word: str, room: int) -> list[str]:
    if len(word) <= room:
        return [word]
    parts = [p + "_" for p in word.split("_")]
    parts[-1] = parts[-1][:-1]
    return [p for p in parts if p]


def _lightness(color: str, lightness: float) -> str:
    r, g, b = (int(color[i : i + 2], 16) / 255 for i in (1, 3, 5))
    h, _, s = colorsys.rgb_to_hls(r, g, b)
    r, g, b = colorsys.hls_to_rgb(h, lightness, s)
    return "#" + "".join(f"{round(c * 255):02x}" for c in (r, g, b))


def series_scale(rows: pd.DataFrame, field: str = "series") -> alt.Scale:
    """Colours of the `field` values of `rows` (which also hold `strategy`): a hue per strategy,
    and within it a lightness per value, dark to light (never so light a line disappears)."""
    pairs = rows[[field, "strategy"]].astype(str).drop_duplicates(field)
    strategies = sorted(set(pairs["strategy"]))
    domain, colors = [], []
    for i, strategy in enumerate(strategies):
        names = sorted(pairs.loc[pairs["strategy"] == strategy, field])
        base = HUES[i % len(HUES)]
        for j, name in enumerate(names):
            domain.append(name)
            colors.append(base if len(names) == 1 else _lightness(base, 0.27 + 0.33 * j / (len(names) - 1)))
    return alt.Scale(domain=domain, range=colors)


def strategy_scale(strategies: list[str]) -> alt.Scale:
    """The hue of each strategy (the same as `series_scale` gives its configurations)."""
    names = sorted(set(strategies))
    return alt.Scale(domain=names, range=[HUES[i % len(HUES)] for i in range(len(names))])


@dataclass(frozen=True)
class Reference:
    """A horizontal reference on an accuracy chart: the dense network's value (a dashed rule)
    and the tolerance below it (a shaded band) within which a round still counts as a ticket."""

    value: float
    tolerance: float
    label: str

    def layers(self) -> alt.LayerChart:
        frame = pd.DataFrame({"y": [self.value], "lo": [self.value - self.tolerance], "label": [self.label]})
        band = alt.Chart(frame).mark_rect(color="#888", opacity=0.12).encode(y="lo:Q", y2="y:Q", tooltip=["label"])
        rule = alt.Chart(frame).mark_rule(color="#444", strokeDash=[6, 3]).encode(y="y:Q", tooltip=["label"])
        return band + rule


def _mean_with_band(
    bands: pd.DataFrame, x: alt.X, color: alt.Color, y_title: str, tooltip: list, zero: bool = True
) -> alt.LayerChart:
    """The mean line of `bands` (points on it) over its 95% band (`lo` to `hi`); with
    zero=False the y axis need not include 0."""
    scale: dict[str, Any] = {} if zero else {"scale": alt.Scale(zero=False)}
    if "legend" not in color.to_dict():  # the legend's keys at full opacity, whatever the band's
        color = color.legend(_LEGEND)
    base = alt.Chart(bands).encode(x=x, color=color)
    lines = bands[color.shorthand.split(":")[0]].nunique() if isinstance(color.shorthand, str) else 1
    opacity = 0.2 if lines <= 4 else 0.08  # many bands: each lighter, so the lines stay readable
    band = base.mark_area(opacity=opacity).encode(y=alt.Y("lo:Q", title=y_title, **scale), y2="hi:Q")
    line = base.mark_line(point=True).encode(y=alt.Y("mean:Q", title=y_title, **scale), tooltip=tooltip)
    return band + line


def band_chart(
    bands: pd.DataFrame,
    title: str,
    y_title: str,
    digits: int = 3,
    height: int = 360,
    colors: alt.Scale | None = None,
    reference: Reference | None = None,
) -> alt.LayerChart:
    """Mean line per series against % remaining (log axis, reversed as in the paper), with a
    95% band over seeds; `colors` from `series_scale`, `reference` the dense value and tolerance."""
    tooltip = [
        "series",
        "round",
        alt.Tooltip("remaining_pct:Q", format=".3g"),
        alt.Tooltip("mean:Q", format=f".{digits}f"),
        "n",
    ]
    color = alt.Color("series:N", title="configuration", scale=colors or alt.Undefined, legend=_LEGEND)
    chart = _mean_with_band(bands, REMAINING_AXIS, color, y_title, tooltip, zero=False)
    if reference is not None:  # drawn after the series: a light band and a dashed rule
        chart = chart + reference.layers()
    return chart.properties(title=title, height=max(height, legend_height(bands["series"].nunique())))


def paired_chart(pairs: pd.DataFrame, y_title: str) -> alt.LayerChart:
    """Mean paired difference (trunk − branch) per pair against % remaining, with its 95% band
    over seeds and a rule at 0 (above it the trunk wins)."""
    tooltip = [
        "pair",
        "round",
        alt.Tooltip("remaining_pct:Q", format=".2f"),
        alt.Tooltip("mean:Q", format=".4f"),
        alt.Tooltip("lo:Q", format=".4f"),
        alt.Tooltip("hi:Q", format=".4f"),
        "n",
    ]
    color = alt.Color("pair:N", title="trunk − branch", legend=_LEGEND)
    zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(strokeDash=[4, 4], color="gray").encode(y="y:Q")
    return (_mean_with_band(pairs, REMAINING_AXIS, color, y_title, tooltip) + zero).properties(
        height=max(320, legend_height(pairs["pair"].nunique()))
    )


def rewind_chart(bands: pd.DataFrame, y_title: str) -> alt.LayerChart:
    """Barrier against the rewind iteration k, one line per strategy and round (its sparsity),
    with the 95% band over seeds: where a network becomes stable to SGD noise."""
    x = alt.X("rewind_iteration:Q", title="rewind iteration k")
    color = alt.Color("level:N", title="strategy · round")
    tooltip = ["level", "rewind_iteration", alt.Tooltip("mean:Q", format=".4f"), "n"]
    return _mean_with_band(bands, x, color, y_title, tooltip).properties(height=320)


def path_chart(bands: pd.DataFrame, y_title: str) -> alt.LayerChart:
    """Error along the straight line between the two copies (α = 0: the lineage's own, 1: the
    second), mean per series with the 95% band over seeds."""
    x = alt.X("alpha:Q", title="interpolation α")
    color = alt.Color("series:N", title="strategy · rewind")
    tooltip = ["series", "alpha", alt.Tooltip("mean:Q", format=".4f"), "n"]
    return _mean_with_band(bands, x, color, y_title, tooltip).properties(height=320)


def cost_chart(
    bands: pd.DataFrame, cost: str, x_title: str, y_title: str, colors: alt.Scale | None = None
) -> alt.Chart:
    """Mean per series against a cost axis (log scale), with 95% error bars over seeds: the plot
    Blalock et al. (2020) ask pruning results to show."""
    x = alt.X(f"{cost}:Q", title=x_title, scale=alt.Scale(type="log", nice=False))
    color = alt.Color("series:N", title="configuration", scale=colors or alt.Undefined, legend=_LEGEND)
    base = alt.Chart(bands).encode(x=x, color=color)
    bars = base.mark_errorbar().encode(y=alt.Y("lo:Q", title=y_title, scale=alt.Scale(zero=False)), y2="hi:Q")
    line = base.mark_line(point=True).encode(
        y=alt.Y("mean:Q", title=y_title, scale=alt.Scale(zero=False)),
        tooltip=["series", "round", alt.Tooltip(f"{cost}:Q", format=".3g"), alt.Tooltip("mean:Q", format=".3f"), "n"],
    )
    return (bars + line).properties(height=320)


def curves_chart(curves: pd.DataFrame) -> alt.Chart:
    return (
        alt.Chart(curves)
        .mark_line()
        .encode(
            x=alt.X("iteration:Q", title="training iteration"),
            y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
            color=alt.Color("round:O", title="round"),
            row=alt.Row("metric:N", title=None),
            tooltip=["round", "iteration", alt.Tooltip("value:Q", format=".4f")],
        )
        .properties(height=180)
        .resolve_scale(y="independent")
    )


def sparsity_heatmap(cells: pd.DataFrame) -> alt.Chart:
    return (
        alt.Chart(cells)
        .mark_rect()
        .encode(
            x=alt.X("round:O", title="round", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("layer:N", title="layer / group", sort=None),
            color=alt.Color("remaining_pct:Q", title="% remaining", scale=alt.Scale(scheme="viridis", domain=[0, 100])),
            tooltip=["layer", "round", alt.Tooltip("remaining_pct:Q", format=".2f")],
        )
        .properties(height=alt.Step(28), title="per-layer sparsity")
    )


def overlap_heatmap(cells: pd.DataFrame, title: str) -> alt.FacetChart:
    """Jaccard overlap per layer (y) and round (x) as a ratio to what random masks of the same
    densities would share (1: no more than chance), the ratio printed in each cell; one panel
    per series, each with its own rounds on its x axis."""
    cells = cells.assign(ratio=cells["mean"] / cells["chance"].where(cells["chance"] > 0))
    high = max(2.0, float(cells["ratio"].max())) if cells["ratio"].notna().any() else 2.0
    cells["shade"] = cells["ratio"].clip(lower=1 / high, upper=high)  # no overlap at all: the scale's end
    x = alt.X("round_label:O", title="round (% remaining)", sort=None, axis=alt.Axis(labelAngle=0, labelOverlap=False))
    y = alt.Y("layer:N", title="layer", sort=None)
    tooltip = [
        "series",
        "layer",
        "round",
        alt.Tooltip("remaining_pct:Q", format=".3g"),
        alt.Tooltip("mean:Q", format=".3f", title="Jaccard"),
        alt.Tooltip("lo:Q", format=".3f"),
        alt.Tooltip("hi:Q", format=".3f"),
        alt.Tooltip("chance:Q", format=".3f", title="random masks"),
        alt.Tooltip("ratio:Q", format=".2f", title="ratio to chance"),
        "n",
    ]
    rect = (
        alt.Chart()
        .mark_rect()
        .encode(
            x=x,
            y=y,
            color=alt.Color(
                "shade:Q",
                title="Jaccard / chance",
                scale=alt.Scale(type="log", domain=[1 / high, high], scheme="blueorange", domainMid=1),
            ),
            tooltip=tooltip,
        )
    )
    text = alt.Chart().mark_text(fontSize=11).encode(x=x, y=y, text=alt.Text("ratio:Q", format=".2f"))
    return (
        alt.layer(rect, text, data=cells)
        .properties(width=alt.Step(84), height=alt.Step(28))  # room for '10 (0.134%)'
        .facet(row=alt.Row("series:N", title=None, header=alt.Header(labelAngle=0, labelAlign="left", labelLimit=400)))
        .resolve_scale(x="independent")
        .properties(title=title)
    )


def field_name(column: str) -> str:
    """Vega-Lite reads dots in a field name as nested access: chart data uses safe names."""
    return column.replace(".", "_")


def param_scatter(
    trials: pd.DataFrame, param: str, objective: str, spec: dict | None = None, best: pd.Series | None = None
) -> alt.LayerChart:
    """A slice plot: each trial's objective against one searched value, coloured by strategy,
    on a log axis when the parameter was searched on one (`spec`), the best trial ringed."""
    data = trials.rename(columns={param: field_name(param)})
    field = field_name(param)
    data = data.assign(best=best if best is not None else False)
    kind = "Q" if pd.api.types.is_numeric_dtype(data[field]) else "N"
    log = spec is not None and spec.get("type") == "log_float"
    if kind == "Q":
        scale = alt.Scale(type="log", nice=False) if log else alt.Scale(zero=False, nice=False)
        x = alt.X(f"{field}:Q", title=param + (" (log scale)" if log else ""), scale=scale)
    else:
        x = alt.X(f"{field}:N", title=param, axis=alt.Axis(labelAngle=-30, labelLimit=140))
    tooltip = [
        "optuna trial",
        "configuration",
        alt.Tooltip(f"{field}:{kind}", title=param),
        alt.Tooltip(f"{objective}:Q", format=".4g"),
    ]
    y = alt.Y(f"{objective}:Q", title=axis_title(objective, SLICE_HEIGHT), scale=alt.Scale(zero=False))
    base = alt.Chart(data).encode(x=x, y=y)
    dots = base.mark_circle(size=70, opacity=0.85).encode(
        color=alt.Color("strategy:N", title="strategy", scale=strategy_scale(list(data["strategy"]))), tooltip=tooltip
    )
    ring = base.transform_filter(alt.datum.best).mark_point(size=260, color=BEST, strokeWidth=2, filled=False)
    return (dots + ring).properties(height=SLICE_HEIGHT, title=f"{param} vs {objective} (ringed: best)")


def history_chart(points: pd.DataFrame, metric: str, mode: str) -> alt.LayerChart:
    """Optimisation history: each trial's objective by trial number, and the best so far (a step line)."""
    x = alt.X("optuna trial:Q", title="Optuna trial", axis=alt.Axis(tickMinStep=1, format="d"))
    y = alt.Y("value:Q", title=axis_title(f"{metric} ({mode})", HISTORY_HEIGHT), scale=alt.Scale(zero=False))
    dots = (
        alt.Chart(points)
        .mark_circle(size=70)
        .encode(
            x=x,
            y=y,
            color=alt.Color("strategy:N", scale=strategy_scale(list(points["strategy"]))),
            tooltip=["optuna trial", "configuration", alt.Tooltip("value:Q", format=".4g")],
        )
    )
    best = (
        alt.Chart(points)
        .mark_line(interpolate="step-after", color=BEST)
        .encode(x=x, y=alt.Y("best:Q"), tooltip=[alt.Tooltip("best:Q", format=".4g", title="best so far")])
    )
    return (best + dots).properties(title="Optimisation history (red: best so far)", height=HISTORY_HEIGHT)


def parallel_chart(lines: pd.DataFrame, ticks: pd.DataFrame, metric: str) -> alt.LayerChart:
    """Parallel coordinates: a line per trial through each searched parameter's axis (0 to 1 over
    its searched range, log-searched ones on a log scale) to the objective, coloured by it."""
    order = list(dict.fromkeys(ticks.sort_values("order")["axis"]))
    x = alt.X("axis:N", sort=order, title=None, axis=alt.Axis(labelAngle=0, labelLimit=160, orient="top"))
    y = alt.Y("position:Q", axis=None, scale=alt.Scale(domain=[-0.05, 1.05]))
    trial_lines = (
        alt.Chart(lines)
        .mark_line(opacity=0.8, strokeWidth=2)
        .encode(
            x=x,
            y=y,
            detail="optuna trial:N",
            color=alt.Color("objective:Q", title=metric, scale=alt.Scale(scheme="viridis")),
            tooltip=["optuna trial", "configuration", "axis", "value", alt.Tooltip("objective:Q", format=".4g")],
        )
    )
    rules = alt.Chart(pd.DataFrame({"axis": order})).mark_rule(color="#999").encode(x=x)
    labels = alt.Chart(ticks).mark_text(align="left", dx=4, fontSize=11, color="#333").encode(x=x, y=y, text="text:N")
    return (rules + trial_lines + labels).properties(
        title="Parallel coordinates (each axis: the searched range; log-searched ones on a log scale)", height=300
    )


def _is_percent(metric: str) -> bool:
    return "sparsest" in metric or "remaining" in metric


def _y_scale(metric: str) -> alt.Scale:
    """A % of weights (it spans decades) on a log axis, anything else linear."""
    return alt.Scale(type="log", nice=False) if _is_percent(metric) else alt.Scale(zero=False)


def rounds_chart(per_round: pd.DataFrame, metric: str) -> alt.Chart:
    """The objective of each trial after each round, from the rounds seen so far (what a
    scheduler compares trials on), one line per trial."""
    height = max(280, legend_height(per_round["configuration"].nunique()))
    y_title = axis_title(metric + (" (log scale)" if _is_percent(metric) else ""), height)
    return (
        alt.Chart(per_round)
        .mark_line(point=True)
        .encode(
            x=alt.X("round:Q", title="round", axis=alt.Axis(tickMinStep=1, format="d")),
            y=alt.Y("value:Q", title=y_title, scale=_y_scale(metric)),
            color=alt.Color("configuration:N", scale=series_scale(per_round, "configuration"), legend=_LEGEND),
            tooltip=[
                "optuna trial",
                "configuration",
                "round",
                alt.Tooltip("remaining_pct:Q", format=".3g"),
                alt.Tooltip("value:Q", format=".4g"),
            ],
        )
        .properties(title="Objective after each round, per trial (what ASHA sees)", height=height)
    )


def contour_chart(
    grid: pd.DataFrame, trials: pd.DataFrame, x: str, y: str, metric: str, search: dict
) -> alt.LayerChart:
    """The objective over two parameters, interpolated between the trials (cells), with the trials
    themselves (dots); log-searched parameters on log axes."""

    def scale(p: str) -> alt.Scale:
        if search[p]["type"] == "log_float":
            return alt.Scale(type="log", nice=False)
        return alt.Scale(nice=False, zero=False)

    cells = (
        alt.Chart(grid)
        .mark_rect(opacity=0.85)
        .encode(
            x=alt.X("x:Q", title=x, scale=scale(x)),
            x2="x2:Q",
            y=alt.Y("y:Q", title=y, scale=scale(y)),
            y2="y2:Q",
            color=alt.Color("value:Q", title=metric, scale=alt.Scale(scheme="viridis")),
            tooltip=[alt.Tooltip("value:Q", format=".4g", title=f"{metric} (interpolated)")],
        )
    )
    data = trials.dropna(subset=[metric, x, y]).rename(columns={x: "px", y: "py"})
    dots = (
        alt.Chart(data)
        .mark_point(filled=True, color="white", stroke="black", size=60)
        .encode(x="px:Q", y="py:Q", tooltip=["optuna trial", "configuration", alt.Tooltip(f"{metric}:Q", format=".4g")])
    )
    return (cells + dots).properties(
        title=f"{metric} over {x} and {y} (cells: inverse-distance interpolation; dots: trials)", height=300
    )


def timeline_chart(spans: pd.DataFrame) -> alt.LayerChart:
    """The trials on the wall clock, one bar each, with their compute time (sum of their rounds')."""
    spans = spans.assign(label=[f"#{n}" for n in spans["optuna trial"]])
    y = alt.Y("label:N", title="Optuna trial", sort=list(spans["label"]))
    bars = (
        alt.Chart(spans)
        .mark_bar(height=14)
        .encode(
            x=alt.X("start:T", title="wall clock"),
            x2="end:T",
            y=y,
            color=alt.Color("strategy:N", scale=strategy_scale(list(spans["strategy"]))),
            tooltip=[
                "configuration",
                alt.Tooltip("start:T", format="%H:%M:%S"),
                alt.Tooltip("end:T", format="%H:%M:%S"),
                alt.Tooltip("wall s:Q", format=".0f"),
                alt.Tooltip("compute s:Q", format=".0f", title="compute s (all its rounds)"),
                "lineages",
                "status",
            ],
        )
    )
    text = (
        alt.Chart(spans)
        .mark_text(align="left", dx=4, fontSize=11)
        .encode(x="end:T", y=y, text=alt.Text("compute s:Q", format=".0f"))
    )
    return (bars + text).properties(title="Trial timeline (label: compute seconds)", height=alt.Step(22))


def importance_chart(importance: pd.DataFrame, caveat: str | None = None) -> alt.Chart:
    """One bar per parameter; a multi-objective study gets one panel per objective; `caveat`
    (too few trials) goes in the title."""
    chart = (
        alt.Chart(importance)
        .mark_bar()
        .encode(
            x=alt.X("importance:Q", title="importance"),
            y=alt.Y("parameter:N", sort="-x", title=None, axis=alt.Axis(labelLimit=240)),
            tooltip=["parameter", "objective", alt.Tooltip("importance:Q", format=".3f")],
        )
        .properties(height=alt.Step(28))
    )
    if importance["objective"].nunique() > 1:
        chart = chart.facet(row=alt.Row("objective:N", title=None))
    title = "parameter importance (Optuna)" + (f": {caveat}" if caveat else "")
    return chart.properties(title=title)


def pareto_chart(trials: pd.DataFrame, x: str, y: str) -> alt.Chart:
    points = (
        alt.Chart(trials)
        .mark_circle(size=80)
        .encode(
            x=alt.X(f"{x}:Q", title=x, scale=alt.Scale(type="log", reverse=True, nice=False)),
            y=alt.Y(f"{y}:Q", title=axis_title(y, PARETO_HEIGHT), scale=alt.Scale(zero=False)),
            color=alt.Color(
                "pareto:N", title="Pareto set", scale=alt.Scale(domain=[True, False], range=["#d62728", "#9e9e9e"])
            ),
            tooltip=["optuna trial", alt.Tooltip(f"{x}:Q", format=".2f"), alt.Tooltip(f"{y}:Q", format=".4f")],
        )
    )
    front = alt.Chart(trials[trials["pareto"]].sort_values(x)).mark_line(color="#d62728").encode(x=f"{x}:Q", y=f"{y}:Q")
    return (front + points).properties(title="Pareto front: accuracy vs sparsity", height=PARETO_HEIGHT)


def tree_chart(tokens: list[str], tree, title: str) -> alt.Chart:
    """A constituency tree: leaves along the bottom, each node above the middle of its leaves."""
    nodes, edges = [], []

    def place(t, depth: int) -> tuple[float, int]:
        if isinstance(t, int):
            return float(t), depth
        kids = [place(c, depth + 1) for c in t]
        x = sum(k[0] for k in kids) / len(kids)
        nodes.append({"x": x, "y": -depth})
        for kx, kd in kids:
            edges.append({"x": x, "y": -depth, "x2": kx, "y2": -kd})
        return x, depth

    place(tree, 0)
    bottom = min(e["y2"] for e in edges) - 1 if edges else -1
    leaves = pd.DataFrame({"x": [float(i) for i in range(len(tokens))], "y": bottom, "token": tokens})
    edges_df = pd.DataFrame(edges)
    stems = pd.DataFrame(
        [
            {"x": e["x2"], "y": e["y2"], "x2": e["x2"], "y2": bottom + 0.4}
            for e in edges
            if e["x2"] == int(e["x2"]) and (e["x2"], e["y2"]) not in {(n["x"], n["y"]) for n in nodes}
        ]
    )
    axis: dict[str, Any] = dict(axis=None)
    lines = (
        alt.Chart(pd.concat([edges_df, stems]))
        .mark_rule(color="#555")
        .encode(x=alt.X("x:Q", **axis), y=alt.Y("y:Q", **axis), x2="x2:Q", y2="y2:Q")
    )
    words = alt.Chart(leaves).mark_text(fontSize=13, baseline="top").encode(x="x:Q", y="y:Q", text="token:N")
    return (lines + words).properties(title=title, height=260)


def parse_chart(table: pd.DataFrame) -> alt.LayerChart:
    """Parse F1 per parser (each layer, each trivial tree, a distance-free model) and series: the
    mean over seeds with its 95% band as an error bar."""
    tooltip = [
        "series",
        "parser",
        alt.Tooltip("mean:Q", format=".3f"),
        alt.Tooltip("lo:Q", format=".3f"),
        alt.Tooltip("hi:Q", format=".3f"),
        "n",
    ]
    x = alt.X("parser:N", title=None, sort=list(dict.fromkeys(table["parser"])))
    base = alt.Chart(table).encode(x=x, xOffset="series:N", color=alt.Color("series:N", title="model"))
    bars = base.mark_bar(opacity=0.8).encode(y=alt.Y("mean:Q", title="unlabelled sentence F1"), tooltip=tooltip)
    errors = base.mark_rule(color="black").encode(y="lo:Q", y2="hi:Q")
    return (bars + errors).properties(title="Parse F1 of the dense models (test sentences)", height=320)


def length_chart(table: pd.DataFrame, trained_up_to: int | None) -> alt.LayerChart:
    """Accuracy per length (operators) per series with its 95% band over seeds, the chance line
    (dashed) and a rule after the longest trained length."""
    tooltip = ["series", "length", alt.Tooltip("mean:Q", format=".3f"), alt.Tooltip("chance:Q", format=".3f"), "n"]
    trained = "" if trained_up_to is None else f" (trained on <= {trained_up_to})"
    x = alt.X("length:Q", title=f"operators in the larger formula{trained}")
    chart = _mean_with_band(table, x, alt.Color("series:N", title="model"), "test accuracy", tooltip, zero=False)
    chart += (
        alt.Chart(table.groupby("length", as_index=False)["chance"].mean())
        .mark_line(strokeDash=[4, 4], color="gray")
        .encode(x=x, y="chance:Q", tooltip=[alt.Tooltip("chance:Q", format=".3f")])
    )
    if trained_up_to is not None:
        edge = pd.DataFrame({"x": [trained_up_to + 0.5]})
        chart += alt.Chart(edge).mark_rule(color="gray").encode(x="x:Q")
    return chart.properties(title="Accuracy per operator count (dashed: chance)", height=320)


def sparsity_chart(curves: pd.DataFrame, measure: str, y_title: str) -> alt.LayerChart:
    """One measure of `sequences.sparsity_curves` per series against % remaining, with bands."""
    mine = curves[curves["measure"] == measure]
    return band_chart(mine, f"{y_title} against sparsity", y_title, digits=3, height=320)
