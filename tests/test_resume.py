"""A lineage killed with SIGKILL mid-round resumes from its last finished round and ends with
rows identical to an uninterrupted run (same seed, CPU) and no duplicates."""

import itertools
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import synthetic_spec_dict

from study.engine.lineage import Lineage, LineageHooks, RunContext
from study.engine.spec import lineage_spec_from_dict
from study.engine.strategies import STRATEGIES
from study.lake.reader import read_lineages, read_rounds

TIMING = {"wall_seconds", "written_at"}


def lineage_cmd(spec_path, root):
    return [
        sys.executable,
        "-m",
        "study.cli",
        "lineage",
        str(spec_path),
        "--results",
        str(root),
        "--threads",
        "1",
        "--quiet",
        "--study",
        "resume",
    ]


@pytest.mark.numerics
def test_kill_9_mid_round_then_resume_matches_uninterrupted(tmp_path):
    spec = synthetic_spec_dict(rounds=3, rewind_iteration=20, train={"iterations": 1500, "eval_every": 250})
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    killed, clean = tmp_path / "killed", tmp_path / "clean"

    proc = subprocess.Popen(lineage_cmd(spec_path, killed), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not list((killed / "rounds").rglob("*-r001.parquet")) and time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.02)
    time.sleep(0.5)  # into round 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = sorted(p.name for p in (killed / "rounds").rglob("*.parquet"))
    assert 2 <= len(done_before) < 4, done_before
    assert read_lineages(killed).table["status"].to_pylist() == ["running"], "an orphan, until resumed"

    subprocess.run(lineage_cmd(spec_path, killed), check=True, capture_output=True)
    subprocess.run(lineage_cmd(spec_path, clean), check=True, capture_output=True)

    resumed = read_rounds(killed).table.sort_by("round").to_pylist()
    reference = read_rounds(clean).table.sort_by("round").to_pylist()
    assert [r["round"] for r in resumed] == [0, 1, 2, 3]
    files = list((killed / "rounds").rglob("*.parquet"))
    assert len(files) == 1 and files[0].name.endswith(".rounds.parquet"), "the finished lineage, folded"
    assert pq.read_table(files[0]).num_rows == 4, "no duplicate rows"
    for a, b in zip(resumed, reference, strict=True):
        for key in a:
            if key not in TIMING:
                assert a[key] == b[key], (a["round"], key)
    assert read_lineages(killed).table["status"].to_pylist() == ["finished"]


def test_a_checkpoint_save_clears_what_a_killed_writer_left(tmp_path):
    """A writer killed mid-save (a cancelled lineage task) leaves its temp file; the next save of
    the same checkpoint removes it once it is stale, and never touches a temp file being written
    or another checkpoint's."""
    import torch

    from study.engine.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint

    path = tmp_path / CHECKPOINT_FILE
    import os
    import time

    left = tmp_path / f".{CHECKPOINT_FILE}.4242.0a1b2c3d.tmp"
    left.write_bytes(b"half a checkpoint")
    hour_ago = time.time() - 3600
    os.utime(left, (hour_ago, hour_ago))
    writing = tmp_path / f".{CHECKPOINT_FILE}.4343.0a1b2c3d.tmp"  # another writer, at it now
    writing.write_bytes(b"being written")
    other = tmp_path / ".other.pt.4242.0a1b2c3d.tmp"
    other.write_bytes(b"not ours")
    os.utime(other, (hour_ago, hour_ago))
    save_checkpoint(path, "h", {"round": 3, "w": torch.ones(2)})
    assert not left.exists() and writing.exists() and other.exists()
    state = load_checkpoint(path, "h", torch.device("cpu"))
    assert state is not None and state["round"] == 3 and torch.equal(state["w"], torch.ones(2))


# Every strategy, and every branch on a trunk it accepts: a lineage stopped after a round and built
# again from its checkpoint writes exactly the rows of one that ran straight through. Magnitude
# strategies alone could rebuild a lost piece of state from the zeros in the weights; these lose it.
RESUMED = [
    *[(strategy, ()) for strategy in STRATEGIES],
    ("imp", ("random_reinit", "random_prune")),
    ("snip", ("inverted",)),
]
NOT_COMPARED = {"wall_seconds"}  # how long it took: the only field that may differ


def _rows(spec, workdir, stop_after=None):
    """The rows (trunk and branches) of a lineage run in `workdir`; with `stop_after`, the process
    'dies' after that round and a new Lineage resumes from the checkpoint."""
    rows: list = []
    hooks = LineageHooks(on_round=rows.append)
    first = Lineage(spec, workdir=workdir, context=RunContext(threads=1), hooks=hooks)
    if stop_after is None:
        list(first)
        return rows
    list(itertools.islice(first, stop_after + 1))
    again = Lineage(spec, workdir=workdir, context=RunContext(threads=1), hooks=hooks)
    assert again.state.round_done == stop_after, "resumed from the checkpoint"
    list(again)
    return rows


@pytest.mark.numerics
@pytest.mark.parametrize(("strategy", "branches"), RESUMED, ids=lambda v: ".".join(v) if isinstance(v, tuple) else v)
def test_every_strategy_and_branch_resumes_to_the_rows_of_an_uninterrupted_run(tmp_path, strategy, branches):
    raw = synthetic_spec_dict(strategy=strategy, rounds=3, branches=list(branches), train={"iterations": 40})
    if not STRATEGIES[strategy].no_rewind:
        raw["rewind_iteration"] = 10
    if strategy == "imp":
        raw["instability"] = {"rounds": [2], "points": 11}
    spec = lineage_spec_from_dict(raw)
    straight = _rows(spec, tmp_path / "straight")
    resumed = _rows(spec, tmp_path / "resumed", stop_after=1)
    assert [(r.round, r.branch) for r in resumed] == [(r.round, r.branch) for r in straight]
    assert {r.branch for r in straight} == {None, *branches}
    for a, b in zip(resumed, straight, strict=True):
        mine = {k: v for k, v in a.as_row().items() if k not in NOT_COMPARED}
        theirs = {k: v for k, v in b.as_row().items() if k not in NOT_COMPARED}
        assert mine == theirs, (a.round, a.branch, [k for k in mine if mine[k] != theirs[k]])
