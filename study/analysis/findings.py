"""What a study found, stated in one block: the best configuration and its validation objective,
its test accuracy with a 95% interval over seeds, the sparsest ticket of each strategy at that
strategy's best configuration, the paired ticket − control difference where branches exist, and
the caveats that limit what these numbers say. The report, the Strategies page and `study
results --study` print this same block.

Selection reads validation data only: configurations are ranked by the study's objective on
seed-mean validation accuracy (`analysis.objectives`), tickets are the sparsest rounds within the
tolerance of dense on validation; test accuracy is read at the round selection chose."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from study.analysis.bands import mean_band
from study.analysis.configs import flat_config, short_name
from study.analysis.objectives import OBJECTIVES, ObjectiveSpec, RoundPoint
from study.analysis.paired import paired_differences

MIN_SEEDS = 3  # below this a t interval over seeds is too wide to separate much (t95 with 1 dof: 12.7)
MIN_TRIALS_FOR_IMPORTANCE = 20  # parameter importance from fewer trials is mostly noise
EARLY_STOP_AT_END = 0.5  # share of rounds early-stopped at their last evaluation that gets a caveat


def pct(value: float) -> str:
    """A % of weights at 3 significant digits: 53.6%, 7.81%, 0.512%."""
    digits = max(0, 2 - math.floor(math.log10(abs(value)))) if value else 0
    return f"{value:.{digits}f}%"


def acc(value: float) -> str:
    return f"{value:.3f}"


def diff(value: float) -> str:
    return f"{value:+.3f}"


def interval(lo: float, hi: float, fmt=acc) -> str:  # noqa: ANN001  (a formatter above)
    return f"[{fmt(lo)}, {fmt(hi)}]"


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds with its 95% t interval (one seed: no width)."""

    mean: float
    lo: float
    hi: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Estimate:
        mean, lo, hi = mean_band(values)
        return cls(mean, lo, hi, len(values))

    def text(self, fmt=acc) -> str:  # noqa: ANN001
        seeds = f"{self.n} seed{'s' if self.n != 1 else ''}"
        if self.n < 2:
            return f"{fmt(self.mean)} ({seeds}, no interval)"
        return f"{fmt(self.mean)}, 95% CI {interval(self.lo, self.hi, fmt)}, {seeds}"


@dataclass(frozen=True)
class Ticket:
    """A configuration's sparsest round within the tolerance of its dense round (validation)."""

    label: str
    config_id: str
    strategy: str
    round: int
    last_round: int
    remaining_pct: float
    val_acc: float
    dense_val_acc: float
    test: Estimate
    dense_test: float

    @property
    def at_last_round(self) -> bool:
        return self.round == self.last_round and self.round > 0


@dataclass(frozen=True)
class Configuration:
    """One configuration's seed means, its objective (validation) and its ticket."""

    label: str
    config_id: str
    strategy: str
    branch: bool  # a paired control (its rows are the branch's, its dense round its trunk's)
    seeds: int
    value: float | None  # the objective's first metric; None: no complete round yet
    selected: int | None  # the round the objective is read from
    test_at_selected: Estimate | None
    remaining_at_selected: float | None
    ticket: Ticket | None


@dataclass(frozen=True)
class Paired:
    label: str  # the trunk configuration
    branch: str
    round: int
    remaining_pct: float
    difference: Estimate


@dataclass(frozen=True)
class Findings:
    objective: str
    metric: str
    mode: str
    tolerance: float
    best: Configuration | None
    tickets: list[Ticket]
    paired: list[Paired]
    caveats: list[str] = field(default_factory=list)
    configurations: list[Configuration] = field(default_factory=list)  # best first, each trunk's branches after it

    def lines(self) -> list[str]:
        """The block as text, one statement a line (the caveats last, each starting '- ')."""
        out = []
        tol = f"{self.tolerance * 100:g} point{'s' if self.tolerance != 0.01 else ''}"
        if self.best is None:
            out.append("No configuration has a complete round yet: nothing to conclude.")
        else:
            b = self.best
            value = "-" if b.value is None else _metric_text(self.metric, b.value)
            out.append(
                f"Best configuration: {b.label} (config {b.config_id}), {self.objective} ({self.mode}) = {value} "
                f"on validation data."
            )
            if b.test_at_selected is not None and b.selected is not None:
                where = f"round {b.selected}" + (
                    f", {pct(b.remaining_at_selected)} of weights left" if b.remaining_at_selected is not None else ""
                )
                out.append(f"Its test accuracy there ({where}): {b.test_at_selected.text()}.")
        if self.tickets:
            out.append(
                f"Sparsest ticket per strategy, each at its best configuration (within {tol} of dense on validation):"
            )
            for t in self.tickets:
                last = " (its last round)" if t.at_last_round else ""
                out.append(
                    f"  {t.strategy}: {pct(t.remaining_pct)} left at round {t.round}{last}, {t.label}; "
                    f"test {t.test.text()}; dense test {acc(t.dense_test)}."
                )
        for p in self.paired:
            out.append(
                f"Ticket − {p.branch} (paired per seed, test accuracy), {p.label} at {pct(p.remaining_pct)} left "
                f"(round {p.round}): {p.difference.text(diff)}."
            )
        if self.caveats:
            out.append("Caveats:")
            out += [f"- {c}" for c in self.caveats]
        return out


