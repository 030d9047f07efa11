"""Many lineages in one process, their trainings packed on one device.

Each member (a `Lineage`, or a `LakeLineage` that files it) is a coroutine of trainings
(`steps()`). `run_packed` advances every member to its next training request, trains the requests
that can share a stacked model (`packed_train.pack_key`) in one pack, hands each member its
result, and repeats; requests that cannot pack train alone. The member that has trained least goes
first, so members of one trial (the same rounds, iterations and restarts) stay in step and pack
from the first round to the last. Rows, checkpoints and failures are each member's own, exactly
as if it ran alone.
"""

from __future__ import annotations

from collections.abc import Generator, Hashable, Iterator, Sequence
from typing import Protocol

from study.engine.packed_train import pack_key, train_packed
from study.engine.rows import RoundResult
from study.engine.train import TrainRequest, TrainResult

Outcome = TrainResult | BaseException | None
PackEvent = tuple[
    int, RoundResult | BaseException | None
]  # member, its round's row / the error that ended it / None: done


class Member(Protocol):
    def steps(self) -> Generator[TrainRequest, TrainResult, RoundResult | None]: ...


def _resume(steps: Generator[TrainRequest, TrainResult, RoundResult | None], outcome: Outcome) -> TrainRequest:
    if outcome is None:
        return next(steps)
    if isinstance(outcome, BaseException):
        return steps.throw(outcome)
    return steps.send(outcome)


def run_packed(members: Sequence[Member], cuda_graph: bool = True) -> Iterator[PackEvent]:
    """Run every member to its end, yielding (member index, row) for each round it finishes,
    (index, None) when it has no round left and (index, exception) when one ends it (its
    siblings go on). Closing the iterator closes the members' coroutines (a LakeLineage files
    itself stopped)."""
    live = {i: m.steps() for i, m in enumerate(members)}
    pending: dict[int, TrainRequest] = {}
    outcomes: dict[int, Outcome] = {}
    trained = dict.fromkeys(live, 0)
    try:
        while live:
            for i in [i for i in live if i not in pending]:
                while True:
                    try:
                        pending[i] = _resume(live[i], outcomes.pop(i, None))
                        break
                    except StopIteration as stop:
                        yield i, stop.value
                        if stop.value is None:
                            del live[i]
                            break
                        live[i] = members[i].steps()
                    except Exception as e:  # noqa: BLE001  (ends this member, not its siblings)
                        del live[i]
                        yield i, e
                        break
            if not pending:
                continue
            groups: dict[Hashable, list[int]] = {}
            for i, request in pending.items():
                key = pack_key(request)
                groups.setdefault(("alone", i) if key is None else key, []).append(i)
            chosen = min(groups.values(), key=lambda g: (min(trained[i] for i in g), -len(g)))
            for i, outcome in zip(chosen, train_packed([pending[i] for i in chosen], cuda_graph), strict=True):
                del pending[i]
                outcomes[i] = outcome
                trained[i] += 1
    finally:
        for steps in live.values():
            steps.close()
