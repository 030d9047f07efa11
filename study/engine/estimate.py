"""How long a spec will train on this machine, measured rather than guessed: a few training steps
of the spec's own model on its own task (`train.train`, the lone loop) and one evaluation of both
splits, timed; `study plan` multiplies them by the iterations and evaluations the plan holds.

On a CPU the clock is the process's CPU time: what the work costs on cores of its own, whatever
else the machine runs meanwhile (on one thread, that is its wall time on an idle machine). On a
GPU it is the wall clock, the device synchronised."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch

from study.engine.plan import LineagePlan, build_lineage_model, round_iterations, round_length
from study.engine.registry import dataset_info
from study.engine.spec import LineageSpec
from study.engine.train import resolve_device, train


@dataclass(frozen=True)
class TimeEstimate:
    step_seconds: float  # one training iteration
    eval_seconds: float  # one evaluation of the validation and test splits
    threads: int
    device: str

    def round_seconds(self, spec: LineageSpec, plan: LineagePlan, round_: int) -> float:
        """The round's iterations (its trainings: trunk, IMP track, branches, instability copies)
        and their evaluations (every eval_every iterations and at each training's start)."""
        iterations = round_iterations(spec, plan, round_)
        trainings = iterations / max(round_length(spec, round_), 1)
        evaluations = iterations / spec.train.eval_every + trainings
        return iterations * self.step_seconds + evaluations * self.eval_seconds

    def lineage_seconds(self, spec: LineageSpec, plan: LineagePlan) -> float:
        return sum(self.round_seconds(spec, plan, r) for r in plan.rounds)


def measure(spec: LineageSpec, threads: int | None = None, steps: int = 300, budget_s: float = 2.0) -> TimeEstimate:
    """Time one evaluation and a training iteration (the difference of n and 2n iterations, n at
    most `steps` and what about `budget_s` allows) on the spec's task and device, with `threads`
    torch threads. A CPU's figures are per thread-second of CPU time: with several threads they
    add up, so they bound the wall time from above."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        device = resolve_device(None)
        dataset = dataset_info(spec.dataset)  # a built-in, a user's format or loader, or a plugin's
        task = dataset.load(spec.data, spec.train.batch_size, spec.seed, device)
        shape, classes, kwargs = dataset.signature(spec.data)
        model = build_lineage_model(spec, shape, classes, spec.seed, kwargs).to(device)

        def clock() -> float:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                return time.perf_counter()
            return time.process_time()

        def timed(n: int) -> float:
            short = dataclasses.replace(spec.train, iterations=n, eval_every=n, schedule="constant", milestones=())
            start = clock()
            train(model, task, short)
            return clock() - start

        def evaluation() -> float:
            start = clock()
            task.evaluate(model, "val")
            task.evaluate(model, "test")
            return clock() - start

        eval_s = min(evaluation(), evaluation())  # the faster of two: less of what else the machine runs
        guess = max((timed(2) - 2 * eval_s) / 2, 1e-4)  # warm-up, and a guide to how many steps fit
        n = max(2, min(steps, int(budget_s / 6 / guess)))
        once, twice = min(timed(n), timed(n)), min(timed(2 * n), timed(2 * n))
        step_s = (twice - once) / n  # the evaluations (at each run's start and end) cancel
        if step_s <= 0:  # a machine too busy to tell: the steps of one run, its evaluations taken off
            step_s = max(once - 2 * eval_s, 0.0) / n
        return TimeEstimate(step_s, eval_s, torch.get_num_threads(), str(device))
    finally:
        torch.set_num_threads(before)