def _metric_text(metric: str, value: float) -> str:
    return f"{pct(value)} of weights left" if "sparsest" in metric or "remaining" in metric else f"{value:.4g}"


def _points(trunk: pd.DataFrame) -> tuple[list[RoundPoint], list[int], int]:
    """Seed-mean points of the rounds every seed finished (in order, up to the first gap), their
    round numbers and the number of seeds."""
    seeds = trunk["trial_id"].nunique()
    points: list[RoundPoint] = []
    rounds: list[int] = []
    for round_, g in trunk.groupby("round", sort=True):
        if g["trial_id"].nunique() < seeds or round_ != len(rounds):
            break
        barrier = g["val_error_barrier"] if "val_error_barrier" in g else pd.Series(dtype=float)
        loss = g["val_loss"] if "val_loss" in g else pd.Series(dtype=float)
        points.append(
            RoundPoint(
                float(g["remaining_pct"].mean()),
                float(g["val_acc"].mean()),
                float(g["test_acc"].mean()),
                float(barrier.mean()) if len(barrier) and barrier.notna().all() else None,
                float(loss.mean()) if len(loss) and loss.notna().all() else None,
            )
        )
        rounds.append(int(round_))
    return points, rounds, seeds


def _test_at(rows: pd.DataFrame, round_: int) -> Estimate:
    return Estimate.of([float(v) for v in rows.loc[rows["round"] == round_, "test_acc"].dropna()])


def _configuration(trunk: pd.DataFrame, objective: ObjectiveSpec, ticket_rule: ObjectiveSpec) -> Configuration:
    points, rounds, seeds = _points(trunk)
    first = trunk.iloc[0]
    label, cid, strategy = str(first["config_label"]), str(first["config_id"]), str(first["strategy"])
    branch = "branch" in trunk and pd.notna(first["branch"])
    if not points:
        return Configuration(label, cid, strategy, branch, seeds, None, None, None, None, None)
    value = objective.values(points)[objective.metrics[0]]
    chosen = objective.selected(points)
    ticket = None
    i = ticket_rule.selected(points)
    if i is not None and len(points) > 1:
        ticket = Ticket(
            label,
            cid,
            strategy,
            rounds[i],
            rounds[-1],
            points[i].remaining_pct,
            points[i].val_acc,
            points[0].val_acc,
            _test_at(trunk, rounds[i]),
            float(points[0].test_acc or 0.0),
        )
    return Configuration(
        label,
        cid,
        strategy,
        branch,
        seeds,
        value,
        None if chosen is None else rounds[chosen],
        None if chosen is None else _test_at(trunk, rounds[chosen]),
        None if chosen is None else points[chosen].remaining_pct,
        ticket,
    )


def _rank(configs: list[Configuration], mode: str) -> list[Configuration]:
    scored = [c for c in configs if c.value is not None and math.isfinite(c.value)]
    return sorted(scored, key=lambda c: (-c.value if mode == "max" else c.value, c.label))  # type: ignore[operator]


def _settings(config_json: str | None) -> dict[str, str]:
    if not isinstance(config_json, str):
        return {}

    cfg = {k: json.dumps(v, sort_keys=True) for k, v in flat_config(json.loads(config_json)).items()}
    for ignored in ("seed", "strategy", "branches", "data.root"):
        cfg.pop(ignored, None)
    return cfg


