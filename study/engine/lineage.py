"""The IMP lineage: train dense, then repeatedly prune, reset (per strategy) and retrain.

Plain PyTorch; knows nothing of Ray or Parquet. `Lineage(spec)` runs one round per `next()`;
`run_lineage(spec)` runs them all. With a `workdir` it checkpoints after every round and a
re-run with the same spec resumes after the last finished round.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from study.engine.branches import BranchStep, branch_label, branch_lineage_id
from study.engine.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from study.engine.cost import cost, weight_positions
from study.engine.data import SharedTasks
from study.engine.failures import LineageDegenerate, LineageFailure
from study.engine.instability import barrier, linear_path
from study.engine.plan import LineagePlan, build_lineage_model, instability_copies, plan_lineage, total_iterations
from study.engine.pruning import Mask, apply_mask, dense_mask, remaining
from study.engine.registry import branch, dataset_info, model_packs, strategy
from study.engine.rows import InstabilityResult, LineageIds, MaskResult, RoundResult, RoundRows
from study.engine.seeding import derive_seed
from study.engine.spec import LineageSpec
from study.engine.state import LineageState, StateDict, clone_state
from study.engine.strategies import PruneStep, RoundStart
from study.engine.task import HasRoundMetrics, Task
from study.engine.tickets import Ticket, TicketRef, WeightsResult, file_tickets
from study.engine.train import (
    CaptureWeights,
    KeepBest,
    ReportProgress,
    TrainCallback,
    TrainOutcome,
    TrainRequest,
    TrainResult,
    resolve_device,
    run_steps,
)
from study.version import code_version

Steps = Generator[list[TrainRequest], list[TrainOutcome], Any]  # yields trainings, is sent their outcomes


@dataclass(frozen=True)
class RunContext:
    """Where and how a lineage runs; none of it is part of the lineage's identity.
    `threads`: torch's CPU threads. Float sums round differently with another thread count, so a
    row depends on it: it is a setting (1 unless asked; a study's tasks take `resources.cpu`),
    never the machine's core count, and every row records it.
    `on_progress(n)` is told every n training iterations done (resumed rounds at once)."""

    device: str | torch.device | None = None
    threads: int = 1
    on_progress: Callable[[int], None] | None = None
    tasks: SharedTasks | None = None  # lineages packed in one process share their data
    tickets: Callable[[TicketRef], Ticket] | None = None  # resolves init_from (default: ticket files only)
    # its trainings may be stacked with others (engine/packing); lone drivers (study lineage,
    # study.run_lineage) say False and spare judging a user's model
    pack: bool = True


@dataclass(frozen=True)
class LineageHooks:
    """`on_round(result)` is called for each row of a finished round (the trunk's, then its
    branches'), before the round's checkpoint is written (a crash in between re-runs and
    re-reports that round). `on_reset(round, model, mask)` sees the weights a round starts
    training from (the trunk's, then its IMP track's); `on_branch_reset(round, branch, model,
    mask)` those a branch starts from; a round's resets all come before its trainings, each in
    the model (or spare copy) that trains.
    `on_instability(result)` gets a round's instability measurement and `on_mask(result)` the
    mask of each of its rows (packed), before its rows. `on_weights(result)` gets the weights the
    lake keeps for tickets (θ_k after round 0; a round's trained weights as `keep_trained`
    says), before the round's rows."""

    on_round: Callable[[RoundResult], None] | None = None
    on_instability: Callable[[InstabilityResult], None] | None = None
    on_mask: Callable[[MaskResult], None] | None = None
    on_reset: Callable[[int, nn.Module, Mask], None] | None = None
    on_branch_reset: Callable[[int, str, nn.Module, Mask], None] | None = None
    on_weights: Callable[[WeightsResult], None] | None = None


def degenerate_reason(spec: LineageSpec, dense: RoundResult) -> str | None:
    """Why the dense round makes the lineage degenerate, or None when it clearly beats chance."""
    if (
        spec.chance_margin is None
        or dense.chance_val_acc is None
        or dense.val_acc >= dense.chance_val_acc + spec.chance_margin
    ):
        return None
    return (
        f"the dense round's validation accuracy {dense.val_acc:.4f} does not beat chance "
        f"({dense.chance_val_acc:.4f}, the most frequent class) by chance_margin {spec.chance_margin}; "
        f"check train.lr (now {spec.train.lr:g}) and the data"
    )


class Lineage:
    """One lineage as an iterator: each `next()` trains one round, checkpoints it and returns its
    RoundResult (the trunk's; its branches' rows go to `on_round` and `state.branch_results`);
    after an exception (a diverged or degenerate lineage, a crash) it is `ended`. `previous`
    holds the rounds a resumed lineage had already finished; `plan` says what it will do;
    `state` is what it carries between rounds. `steps()` is the next round as a coroutine of
    trainings (`engine/packing` trains many lineages' at once). A branch round whose training fails has no row
    (`state.branch_failures` says why); the trunk and the branch's other rounds go on: each
    branch round trains on its own from the trunk's step."""

    def __init__(
        self,
        spec: LineageSpec,
        *,
        ids: LineageIds = LineageIds(),
        workdir: str | Path | None = None,
        context: RunContext = RunContext(),
        hooks: LineageHooks = LineageHooks(),
        resume: bool = True,
    ) -> None:
        spec.validate()
        self.spec, self.hooks, self.context = spec, hooks, context
        self.strategy = strategy(spec.strategy)
        torch.set_num_threads(context.threads)
        self.device = resolve_device(context.device)
        data, args = dataset_info(spec.dataset), (spec.data, spec.train.batch_size, spec.seed, self.device)
        self.task = context.tasks.load(data, spec.dataset, *args) if context.tasks else data.load(*args)
        self.model = self._build(spec.seed)
        self.plan: LineagePlan = plan_lineage(spec, self.model)
        self.ticket = self._start_ticket()
        if self.ticket is not None:  # it fits, and its mask is where pruning starts from
            assert spec.init_from is not None
            self.ticket.fits(self.model, self.plan.params, f"init_from ticket {spec.init_from.describe()}")
            self.model.load_state_dict(self.ticket.theta_k)
            self.plan = plan_lineage(spec, self.model, self.ticket.masks)
        # whether its trainings may train stacked with others (engine/packing), and why not
        self.packs, self.pack_refusal = (
            model_packs(spec, self.model, self.task.input_shape) if context.pack else (False, "trained alone")
        )
        self.weight_positions = weight_positions(self.model, self.task.synflow_output)  # for the cost columns
        self.study, self.trial_id = ids.study, ids.trial_id or spec.lineage_id()
        self.checkpoint_path = Path(workdir) / CHECKPOINT_FILE if workdir is not None else None
        self.version = code_version()
        saved = (
            load_checkpoint(self.checkpoint_path, spec.config_hash(), self.device)
            if self.checkpoint_path and resume
            else None
        )
        start = dense_mask(self.model, self.plan.params)
        if self.ticket is not None:
            start = {n: self.ticket.masks[n].to(m.device) for n, m in start.items()}
            apply_mask(self.model, start)
        self.state = (
            LineageState.from_checkpoint(saved) if saved is not None else LineageState(clone_state(self.model), start)
        )
        self.previous = list(self.state.results)
        self.ended = False
        self._spares: list[nn.Module] = []
        if context.on_progress and self.previous:
            context.on_progress(total_iterations(spec, self.plan, through=self.state.round_done))

    @property
    def finished(self) -> bool:
        """Every planned round is done."""
        return not self._rounds_left()

    def _rounds_left(self) -> list[int]:
        return [r for r in self.plan.rounds if r > self.state.round_done]

    def __iter__(self) -> Lineage:
        return self

    def __next__(self) -> RoundRows:
        rows = run_steps(self.steps())
        if rows is None:
            raise StopIteration
        return rows

    @property
    def previous_rounds(self) -> list[RoundRows]:
        """The rounds a resumed lineage had already finished, each with its branches' rows."""
        branches = self.state.branch_results
        return [RoundRows(r, tuple(b for b in branches if b.round == r.round)) for r in self.state.results]

    @property
    def branch_failures(self) -> dict[str, list[str]]:
        """Per branch, the rounds it failed to train, and why (those rounds have no row)."""
        return self.state.branch_failures

    def steps(self) -> Generator[list[TrainRequest], list[TrainOutcome], RoundRows | None]:
        """The next round as a coroutine: it yields the trainings the round needs (those that
        can train at once together), is sent their outcomes (a result or the exception it
        raised) and returns the round's rows, or None when no round is left. `run_steps`
        drives it with the lone trainer; `packing` drives many at once."""
        if self.ended:
            return None
        try:
            return (yield from self._next_round())
        except BaseException:
            self.ended = True  # a lineage that raised is over: its state may be mid-round
            raise

    def _next_round(self) -> Steps:
        state = self.state
        if state.results:  # a degenerate dense round ends the lineage, however it was resumed
            self._stop_if_degenerate(state.results[0])
        todo = self._rounds_left()
        if not todo:
            return None
        done: _Round = yield from self._run_round(todo[0])
        self._keep_weights(done.rows.round)
        on_instability, on_mask, on_round = self.hooks.on_instability, self.hooks.on_mask, self.hooks.on_round
        if on_instability and done.instability is not None:  # the round's reports, in the order the lake files them
            on_instability(done.instability)
        if on_mask:
            for each in done.masks:
                on_mask(each)
        if on_round:
            for row in done.rows.rows:
                on_round(row)
        state.results.append(done.rows.trunk)
        state.branch_results += done.rows.branches
        if self.checkpoint_path:
            save_checkpoint(self.checkpoint_path, self.spec.config_hash(), state.to_checkpoint())
        if done.rows.round == 0:  # its row is written; a degenerate lineage ends here, before anyone ranks it
            self._stop_if_degenerate(done.rows.trunk)
        return done.rows

    def _start_ticket(self) -> Ticket | None:
        ref = self.spec.init_from
        return None if ref is None else (self.context.tickets or file_tickets)(ref)

    def _keep_weights(self, round_: int) -> None:
        """Hand the lake what a ticket of this round needs: θ_k with round 0, and the round's
        trained weights when the spec keeps them."""
        if self.hooks.on_weights is None:
            return
        ids = self._identity()
        keep = {
            "study": ids["study"],
            "strategy": ids["strategy"],
            "trial_id": ids["trial_id"],
            "lineage_id": ids["lineage_id"],
        }
        state, last = self.state, round_ == self.plan.rounds[-1]
        if round_ == 0 and state.theta_k is not None:
            self.hooks.on_weights(WeightsResult(**keep, kind="theta_k", round=None, state=state.theta_k))
        if state.trained is not None and (
            self.spec.keep_trained == "every" or (self.spec.keep_trained == "last" and last)
        ):
            self.hooks.on_weights(WeightsResult(**keep, kind="trained", round=round_, state=state.trained))

    def _run_round(self, round_: int) -> Steps:
        """The round (`_Round`): its rows, the trunk's, then one per branch still growing, their
        masks and its instability measurement."""
        state, spec = self.state, self.spec
        if round_ == 0:
            capture = CaptureWeights(spec.rewind_iteration)
            training = yield from self._train(0, RoundStart(state.theta0, 0), state.mask, capture)
            state.theta_k = capture.state
            state.trained = clone_state(self.model)
            if self.strategy.imp_track:
                state.imp_trained = state.trained
            assert state.theta_k is not None
            extra: dict[str, float | None] = {"chance_val_acc": self.task.chance_accuracy()}
            measured, instability = yield from self._instability(
                round_, RoundStart(state.theta_k, spec.rewind_iteration), state.mask
            )
            row, mask_row = self._round_result(round_, training, state.mask, extra | measured)
            return _Round(RoundRows(row), [mask_row], instability)
        step = PruneStep(spec, self.plan, round_, state, self.model, self.task)
        mask = self.strategy.mask(step)
        start = self.strategy.reset.start(spec, state, lambda: self._fresh_init(round_))
        branch_masks = {  # from the trunk's step, before the trunk's training replaces what it saw
            name: branch(name).mask(BranchStep(step, mask)) for name in spec.branches
        }
        # every training of the round starts from the trunk's step: they train at once (packed,
        # they share a stacked model); the trunk's own, the instability copy, the IMP track, the branches
        measure = round_ in spec.instability.rounds
        imp = self.strategy.imp_track and round_ < self.plan.rounds[-1]  # the IMP track: the next mask
        jobs = [_Job(start, mask)]
        if measure:  # its failure leaves the round unmeasured; a branch's, that branch's round rowless
            jobs.append(
                _Job(
                    start,
                    mask,
                    role=INSTABILITY_COPY,
                    task=self._other_order(round_),
                    purpose="instability_dropout",
                    hooks=False,
                    required=False,
                )
            )
        if imp:
            assert state.theta_k is not None
            jobs.append(_Job(RoundStart(state.theta_k, spec.rewind_iteration), mask, role=IMP_TRACK))
        for name, branch_mask in branch_masks.items():
            weights = self._fresh_init(round_) if branch(name).weights == "fresh_init" else start.weights
            jobs.append(
                _Job(
                    RoundStart(weights, start.iteration, start.lr_fn),
                    branch_mask,
                    role=name,
                    branch=name,
                    required=False,
                )
            )
        outcomes = yield from self._train_all(round_, jobs)
        training = outcomes[TRUNK]
        if isinstance(training, BaseException):
            raise training
        state.trained = clone_state(self.model)
        state.mask = mask
        measured, instability = yield from self._instability(round_, start, mask, outcomes.get(INSTABILITY_COPY))
        trunk_row, trunk_mask = self._round_result(round_, training, mask, measured)
        imp_training = outcomes.get(IMP_TRACK)
        if isinstance(imp_training, BaseException):
            raise imp_training
        if imp_training is not None:
            state.imp_trained = clone_state(imp_training.model)
        branch_rows, masks = [], [trunk_mask]
        for name, branch_mask in branch_masks.items():
            outcome = outcomes[name]
            if isinstance(outcome, LineageFailure):  # this control's round failed, not the trunk nor its other rounds
                state.branch_failures.setdefault(name, []).append(f"round {round_} {outcome.status}: {outcome}")
                continue
            if isinstance(outcome, BaseException):
                raise outcome
            row, mask_row = self._round_result(round_, outcome, branch_mask, branch=name)
            branch_rows.append(row)
            masks.append(mask_row)
        return _Round(RoundRows(trunk_row, tuple(branch_rows)), masks, instability)

    def _other_order(self, round_: int) -> Task:
        """The data order of an instability measurement's second copy."""
        return self.task.reordered(derive_seed(self.spec.seed, "instability_order", round_) % 2**31)

    def _instability(
        self, round_: int, start: RoundStart, mask: Mask, second: _RoundTraining | BaseException | None = None
    ) -> Steps:
        """When the spec measures this round: train a second copy from the round's restart point
        on another data order (and dropout draws; `second`: the round trained it already), walk
        the line from the round's own trained copy to it, and return the round row's barriers
        and the measurement (the path). At round 0 with k > 0 the first copy is retrained from θ_k too, as the
        lineage reached θ_k with a warm optimizer. A copy that fails to train leaves the round
        unmeasured (its row says why); the lineage goes on. The model holds the round's trained
        weights again afterwards."""
        spec = self.spec.instability
        if round_ not in spec.rounds:
            return {}, None
        trained = clone_state(self.model)
        iterations, seconds, failure = 0, 0.0, None
        try:
            first = trained
            if instability_copies(self.spec, round_) == 2:
                again = yield from self._train(round_, start, mask, purpose="instability_dropout_a", hooks=False)
                first, iterations, seconds = clone_state(self.model), again.result.iterations, again.result.wall_seconds
            if second is None:
                second = yield from self._train(
                    round_, start, mask, task=self._other_order(round_), purpose="instability_dropout", hooks=False
                )
            if isinstance(second, BaseException):
                raise second
            iterations, seconds = iterations + second.result.iterations, seconds + second.result.wall_seconds
            path = linear_path(self.model, first, clone_state(second.model), spec.points, self.task.evaluate)
        except LineageFailure as e:  # the measurement failed, not the lineage
            path, failure = [], f"{e.status}: {e}"
        self.model.load_state_dict(trained)
        val_error, test_error = [p.error["val"] for p in path], [p.error["test"] for p in path]
        val_loss, test_loss = [p.loss["val"] for p in path], [p.loss["test"] for p in path]
        result = InstabilityResult(
            **self._identity(),
            round=round_,
            remaining_pct=remaining(mask, self.plan.slots)[0],
            rewind_iteration=self.spec.rewind_iteration,
            alphas=[p.alpha for p in path],
            val_loss=val_loss,
            val_error=val_error,
            test_loss=test_loss,
            test_error=test_error,
            val_error_barrier=barrier(val_error) if path else None,
            test_error_barrier=barrier(test_error) if path else None,
            val_loss_barrier=barrier(val_loss) if path else None,
            test_loss_barrier=barrier(test_loss) if path else None,
            iterations=iterations,
            wall_seconds=seconds,
            code_version=self.version,
            error=failure,
        )
        return {"val_error_barrier": result.val_error_barrier, "test_error_barrier": result.test_error_barrier}, result

    def _train(
        self,
        round_: int,
        start: RoundStart,
        mask: Mask,
        *callbacks: TrainCallback,
        task: Task | None = None,
        purpose: str = "dropout",
        hooks: bool = True,
    ) -> Steps:
        """One training of the lineage's model from `start` under `mask`; raises its failure."""
        job = _Job(start, mask, callbacks, task=task, purpose=purpose, hooks=hooks)
        outcome = (yield from self._train_all(round_, [job]))[TRUNK]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _train_all(self, round_: int, jobs: list[_Job]) -> Steps:
        """Train the jobs at once, the first in the lineage's model and the others each in a
        spare copy of it, with dropout seeded by (seed, purpose, round); returns, by each job's
        role, its `_RoundTraining` (whose model holds the trained weights) or the exception it raised."""
        requests, bests = [], []
        for i, job in enumerate(jobs):
            model = self.model if i == 0 else self._spare(i - 1)
            model.load_state_dict(job.start.weights)
            apply_mask(model, job.mask)
            if job.hooks and job.branch is not None and self.hooks.on_branch_reset:
                self.hooks.on_branch_reset(round_, job.branch, model, job.mask)
            elif job.hooks and job.branch is None and self.hooks.on_reset:
                self.hooks.on_reset(round_, model, job.mask)
            best = KeepBest() if isinstance(self.task, HasRoundMetrics) else None
            progress = ReportProgress(self.context.on_progress) if self.context.on_progress else None
            bests.append(best)
            requests.append(
                TrainRequest(
                    model,
                    job.task or self.task,
                    self.spec.train,
                    mask=job.mask if round_ > 0 or self.ticket is not None else None,
                    start=job.start.iteration,
                    lr_fn=job.start.lr_fn,
                    callbacks=[cb for cb in (*job.callbacks, best, progress) if cb is not None],
                    dropout_seed=derive_seed(self.spec.seed, job.purpose, round_),  # dropout draws repeat on resume
                    packs=self.packs,
                    required=job.required,
                )
            )
        outcomes = yield requests
        return {
            job.role: o if isinstance(o, BaseException) else _RoundTraining(o, best.state if best else None, r.model)
            for job, o, best, r in zip(jobs, outcomes, bests, requests, strict=True)
        }

    def _spare(self, index: int) -> nn.Module:
        """The index-th spare copy of the model (for trainings beside the lineage's own)."""
        while len(self._spares) <= index:
            self._spares.append(copy.deepcopy(self.model))
        return self._spares[index]

    def _build(self, seed: int) -> nn.Module:
        """The model from `seed` (a user's model is checked against the data once: the lineage's own)."""
        task, check = self.task, seed == self.spec.seed
        return build_lineage_model(
            self.spec, task.input_shape, task.num_classes, seed, getattr(task, "model_kwargs", {}), check
        ).to(self.device)

    def _fresh_init(self, round_: int) -> StateDict:
        return self._build(derive_seed(self.spec.seed, "reinit", round_)).state_dict()

    def _stop_if_degenerate(self, dense: RoundResult) -> None:
        reason = degenerate_reason(self.spec, dense)
        if reason:
            raise LineageDegenerate(reason)

    def _identity(self, branch: str | None = None) -> dict[str, Any]:
        """The lineage columns of every result it reports (the trunk's, or a branch's)."""
        spec, trunk = self.spec, self.spec.lineage_id()
        return {
            "study": self.study,
            "trial_id": self.trial_id,
            "lineage_id": trunk if branch is None else branch_lineage_id(trunk, branch),
            "config_hash": spec.config_hash(),
            "strategy": spec.strategy if branch is None else branch_label(spec.strategy, branch),
            "model": spec.model,
            "dataset": spec.dataset,
            "seed": spec.seed,
        }

    def _round_result(
        self,
        round_: int,
        training: _RoundTraining,
        mask: Mask,
        extra: dict[str, Any] | None = None,
        branch: str | None = None,
    ) -> tuple[RoundResult, MaskResult]:
        """The row of a round's training (the trunk's, or with `branch` that branch's), and its mask's."""
        spec, result, model = self.spec, training.result, training.model
        extra = dict(extra or {})
        if training.best_state is not None and isinstance(self.task, HasRoundMetrics):
            trained = clone_state(model)
            model.load_state_dict(training.best_state)  # perplexity, parse F1... at the early-stop weights
            extra.update(self.task.round_metrics(model))
            model.load_state_dict(trained)
        overall, per_layer, per_kind = remaining(mask, self.plan.slots)
        price = cost(model, self.weight_positions, mask)
        before = self.state.results[-1].remaining_pct if self.state.results else 100.0
        es, fin, curve = result.early_stop, result.final, result.curve
        tags: dict[str, Any] = {"branch": branch, "trunk_lineage_id": None if branch is None else spec.lineage_id()}
        mask_row = MaskResult(
            **self._identity(branch), round=round_, remaining_pct=overall, **packed_mask(mask), **tags
        )
        row = RoundResult(
            **self._identity(branch),
            round=round_,
            remaining_pct=overall,
            layer_remaining_pct=per_layer,
            scope=spec.prune.scope,
            prune_rate=0.0 if round_ == 0 else 1.0 - overall / before,
            lr=spec.train.lr,
            rewind_iteration=spec.rewind_iteration,
            early_stop_iteration=es.iteration,
            val_acc=es.val_acc,
            val_loss=es.val_loss,
            test_acc=es.test_acc,
            test_loss=es.test_loss,
            final_val_acc=fin.val_acc,
            final_test_acc=fin.test_acc,
            final_train_loss=fin.train_loss if math.isfinite(fin.train_loss) else None,
            iterations=result.iterations,
            wall_seconds=result.wall_seconds,
            device=str(self.device),
            threads=torch.get_num_threads(),
            code_version=self.version,
            curve_iteration=[p.iteration for p in curve],
            curve_train_loss=[p.train_loss if math.isfinite(p.train_loss) else None for p in curve],
            curve_val_loss=[p.val_loss for p in curve],
            curve_val_acc=[p.val_acc for p in curve],
            curve_test_acc=[p.test_acc for p in curve],
            group_remaining_pct=per_kind,
            macs_dense=price.macs_dense,
            macs_remaining=price.macs_remaining,
            compression_ratio=price.compression_ratio,
            theoretical_speedup=price.theoretical_speedup,
            **tags,
            **extra,
        )
        return row, mask_row


def packed_mask(mask: Mask) -> dict[str, Any]:
    """`MaskResult`'s per-tensor columns: size, kept count and packed bits."""
    flat = {n: m.detach().flatten().cpu().numpy() for n, m in mask.items()}
    return {
        "layer_size": {n: int(f.size) for n, f in flat.items()},
        "layer_kept": {n: int(f.sum()) for n, f in flat.items()},
        "layer_bits": {n: np.packbits(f).tobytes() for n, f in flat.items()},
    }


@dataclass(frozen=True)
class _RoundTraining:
    result: TrainResult
    best_state: StateDict | None  # the early-stop weights, for tasks with round metrics
    model: nn.Module  # holds the trained weights


TRUNK, INSTABILITY_COPY, IMP_TRACK = "trunk", "instability copy", "imp track"  # a branch's role: its name


@dataclass(frozen=True)
class _Round:
    """A trained round: its rows, the masks of its rows and its instability measurement (if measured)."""

    rows: RoundRows
    masks: list[MaskResult]
    instability: InstabilityResult | None = None


@dataclass(frozen=True)
class _Job:
    """One training a round asks for, in `role` (the trunk's, the instability copy, the IMP
    track or a branch's, by its name): from `start` under `mask`, on `task` (default: the
    lineage's data order); `hooks`: the reset hooks see it (a branch's with its name)."""

    start: RoundStart
    mask: Mask
    callbacks: tuple[TrainCallback, ...] = ()
    role: str = TRUNK
    branch: str | None = None
    task: Task | None = None
    purpose: str = "dropout"
    hooks: bool = True
    required: bool = True  # its failure ends the lineage


def run_lineage(
    spec: LineageSpec,
    *,
    ids: LineageIds = LineageIds(),
    workdir: str | Path | None = None,
    context: RunContext = RunContext(),
    hooks: LineageHooks = LineageHooks(),
) -> list[RoundResult]:
    """Run (or resume) one lineage and return its trunk's RoundResult of every round (resumed
    ones too); its branches' rows go to `hooks.on_round`."""
    lineage = Lineage(spec, ids=ids, workdir=workdir, context=context, hooks=hooks)
    return lineage.previous + [rows.trunk for rows in lineage]
