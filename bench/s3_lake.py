"""Reading a 1,000-round lake from an S3-compatible server against the same lake on local disk.

Starts moto's S3 server on 127.0.0.1 (what the tests use; a real S3 adds network latency that
the thread pool hides the same way), writes `--lineages` x `--rounds` round files with the real
writer to a local folder and to `s3://bench/lake`, and times, in one run:

  1. a cold `read_rounds` of the per-round files (a running study's lake);
  2. the same after every lineage is folded (a finished study's lake);
  3. the app's refresh (`LiveLake`) after one new round lands.

    python bench/s3_lake.py [--lineages 50] [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from lake_scale import lineage_row, round_row, timed  # noqa: E402

STRATEGIES = ("imp", "random_reinit", "lr_rewind")


def start_moto() -> tuple[subprocess.Popen, str]:
    import socket

    import boto3

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1"
    )
    for _ in range(100):
        try:
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
            return server, endpoint
        except Exception:
            time.sleep(0.1)
    raise RuntimeError("moto_server did not start")


def write(root: str, lineages: int, rounds: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from study.lake.files import write_lineage, write_round

    def one(trial: int) -> None:
        strategy = STRATEGIES[trial % len(STRATEGIES)]
        for rnd in range(rounds):
            write_round(root, round_row(trial, rnd, strategy, trial * rounds + rnd))
        write_lineage(root, lineage_row(trial, strategy, rounds))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(lineages)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lineages", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()

    from study.app.lake import LiveLake
    from study.lake.files import fold_rounds, write_round
    from study.lake.reader import read_rounds

    server, endpoint = start_moto()
    local = tempfile.mkdtemp(prefix="s3-bench-")
    remote = "s3://bench/lake"
    try:
        for root in (local, remote):
            write(root, args.lineages, args.rounds)
        n = args.lineages * args.rounds
        print(f"lake: {args.lineages} lineages x {args.rounds} rounds = {n} round files; S3 at {endpoint} (moto)")
        times: dict[str, dict[str, float]] = {}
        for label, root in (("local", local), ("s3", remote)):
            read, cold = timed(lambda root=root: read_rounds(root))
            assert read.table.num_rows == n and not read.skipped
            times.setdefault("per-round files", {})[label] = cold
        for root in (local, remote):
            for t in range(args.lineages):
                fold_rounds(root, "scale", STRATEGIES[t % len(STRATEGIES)], f"t{t:04d}-s0")
        for label, root in (("local", local), ("s3", remote)):
            read, cold = timed(lambda root=root: read_rounds(root))
            assert read.table.num_rows == n and not read.skipped
            times.setdefault("folded lineages", {})[label] = cold
            live = LiveLake(root)
            live.current()
            write_round(root, round_row(args.lineages, 0, "imp", 10**7))
            lake, refresh = timed(live.current)
            assert len(lake.rounds) == n + 1 and live.reader.files_read == 1
            times.setdefault("app refresh, one new round", {})[label] = refresh
        for what, t in times.items():
            print(f"{what:30s} local {t['local']:6.2f} s   s3 {t['s3']:6.2f} s   ({t['s3'] / t['local']:.1f}x)")
    finally:
        shutil.rmtree(local, ignore_errors=True)
        server.terminate()


if __name__ == "__main__":
    main()
