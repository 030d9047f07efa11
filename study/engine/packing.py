"""Many lineages in one process, their trainings packed on one device.

Each member (a `Lineage`, or a `LakeLineage` that files it) is a coroutine of trainings
(`steps()`: it yields the trainings its round can run at once, the trunk's, its instability copy,
IMP track and branches, and is sent their outcomes). `run_packed` collects every member's pending
trainings, trains those that can share a stacked model (`packed_train.pack_key`) as one pack,
and hands each member its outcomes once all of its trainings are done; trainings that cannot pack
train alone. The member that has trained least goes first, so members of one trial (the same
rounds, iterations and restarts) stay in step and pack from the first round to the last. Rows,
checkpoints and failures are each member's own, exactly as if it ran alone.
"""

from __future__ import annotations

from collections.abc import Generator, Hashable, Iterator, Sequence
from typing import Protocol

from study.engine.packed_train import pack_key, train_packed
from study.engine.rows import RoundRows
from study.engine.train import TrainOutcome, TrainRequest

Steps = Generator[list[TrainRequest], list[TrainOutcome], RoundRows | None]
PackEvent = tuple[
    int, RoundRows | BaseException | None
]  # member, its round's rows / the error that ended it / None: done


class Member(Protocol):
    def steps(self) -> Steps: ...


def run_packed(members: Sequence[Member], cuda_graph: bool = True) -> Iterator[PackEvent]:
    """Run every member to its end, yielding (member index, rows) for each round it finishes,
    (index, None) when it has no round left and (index, exception) when one ends it (its
    siblings go on). Closing the iterator closes the members' coroutines."""
    live = {i: m.steps() for i, m in enumerate(members)}
    pending: dict[int, tuple[list[TrainRequest], list[TrainOutcome | None]]] = {}
    ready: dict[int, list[TrainOutcome]] = {}  # outcomes a member is to be sent
    trained = dict.fromkeys(live, 0)
    try:
        while live:
            for i in [i for i in live if i not in pending]:
                requests: list[TrainRequest] = []
                while not requests:
                    try:
                        sent = ready.pop(i, None)
                        requests = next(live[i]) if sent is None else live[i].send(sent)
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
                    else:
                        if not requests:
                            ready[i] = []
                if requests:
                    pending[i] = (requests, [None] * len(requests))
            if not pending:
                continue
            groups: dict[Hashable, list[tuple[int, int]]] = {}
            for i, (requests, outcomes) in pending.items():
                for j, request in enumerate(requests):
                    if outcomes[j] is None:
                        key = pack_key(request)
                        groups.setdefault(("alone", i, j) if key is None else key, []).append((i, j))
            chosen = min(groups.values(), key=lambda g: (min(trained[i] for i, _ in g), -len(g)))
            results = train_packed([pending[i][0][j] for i, j in chosen], cuda_graph)
            for (i, j), outcome in zip(chosen, results, strict=True):
                pending[i][1][j] = outcome
            for i in {i for i, _ in chosen}:
                trained[i] += 1
                requests, outcomes = pending[i]
                if all(o is not None for o in outcomes):
                    del pending[i]
                    ready[i] = [o for o in outcomes if o is not None]
    finally:
        for steps in live.values():
            steps.close()
