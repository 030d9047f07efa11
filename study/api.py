"""The Python API (`import study`): what a notebook needs, typed and small.

    import study

    spec = study.load_spec("search_spaces/fashion_mnist/lenet300_imp.yaml")   # or a dict
    rows = study.run_lineage(spec, results="results")        # progress bar; one RoundResult per round
    lake = study.Lake("results")
    lake.rounds()                                             # pandas: one row per lineage-round
    lake.export_ticket("adhoc", trial=rows[0].trial_id, round=2, out="ticket.pt")
    ticket = study.load_ticket("ticket.pt")                   # masks, θ_k, trained weights, meta

Everything here is a thin door onto the engine (plain PyTorch), the lake (Parquet) and the search
(Ray Tune); nothing here computes anything they do not."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from study.engine.rows import RoundResult
    from study.engine.spec import LineageSpec
    from study.engine.tickets import Ticket
    from study.search.study_spec import StudySpec
    from study.search.tune import StudyOutcome


def load_spec(source: str | Path | dict[str, Any], **changes: Any) -> LineageSpec:
    """A validated lineage spec from a YAML file or a mapping, with top-level `changes`
    (seed=1, strategy="random_reinit", ...) applied."""
    from study.engine.spec import lineage_spec_from_dict, load_lineage_spec

    spec = lineage_spec_from_dict(source) if isinstance(source, dict) else load_lineage_spec(source)
    if not changes:
        return spec
    return lineage_spec_from_dict({**spec.to_dict(), **changes})


def load_study(path: str | Path) -> StudySpec:
    """A validated study spec from its YAML file."""
    from study.search.study_spec import load_study_spec

    return load_study_spec(path)


def run_lineage(
    spec: LineageSpec | str | Path | dict[str, Any],
    *,
    results: str | Path | None = None,
    study: str = "adhoc",
    trial: str | None = None,
    fresh: bool = False,
    progress: bool | Callable[[int], None] = True,
    device: str | None = None,
    threads: int = 1,
) -> list[RoundResult]:
    """Run (or resume) one lineage and return its rounds (the trunk's; branches' rows are in
    the lake). With `results` (a folder or s3:// prefix) every round is filed in that lake, as
    `study lineage` does; without, nothing is written. `progress`: a tqdm bar (True), none
    (False), or a function told every n iterations done."""
    from study.engine.lineage import Lineage, RunContext
    from study.engine.plan import total_iterations
    from study.engine.spec import LineageSpec
    from study.lake.recorder import LakeLineage

    if not isinstance(spec, LineageSpec):
        spec = load_spec(spec)
    bar = None
    report = progress if callable(progress) else (lambda n: bar.update(n) if bar is not None else None)
    context = RunContext(device=device, threads=threads, on_progress=report if progress else None, pack=False)
    runner: Any = (
        LakeLineage(spec, results, study=study, trial_id=trial, context=context, fresh=fresh).open()
        if results is not None
        else Lineage(spec, context=context, resume=False)
    )
    lineage = runner.lineage if results is not None else runner
    if progress is True:
        from tqdm.auto import tqdm

        done = sum(r.iterations for r in runner.previous)
        bar = tqdm(total=total_iterations(spec, lineage.plan), initial=done, unit="it", desc=spec.strategy)
    try:
        return list(runner.previous) + [rows.trunk for rows in runner]
    finally:
        if bar is not None:
            bar.close()


def run_study(
    study_spec: StudySpec | str | Path, *, address: str | None = None, results: str | None = None
) -> StudyOutcome:
    """Run (or resume) a study on Ray (a local one unless `address`); `results` overrides its lake."""
    from study.search.tune import run_study as run

    spec = load_study(study_spec) if isinstance(study_spec, (str, Path)) else study_spec
    if results is not None:
        spec = dataclasses.replace(spec, storage=dataclasses.replace(spec.storage, results=results))
        spec.validate()
    return run(spec, address=address)


class Lake:
    """A results lake (a folder or s3:// prefix) as pandas frames and Arrow tables, read with its
    canonical schemas; each method reads afresh (a running study's new rows show up)."""

    def __init__(self, root: str | Path) -> None:
        from study.lake.store import normalize_root

        self.root = normalize_root(root)

    def studies(self) -> list[str]:
        from study.lake.compact import lake_studies

        return lake_studies(self.root)

    def arrow(self, table: str, study: str | None = None) -> pa.Table:
        """One table (rounds, lineages, masks, instability, studies) as Arrow, one row per key."""
        from study.lake.reader import read_table

        return read_table(self.root, table, study).table

    def frame(self, table: str, study: str | None = None) -> pd.DataFrame:
        df = self.arrow(table, study).to_pandas()
        for name in df.columns:  # categories as text, maps as dicts: plain to filter and compare
            if str(df[name].dtype) == "category":
                df[name] = df[name].astype(str)
            elif (
                len(df)
                and isinstance(df[name].iloc[0], list)
                and df[name].iloc[0]
                and isinstance(df[name].iloc[0][0], tuple)
            ):
                df[name] = df[name].map(lambda v: dict(v) if v is not None else None)
        return df

    def rounds(self, study: str | None = None) -> pd.DataFrame:
        """One row per lineage-round (branches' dense rounds lent from their trunks)."""
        from study.analysis.paired import share_dense_rounds

        return share_dense_rounds(self.frame("rounds", study))

    def lineages(self, study: str | None = None) -> pd.DataFrame:
        return self.frame("lineages", study)

    def masks(self, study: str | None = None) -> pd.DataFrame:
        return self.frame("masks", study)

    def barriers(self, study: str | None = None) -> pd.DataFrame:
        """The instability table: each measured round's path and error barriers."""
        return self.frame("instability", study)

    def paired(self, study: str | None = None, value: str = "test_acc") -> pd.DataFrame:
        """Trunk − branch per (strategy, model, dataset, config), branch and round: the mean
        over seeds of the paired difference in `value`, its 95% band and the number of pairs."""
        from study.analysis.configs import config_id
        from study.analysis.paired import paired_differences

        rounds = self.frame("rounds", study)
        if rounds.empty:
            return paired_differences(rounds)
        configs = self.lineages(study)[["trial_id", "lineage_id", "config_json"]]
        configs = configs.assign(config=configs["config_json"].map(config_id)).drop(columns="config_json")
        rounds = rounds.merge(configs, on=["trial_id", "lineage_id"], how="left")
        rounds["series"] = rounds["strategy"].str.split(".").str[0] + " " + rounds["model"] + " " + rounds["dataset"]
        return paired_differences(rounds, value, by=("series", "config"))

    def ticket(self, study: str, trial: str, round: int) -> Ticket:
        """A round's ticket (mask, θ_k, trained weights when kept), read from the lake."""
        from study.lake.artifacts import lake_ticket

        return lake_ticket(self.root, study, trial, round)

    def export_ticket(self, study: str, trial: str, round: int, out: str | Path) -> Path:
        """`study ticket export`: the round's ticket as one torch file."""
        from study.lake.artifacts import export_ticket

        return export_ticket(self.root, study, trial, round, out)


def load_ticket(path: str | Path) -> Ticket:
    """A ticket file (`study ticket export`) as masks, θ_k, trained weights and meta."""
    from study.engine.tickets import load_ticket as load

    return load(path)