def study_findings(
    rounds: pd.DataFrame,
    configs: Mapping[str, str | None],
    objective: ObjectiveSpec | None = None,
    searched: Mapping[str, Mapping] | None = None,
    trials_done: int | None = None,
) -> Findings:
    """The findings of one study from its healthy rounds (failed lineages left out, branches'
    dense rounds shared: `analysis.paired.share_dense_rounds`; columns `config_id` and
    `config_label` from the lineages). `configs` maps a config id to its lineage config JSON;
    `objective` is the study's (a study run lineage by lineage: the sparsest ticket
    within 1 point); `searched` its searched parameters and `trials_done` its finished trials
    (for the importance caveat)."""
    if objective is None or objective.name not in OBJECTIVES:
        objective = ObjectiveSpec(tolerance=objective.tolerance if objective else ObjectiveSpec.tolerance)
    tolerance = objective.tolerance
    ticket_rule = ObjectiveSpec("sparsest_within", tolerance)
    spec = objective.objective
    metric, mode = spec.metrics[0], spec.modes[0]
    every = [
        _configuration(g.sort_values("round"), objective, ticket_rule)
        for _, g in rounds.groupby(["config_id", "strategy"], sort=True)
    ]
    configurations = [c for c in every if not c.branch]  # a branch is its trunk's control, never a candidate
    ranked = _rank(configurations, mode)
    best = None if spec.multi or not ranked else ranked[0]
    by_strategy: dict[str, Configuration] = {}
    for c in ranked if not spec.multi else _rank(configurations, "min" if "sparsest" in metric else mode):
        by_strategy.setdefault(c.strategy, c)
    # a strategy whose configurations have no objective value yet still shows its ticket
    for c in configurations:
        if c.ticket is not None:
            by_strategy.setdefault(c.strategy, c)
    tickets = [c.ticket for c in by_strategy.values() if c.ticket is not None]
    tickets.sort(key=lambda t: (t.remaining_pct, t.strategy))

    paired = []
    for t in tickets:
        mine = rounds[rounds["config_id"] == t.config_id]
        pairs = paired_differences(mine, "test_acc", by=("config_id",))
        for _, p in pairs[pairs["round"] == t.round].iterrows():
            branch = str(p["pair"]).split(" − ", 1)[1]
            estimate = Estimate(float(p["mean"]), float(p["lo"]), float(p["hi"]), int(p["n"]))
            paired.append(Paired(t.label, branch, t.round, float(p["remaining_pct"]), estimate))

    caveats = []
    at_last = [t for t in tickets if t.at_last_round]
    if at_last:
        which = ", ".join(f"{t.strategy} ({pct(t.remaining_pct)} left)" for t in at_last)
        caveats.append(
            f"Ticket at the last round: {which}. The {tolerance * 100:g}-point tolerance was never crossed, so "
            f"sparser tickets may exist and the objective measures the prune rate, not the ticket; run more "
            f"rounds or set target_remaining."
        )
    seeds = sorted({c.seeds for c in configurations})
    if seeds and seeds[0] < MIN_SEEDS:
        caveats.append(
            f"{seeds[0]} seed{'s' if seeds[0] != 1 else ''} per configuration: 95% intervals over so few seeds are "
            f"wide (or absent); use {MIN_SEEDS} or more seeds to separate configurations."
        )
    differ = _differing(by_strategy.values(), configs, searched)
    if len(by_strategy) > 1 and differ:
        caveats.append(
            f"Strategies are compared at different hyper-parameters ({', '.join(differ)} differ between their best "
            f"configurations): part of a difference may be the setting, not the strategy."
        )
    at_end = _early_stopped_at_end(rounds)
    if at_end is not None and at_end[0] > EARLY_STOP_AT_END * at_end[1]:
        caveats.append(
            f"{at_end[0]} of {at_end[1]} rounds early-stopped at their last evaluation: validation loss was still "
            f"falling, so accuracies are those of under-trained networks; raise train.iterations."
        )
    if searched and trials_done is not None and trials_done < MIN_TRIALS_FOR_IMPORTANCE:
        caveats.append(
            f"{trials_done} finished trial{'s' if trials_done != 1 else ''} over {len(searched)} searched "
            f"parameter{'s' if len(searched) != 1 else ''}: parameter importance from fewer than "
            f"{MIN_TRIALS_FOR_IMPORTANCE} trials is mostly noise."
        )
    if spec.multi:
        caveats.append(f"{objective.name} has no single best configuration: the Pareto set is on the Search page.")
    order: dict[str, int] = {}
    for c in [*ranked, *configurations]:
        order.setdefault(c.config_id, len(order))
    every.sort(key=lambda c: (order.get(c.config_id, len(order)), c.branch, c.strategy))
    return Findings(objective.name, metric, mode, tolerance, best, tickets, paired, caveats, every)


def _differing(best: object, configs: Mapping[str, str | None], searched: Mapping[str, Mapping] | None) -> list[str]:
    """The settings (short names) that differ between the strategies' best configurations, over
    the settings every one of them has."""
    settings = [_settings(configs.get(c.config_id)) for c in best]  # type: ignore[attr-defined]
    if len(settings) < 2:
        return []
    shared = set.intersection(*(set(s) for s in settings))
    keys = sorted(k for k in shared if len({s[k] for s in settings}) > 1)
    names = list(searched or {}) + keys
    return [short_name(k, names) for k in keys]


def _early_stopped_at_end(rounds: pd.DataFrame) -> tuple[int, int] | None:
    """(rounds whose early-stop iteration is their last evaluation, rounds) over trunks and branches."""
    if "curve_iteration" not in rounds or rounds.empty:
        return None
    if "branch" in rounds:  # a branch's dense round is its trunk's, counted once
        rounds = rounds[rounds["branch"].isna() | (rounds["round"] > 0)]
    last = [max(c) if c is not None and len(c) else None for c in rounds["curve_iteration"]]
    pairs = [(int(e), int(x)) for e, x in zip(rounds["early_stop_iteration"], last, strict=True) if x is not None]
    if not pairs:
        return None
    return sum(e >= x for e, x in pairs), len(pairs)
