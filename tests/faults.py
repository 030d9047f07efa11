"""Fault injection for the recovery tests: a trial hook (`run_study(..., after_round=...)`) that
raises once per trial at a given round. Only tests can reach it: the package has no switch for it."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from ray import cloudpickle

from study.lake.files import trial_round_files
from study.lake.store import store_for


@dataclass(frozen=True)
class FailOnce:
    """Raise once per trial at round `at`; the marker file in `markers` records when each round
    row of the trial was written, so a test can tell a resume (old rows kept) from a restart."""

    at: int
    markers: Path

    def __call__(self, trial_id: str, round_: int, jobs: list) -> None:
        marker = self.markers / trial_id
        if round_ != self.at or marker.exists():
            return
        marker.parent.mkdir(parents=True, exist_ok=True)
        written: dict[str, str] = {}
        for _ in range(20):  # a sibling task may fold its round files meanwhile: list them again
            written, vanished = {}, False
            for job in jobs:
                for path in trial_round_files(job.root, job.study, job.trial_id):
                    try:
                        table = store_for(path).read_table(path, columns=["trial_id", "round", "written_at"])
                    except FileNotFoundError:
                        vanished = True
                        continue
                    rows = table.to_pylist()
                    written |= {f"{r['trial_id']}-r{r['round']:03d}": r["written_at"].isoformat() for r in rows}
            if not vanished:
                break
        marker.write_text(json.dumps(written))
        raise RuntimeError(f"injected fault in trial {trial_id} at round {round_} (tests/faults.py)")


# a trial runs in a Ray worker, which cannot import the tests folder: ship this module's code by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])
