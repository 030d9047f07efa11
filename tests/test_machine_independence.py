"""What a lineage writes does not depend on the machine it ran on: not its core count (torch's
default thread count follows it; a lineage runs with the threads it is given, 1 unless asked), its
time zone, its locale or its hostname. The same spec, run by `study lineage` under two such
environments, writes the same rows to the last bit, but for when and how long."""

import os
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import synthetic_spec_dict

from study.lake.reader import read_lineages, read_rounds

pytestmark = pytest.mark.numerics

WHEN = {"wall_seconds", "written_at", "started_at", "updated_at"}
ELSEWHERE = {  # another machine, as far as a process can tell
    "TZ": "Pacific/Kiritimati",  # UTC+14
    "LC_ALL": "POSIX",
    "LANG": "POSIX",
    "OMP_NUM_THREADS": "2",  # torch's default thread count on a machine with two cores
    "MKL_NUM_THREADS": "2",
}


def _run(spec_path, lake, env, hostname=None):
    argv = [sys.executable, "-m", "study.cli", "lineage", str(spec_path), "--results", str(lake), "--quiet"]
    if hostname:  # a UTS namespace of its own: another hostname for this process only
        argv = ["unshare", "--uts", "--fork", "sh", "-c", f'hostname {hostname} && exec "$@"', "sh", *argv]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def _rows(lake):
    rounds = [{k: v for k, v in r.items() if k not in WHEN} for r in read_rounds(lake).table.to_pylist()]
    lineages = [{k: v for k, v in r.items() if k not in WHEN} for r in read_lineages(lake).table.to_pylist()]
    return sorted(rounds, key=lambda r: (r["strategy"], r["round"])), lineages


def test_a_lineage_writes_the_same_rows_whatever_the_machine(tmp_path):
    spec = synthetic_spec_dict(rounds=2, branches=["random_reinit"])
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    here = {k: v for k, v in os.environ.items() if k not in ELSEWHERE}
    _run(spec_path, tmp_path / "here", {**here, "OMP_NUM_THREADS": "1", "TZ": "UTC"})
    own_uts = os.geteuid() == 0 and shutil.which("unshare") is not None
    _run(spec_path, tmp_path / "elsewhere", {**here, **ELSEWHERE}, hostname="elsewhere-node" if own_uts else None)
    mine, theirs = _rows(tmp_path / "here"), _rows(tmp_path / "elsewhere")
    assert len(mine[0]) == 5 and {r["threads"] for r in mine[0]} == {1}
    assert mine == theirs
