"""Run a lineage into the results lake: round rows as they finish, and a lineages row that says
whether it is running, finished, stopped, failed, diverged or degenerate. Used by the CLI and the
Tune adapter.

Nothing is written until the lineage is known to be runnable (`LakeLineage.open`, one named step
each): its names are checked, the lake is writable, the trial id does not already hold another
lineage (or `fresh` supersedes it), and the data, model and checkpoint are loaded."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from study.engine.branches import branch_label, branch_lineage_id
from study.engine.checkpoint import CHECKPOINT_FILE, CheckpointMismatch
from study.engine.failures import LineageFailure
from study.engine.lineage import Lineage, LineageHooks, RunContext
from study.engine.rows import InstabilityResult, LineageIds, LineageStatus, MaskResult, RoundResult, RoundRows
from study.engine.spec import LineageSpec
from study.engine.train import TrainOutcome, TrainRequest, run_steps
from study.errors import SpecError
from study.lake.artifacts import lake_tickets, trial_weights, write_weights
from study.lake.files import (
    ROUND_TABLES,
    check_name,
    checkpoint_place,
    fold_rounds,
    matching,
    supersede,
    superseded_dir,
    trial_files,
    write_lineage,
    write_result,
)
from study.lake.schema import LINEAGES_SCHEMA, LineageRow
from study.lake.store import StoreUnavailable, check_writable, join, normalize_root, store_for
from study.version import code_version


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def held_lineages(root: str | Path, study: str, trial_id: str, files: list[str]) -> tuple[set[str], list[str]]:
    """The lineage ids the lake holds under this trial id (in its own `files`, from `trial_files`,
    and its rows inside compacted files), and the compacted files that hold some. An unreadable
    file of the trial is an error that names it."""
    held: set[str] = set()
    store = store_for(root)
    for path in files:
        try:
            held.update(store.read_table(path, columns=["lineage_id"])["lineage_id"].to_pylist())
        except StoreUnavailable:
            raise  # the store did not answer: nothing is known about the file
        except Exception:
            raise SpecError(
                f"{path} is unreadable; move it away (or pass --fresh to supersede trial {trial_id})"
            ) from None
    compacted = []
    for path in matching(root, f"rounds/study={study}", ["strategy=*/compact-*.parquet"]):
        try:
            rows = store.read_table(path, columns=["trial_id", "lineage_id"]).to_pylist()
        except StoreUnavailable:
            raise
        except Exception:
            continue  # the reader names it; it holds nothing we can match
        mine = {r["lineage_id"] for r in rows if r["trial_id"] == trial_id}
        if mine:
            held |= mine
            compacted.append(path)
    return held, compacted


class LakeLineage:
    """A lineage that files its rounds and status in the results lake as it runs. Built, it has
    done nothing (names checked, the lake's root and checkpoint place resolved); `open()` runs
    the steps that must all pass before anything is written: the lake is writable, the trial id
    holds no other lineage (or `fresh` supersedes it: whatever it held, rows and checkpoint, is
    moved under `<root>/_superseded/`), the lineage's data, model and checkpoint load; then it
    files the lineage 'running'. Iterate it to run one round per step (each yielded after its
    checkpoint is saved); `previous` holds the rounds a resumed lineage had already finished.
    Where its checkpoint lives is its lake's store's choice (`store.CheckpointPlace`)."""

    def __init__(
        self,
        spec: LineageSpec,
        root: str | Path,
        *,
        study: str = "adhoc",
        trial_id: str | None = None,
        workdir: str | Path | None = None,
        context: RunContext = RunContext(),
        optuna_trial_number: int | None = None,
        node_id: str | None = None,
        on_round: Callable[[RoundResult], None] | None = None,
        fresh: bool = False,
    ) -> None:
        self.spec, self.context, self.on_round, self.fresh = spec, context, on_round, fresh
        self.optuna_trial_number, self.node_id = optuna_trial_number, node_id
        self.root = normalize_root(root)  # an empty path or a URI it cannot use is refused here, in one line
        if trial_id is not None and not trial_id:
            raise SpecError("the trial id is empty; pass --trial NAME, or leave it out to use the lineage's id")
        self.study, self.trial_id = study, trial_id or spec.lineage_id()
        try:
            check_name("study", self.study)
            check_name("trial id", self.trial_id)
        except ValueError as e:
            raise SpecError(str(e)) from None
        self.place = checkpoint_place(self.root, self.study, self.trial_id, Path(workdir) if workdir else None)
        self._lineage: Lineage | None = None
        self.status_name: LineageStatus | None = None

    @property
    def lineage(self) -> Lineage:
        assert self._lineage is not None, "LakeLineage.open() builds the lineage"
        return self._lineage

    @property
    def workdir(self) -> Path:
        """The folder on this node the lineage saves its checkpoint to after every round."""
        return self.place.folder

    def open(self) -> LakeLineage:
        """Check, load and file the lineage 'running' (see the class); returns itself."""
        check_writable(self.root)
        self.place.fetch(CHECKPOINT_FILE, self.fresh)
        files = trial_files(self.root, self.study, self.trial_id)
        self.check_trial(files)
        self._lineage = self.build_lineage()
        started = self.supersede() if self.fresh else (self._started_at(files) or now())
        self.row = self.lineage_row(started)
        self.branch_rows = {  # each branch's lineages row: the trunk's, but for its identity
            b: dataclasses.replace(
                self.row,
                strategy=branch_label(self.spec.strategy, b),
                lineage_id=branch_lineage_id(self.spec.lineage_id(), b),
                branch=b,
                trunk_lineage_id=self.spec.lineage_id(),
            )
            for b in self.spec.branches
        }
        self.branch_done = {
            r.branch: r.round + 1 for rows in self.lineage.previous_rounds for r in rows.branches if r.branch
        }
        self.previous = self.lineage.previous
        self.done = self.previous[-1].round + 1 if self.previous else 0
        self.status(LineageStatus.RUNNING)
        return self

    def check_trial(self, files: list[str]) -> None:
        """The trial id holds no lineage but this spec's trunk and branches (unless `fresh`)."""
        spec, trial_id = self.spec, self.trial_id
        held, compacted = held_lineages(self.root, self.study, trial_id, files)
        if self.fresh and compacted:
            raise SpecError(
                f"trial {trial_id} has rows inside the compacted file {compacted[0]}, which --fresh "
                f"cannot supersede; pass a new --trial"
            )
        ours = {spec.lineage_id(), *(branch_lineage_id(spec.lineage_id(), b) for b in spec.branches)}
        if not self.fresh and held - ours:
            raise SpecError(
                f"trial {trial_id} of study {self.study} already holds lineage {', '.join(sorted(held))}, "
                f"not this spec's {spec.lineage_id()}; pass another --trial, or --fresh to supersede "
                f"it (its files are kept under {join(self.root, '_superseded')})"
            )

    def build_lineage(self) -> Lineage:
        """The engine's lineage, its hooks filing into the lake (its data, model and checkpoint loaded)."""
        context = self.context
        if context.tickets is None:  # init_from may name a round of a lake
            context = dataclasses.replace(context, tickets=lake_tickets)
        try:
            return Lineage(
                self.spec,
                ids=LineageIds(self.study, self.trial_id),
                workdir=self.place.folder,
                context=context,
                hooks=LineageHooks(
                    on_round=self._record,
                    on_instability=lambda r: self._write("instability", r),
                    on_mask=lambda r: self._write("masks", r),
                    on_weights=lambda r: write_weights(self.root, r),
                ),
                resume=not self.fresh,
            )
        except CheckpointMismatch:
            raise SpecError(
                f"the checkpoint of trial {self.trial_id} belongs to another config; pass another "
                f"--trial, or --fresh to start this spec over"
            ) from None

    def supersede(self) -> dt.datetime:
        """Move what the trial id held (rows, status, θ_k and trained weights, checkpoint) under
        `_superseded/`; returns the new lineage's start."""
        target = supersede(self.root, self.study, self.trial_id) or superseded_dir(self.root)
        store = store_for(self.root)
        for path in trial_weights(self.root, self.study, self.trial_id):  # the old lineage's θ_k and trained weights
            store.move(path, join(target, path[len(self.root.rstrip("/")) + 1 :]))
        self.place.move(CHECKPOINT_FILE, join(target, "checkpoint", self.trial_id, CHECKPOINT_FILE))
        return now()

    def lineage_row(self, started: dt.datetime) -> LineageRow:
        spec = self.spec
        return LineageRow(
            study=self.study,
            strategy=spec.strategy,
            trial_id=self.trial_id,
            lineage_id=spec.lineage_id(),
            config_hash=spec.config_hash(),
            model=spec.model,
            dataset=spec.dataset,
            seed=spec.seed,
            rounds_planned=self.lineage.plan.rounds[-1],
            config_json=json.dumps(spec.to_dict(), sort_keys=True),
            optuna_trial_number=self.optuna_trial_number,
            node_id=self.node_id,
            device=str(self.lineage.device),
            code_version=code_version(),
            started_at=started,
            init_from=spec.init_from.describe() if spec.init_from else None,
        )

    def _finish(self) -> None:
        try:  # one file per finished lineage, before it says finished (compaction waits for that)
            for strategy in (self.row.strategy, *(r.strategy for r in self.branch_rows.values())):
                for kind in ROUND_TABLES:
                    fold_rounds(self.root, self.row.study, strategy, self.row.trial_id, kind)
        except OSError:
            pass  # folding only saves reads: the per-round files stay and every reader takes them
        self.status(LineageStatus.FINISHED)

    def _started_at(self, files: list[str]) -> dt.datetime | None:
        for path in files:
            if path.split("/")[-4] == "lineages":
                try:
                    return store_for(path).read_table(path, schema=LINEAGES_SCHEMA)["started_at"][0].as_py()
                except StoreUnavailable:
                    raise
                except Exception:
                    return None
        return None

    def status(self, state: LineageStatus, error: str | None = None) -> None:
        """File the lineage's status: its branches' first (the trunk's status; the rounds a
        branch failed to train are named in its error), the trunk's last, so a trunk filed
        finished means its branches are filed too."""
        self.status_name = state
        for name in self.branch_rows:
            self._branch_status(name, state, error)
        row = dataclasses.replace(self.row, status=state, error=error, rounds_done=self.done, updated_at=now())
        write_lineage(self.root, dataclasses.asdict(row))

    def _branch_status(self, name: str, state: LineageStatus, error: str | None) -> None:
        failed = self.lineage.branch_failures.get(name)
        if failed:  # its healthy rounds count; the failed ones have no row
            error = "; ".join([*failed, *([error] if error else [])])
        done = self.branch_done.get(name, min(self.done, 1))  # round 0, the dense round, is the trunk's and theirs
        row = dataclasses.replace(self.branch_rows[name], status=state, error=error, rounds_done=done, updated_at=now())
        write_lineage(self.root, dataclasses.asdict(row))

    def _write(self, kind: str, result: RoundResult | InstabilityResult | MaskResult) -> None:
        """One of the engine's results as its table's row, stamped with when the lake wrote it."""
        write_result(self.root, kind, {**result.as_row(), "written_at": now()})

    def _record(self, result: RoundResult) -> None:
        """A round's row (the trunk's first, then its branches'), then the status that counts it."""
        self._write("rounds", result)
        if result.branch is None:
            self.done = result.round + 1
            self.status(LineageStatus.RUNNING)
        else:
            self.branch_done[result.branch] = result.round + 1
            self._branch_status(result.branch, LineageStatus.RUNNING, None)
        if self.on_round:
            self.on_round(result)

    def __iter__(self):
        return self

    def __next__(self) -> RoundRows:
        rows = run_steps(self.steps())
        if rows is None:
            raise StopIteration
        return rows

    def steps(self) -> Generator[list[TrainRequest], list[TrainOutcome], RoundRows | None]:
        """`Lineage.steps` into the lake: the next round's trainings, then its rows (None: the
        lineage finished), with the lineage's status filed as it ends, however it ends."""
        rows = None
        try:
            rows = yield from self._steps()
        finally:
            if rows is None:  # over: the lake's copy is the one to resume from
                self.place.release()
        return rows

    def _steps(self) -> Generator[list[TrainRequest], list[TrainOutcome], RoundRows | None]:
        try:
            rows = yield from self.lineage.steps()
            if rows is not None:
                self.place.upload(CHECKPOINT_FILE)  # the node's checkpoint to the lake, so any node resumes it
                if self.lineage.finished:  # filed finished before anyone sees its last row (and may stop it)
                    self._finish()
                return rows
            if self.status_name != LineageStatus.FINISHED:
                self._finish()
            return None
        except LineageFailure as e:
            self.status(e.status, str(e))
            raise
        except GeneratorExit:  # closed mid-round by what drove it (a packed sibling's crash ends their task):
            raise  # like a killed task's, its status stays running for the trial's retry or the driver to file
        except (KeyboardInterrupt, SystemExit) as e:  # interrupted, not broken: a re-run resumes it
            self.status(LineageStatus.STOPPED, f"interrupted ({type(e).__name__}) in round {self.done}")
            raise
        except BaseException as e:
            self.status(LineageStatus.FAILED, f"{type(e).__name__}: {e}".splitlines()[0])
            raise


def run_to_lake(spec: LineageSpec, root: str | Path, **kwargs: Any) -> list[RoundResult]:
    """Run (or resume) a lineage into the lake; returns its trunk's rows, every round's."""
    lineage = LakeLineage(spec, root, **kwargs).open()
    return list(lineage.previous) + [rows.trunk for rows in lineage]
