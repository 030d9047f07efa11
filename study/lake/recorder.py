"""Run a lineage into the results lake: round rows as they finish, and a lineages row that says
whether it is running, finished, stopped, failed, diverged or degenerate. Used by the CLI and the
Tune adapter.

Nothing is written until the lineage is known to be runnable: its names are checked, the lake is
writable, the trial id does not already hold another lineage (or `fresh` supersedes it), and the
data, model and checkpoint are loaded."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from study.engine.branches import branch_label, branch_lineage_id
from study.engine.checkpoint import CHECKPOINT_FILE, CheckpointMismatch
from study.engine.failures import LineageFailure
from study.engine.lineage import Lineage, LineageHooks, RunContext
from study.engine.rows import InstabilityResult, LineageIds, MaskResult, RoundResult
from study.engine.spec import LineageSpec
from study.engine.train import TrainOutcome, TrainRequest, run_steps
from study.errors import SpecError
from study.lake.artifacts import lake_tickets, trial_weights, write_weights
from study.lake.files import (
    ROUND_TABLES,
    check_name,
    checkpoint_dir,
    fold_rounds,
    matching,
    scratch_dir,
    supersede,
    superseded_dir,
    trial_files,
    write_lineage,
    write_result,
)
from study.lake.schema import LINEAGES_SCHEMA, LineageRow
from study.lake.store import StoreUnavailable, check_s3_lake, is_remote, join, normalize_root, store_for
from study.version import code_version


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def ensure_writable(
    root: str | Path, what: str = "results lake", fix: str = "pass --results with a writable folder"
) -> None:
    """Fail with one line, before anything runs or is created, when the lake cannot be written:
    the lake folder, or the nearest folder above it that exists, must be a writable folder; an
    s3:// lake's endpoint must answer, its bucket exist and the credentials write to it."""
    if is_remote(root):
        check_s3_lake(str(root))
        return
    root = Path(root).expanduser().absolute()
    existing = next(p for p in (root, *root.parents) if p.exists())
    if not existing.is_dir():
        why = f"{existing} is a file"
    else:
        try:  # a probe folder, removed at once: the only sure test (root ignores permission bits)
            os.rmdir(tempfile.mkdtemp(prefix=".write-probe-", dir=existing))
            return
        except OSError as e:
            why = e.strerror or type(e).__name__
    raise SpecError(f"{what} {root} is not writable ({why}); {fix}")


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
    """A lineage that files its rounds and status in the results lake as it runs. Iterate it to
    run one round per step (each yielded after its checkpoint is saved); `previous` holds the
    rounds a resumed lineage had already finished. With `fresh`, whatever the trial id held
    before (rows and checkpoint) is moved under `<root>/_superseded/` and the lineage starts at
    round 0.

    The checkpoint lives in the lake (`_checkpoints/`) on a local lake; on an s3:// lake it is
    saved on this node's disk (`workdir`, else a scratch folder) and uploaded to the lake's
    `_checkpoints/` after every round, so a lineage resumes on any node."""

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
        root = str(root).strip()
        normalize_root(root)  # an empty path or a URI it cannot use is refused here, in one line
        root = root.rstrip("/") if is_remote(root) else str(Path(root).expanduser())
        self.root = root
        self.on_round = on_round
        if trial_id is not None and not trial_id:
            raise SpecError("the trial id is empty; pass --trial NAME, or leave it out to use the lineage's id")
        trial_id = trial_id or spec.lineage_id()
        try:
            check_name("study", study)
            check_name("trial id", trial_id)
        except ValueError as e:
            raise SpecError(str(e)) from None
        ensure_writable(root)
        store = store_for(root)
        self.durable: str | None = None  # the lake's copy of the checkpoint, when the lake is an object store
        self.scratch = False
        if is_remote(root):
            self.durable = join(checkpoint_dir(root, study, trial_id), CHECKPOINT_FILE)
            self.workdir = Path(workdir) if workdir is not None else scratch_dir(root, study, trial_id)
            self.scratch = workdir is None  # ours to remove once the lineage stops: the lake holds the copy
            if fresh or not store.get_file(self.durable, self.workdir / CHECKPOINT_FILE):
                (self.workdir / CHECKPOINT_FILE).unlink(missing_ok=True)  # the lake's copy is the one to resume
        else:
            self.workdir = Path(workdir) if workdir is not None else Path(checkpoint_dir(root, study, trial_id))
        mine = trial_files(root, study, trial_id)
        held, compacted = held_lineages(root, study, trial_id, mine)
        if fresh and compacted:
            raise SpecError(
                f"trial {trial_id} has rows inside the compacted file {compacted[0]}, which --fresh "
                f"cannot supersede; pass a new --trial"
            )
        ours = {spec.lineage_id(), *(branch_lineage_id(spec.lineage_id(), b) for b in spec.branches)}
        if not fresh and held - ours:
            raise SpecError(
                f"trial {trial_id} of study {study} already holds lineage {', '.join(sorted(held))}, "
                f"not this spec's {spec.lineage_id()}; pass another --trial, or --fresh to supersede "
                f"it (its files are kept under {join(root, '_superseded')})"
            )
        if context.tickets is None:  # init_from may name a round of a lake
            context = dataclasses.replace(context, tickets=lake_tickets)
        try:
            self.lineage = Lineage(
                spec,
                ids=LineageIds(study, trial_id),
                workdir=self.workdir,
                context=context,
                hooks=LineageHooks(
                    on_round=self._record,
                    on_instability=lambda r: self._write("instability", r),
                    on_mask=lambda r: self._write("masks", r),
                    on_weights=lambda r: write_weights(root, r),
                ),
                resume=not fresh,
            )
        except CheckpointMismatch:
            raise SpecError(
                f"the checkpoint of trial {trial_id} belongs to another config; pass another "
                f"--trial, or --fresh to start this spec over"
            ) from None
        started = now()
        if fresh:
            target = supersede(root, study, trial_id) or superseded_dir(root)
            dest = join(target, "checkpoint", trial_id, CHECKPOINT_FILE)
            for path in trial_weights(root, study, trial_id):  # the old lineage's θ_k and trained weights
                store.move(path, join(target, path[len(root.rstrip("/")) + 1 :]))
            if self.durable is not None and store.exists(self.durable):
                store.move(self.durable, dest)
            elif self.durable is None and (self.workdir / CHECKPOINT_FILE).is_file():
                store.move(str(self.workdir / CHECKPOINT_FILE), dest)
        else:
            started = self._started_at(mine) or started
        self.row = LineageRow(
            study=study,
            strategy=spec.strategy,
            trial_id=trial_id,
            lineage_id=spec.lineage_id(),
            config_hash=spec.config_hash(),
            model=spec.model,
            dataset=spec.dataset,
            seed=spec.seed,
            rounds_planned=self.lineage.plan.rounds[-1],
            config_json=json.dumps(spec.to_dict(), sort_keys=True),
            optuna_trial_number=optuna_trial_number,
            node_id=node_id,
            device=str(self.lineage.device),
            code_version=code_version(),
            started_at=started,
            init_from=spec.init_from.describe() if spec.init_from else None,
        )
        self.branch_rows = {  # each branch's lineages row: the trunk's, but for its identity
            b: dataclasses.replace(
                self.row,
                strategy=branch_label(spec.strategy, b),
                lineage_id=branch_lineage_id(spec.lineage_id(), b),
                branch=b,
                trunk_lineage_id=spec.lineage_id(),
            )
            for b in spec.branches
        }
        self.branch_done = {r.branch: r.round + 1 for r in self.lineage.state.branch_results if r.branch}
        self.previous = self.lineage.previous
        self.done = self.previous[-1].round + 1 if self.previous else 0
        self.status("running")

    def _finish(self) -> None:
        try:  # one file per finished lineage, before it says finished (compaction waits for that)
            for strategy in (self.row.strategy, *(r.strategy for r in self.branch_rows.values())):
                for kind in ROUND_TABLES:
                    fold_rounds(self.root, self.row.study, strategy, self.row.trial_id, kind)
        except OSError:
            pass  # folding only saves reads: the per-round files stay and every reader takes them
        self.status("finished")

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

    def status(self, state: str, error: str | None = None) -> None:
        """File the lineage's status: its branches' first (the trunk's status; the rounds a
        branch failed to train are named in its error), the trunk's last, so a trunk filed
        finished means its branches are filed too."""
        self.status_name = state
        for name in self.branch_rows:
            self._branch_status(name, state, error)
        row = dataclasses.replace(self.row, status=state, error=error, rounds_done=self.done, updated_at=now())
        write_lineage(self.root, dataclasses.asdict(row))

    def _branch_status(self, name: str, state: str, error: str | None) -> None:
        failed = self.lineage.state.branch_failures.get(name)
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
            self.status("running")
        else:
            self.branch_done[result.branch] = result.round + 1
            self._branch_status(result.branch, "running", None)
        if self.on_round:
            self.on_round(result)

    def __iter__(self):
        return self

    def __next__(self) -> RoundResult:
        row = run_steps(self.steps())
        if row is None:
            raise StopIteration
        return row

    def steps(self) -> Generator[list[TrainRequest], list[TrainOutcome], RoundResult | None]:
        """`Lineage.steps` into the lake: the next round's trainings, then its row (None: the
        lineage finished), with the lineage's status filed as it ends, however it ends."""
        try:
            row = yield from self._steps()
        except BaseException:
            row = None
            raise
        finally:
            if self.scratch and row is None:  # over: the lake's copy is the one to resume from
                shutil.rmtree(self.workdir, ignore_errors=True)
        return row

    def _steps(self) -> Generator[list[TrainRequest], list[TrainOutcome], RoundResult | None]:
        try:
            result = yield from self.lineage.steps()
            if result is not None:
                if self.durable is not None:  # the node's checkpoint to the lake, so any node resumes it
                    store_for(self.durable).put_file(self.workdir / CHECKPOINT_FILE, self.durable)
                if self.lineage.finished:  # filed finished before anyone sees its last row (and may stop it)
                    self._finish()
                return result
            if self.status_name != "finished":
                self._finish()
            return None
        except LineageFailure as e:
            self.status(e.status, str(e))
            raise
        except GeneratorExit:  # closed mid-round by what drove it (a packed sibling's crash ends their task):
            raise  # like a killed task's, its status stays running for the trial's retry or the driver to file
        except (KeyboardInterrupt, SystemExit) as e:  # interrupted, not broken: a re-run resumes it
            self.status("stopped", f"interrupted ({type(e).__name__}) in round {self.done}")
            raise
        except BaseException as e:
            self.status("failed", f"{type(e).__name__}: {e}".splitlines()[0])
            raise


def run_to_lake(spec: LineageSpec, root: str | Path, **kwargs: Any) -> list[RoundResult]:
    """Run (or resume) a lineage into the lake; returns all its rounds."""
    lineage = LakeLineage(spec, root, **kwargs)
    return list(lineage.previous) + list(lineage)
