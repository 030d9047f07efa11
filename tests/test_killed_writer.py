"""A process killed with SIGKILL in the middle of writing a local lake file leaves, under the
file's name, the previous whole file (or nothing): never a partial or unreadable one. Every lake
table (rounds, lineages, masks, instability, studies, folds and compactions) is written through
the store's `write_table`, so the child writes through it too, a table big enough (tens of MB)
that the kill lands while bytes are still going out."""

import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq

ROWS = 3_000_000

CHILD = f"""
import sys
import numpy as np
import pyarrow as pa
from study.lake.store import store_for

path = sys.argv[1]
rng = np.random.default_rng(0)
for version in (1, 2):
    table = pa.table({{"version": np.full({ROWS}, version), "x": rng.random({ROWS})}})  # incompressible
    print("writing", version, flush=True)
    store_for(path).write_table(table, path)
    print("written", version, flush=True)
"""


def test_a_writer_killed_mid_file_leaves_the_previous_whole_file_under_its_name(tmp_path):
    target = tmp_path / "rounds" / "study=s" / "strategy=imp" / "t-r000.parquet"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(target)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().split() == ["writing", "1"]
    assert child.stdout.readline().split() == ["written", "1"], child.stderr.read()
    whole = target.stat().st_size
    assert child.stdout.readline().split() == ["writing", "2"]
    deadline = time.time() + 60
    while True:  # bytes of version 2 are going out: a temp file beside it, or (a broken store) the file itself
        sizes = [p.stat().st_size for p in target.parent.iterdir() if p.name != target.name] or [0]
        if 0 < max(sizes) or target.stat().st_size != whole:
            break
        assert child.poll() is None and time.time() < deadline, "the child finished before it could be killed"
        time.sleep(0.001)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    table = pq.read_table(target)  # whole and readable
    assert table.num_rows == ROWS and set(table["version"].to_pylist()) == {1}, "the previous file, untouched"
    leftovers = [p.name for p in target.parent.iterdir() if p.name != target.name]
    assert all(name.startswith(".") and name.endswith(".tmp") for name in leftovers), (
        leftovers
    )  # the reader's skip rule
