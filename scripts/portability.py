"""The numeric-equivalence tests (`pytest -m numerics`) under every CPU dispatch level this machine
offers and with 1 and 2 threads: `make test-portability`.

torch picks its SIMD kernels per machine (ATEN_CPU_CAPABILITY), oneDNN its ISA (ONEDNN_MAX_CPU_ISA)
and MKL its code paths per CPU and vendor (MKL_ENABLE_INSTRUCTIONS caps it where MKL honours the
cap; on an AMD EPYC its GEMM results did not change, and no setting makes it take an Intel CPU's
paths). Each level below caps all three, so one machine runs the kernels an older CPU would pick; a
level above what this CPU has is reported as not offered (torch falls back silently) rather than
run as if it were. A comparison that holds only for one CPU's rounding fails here before it fails
on a user's machine; what no level here can imitate (another vendor's MKL) is why comparisons of
two code paths run in float64 or with a tolerance derived from float32's error growth."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LEVELS = {  # ATen capability -> what MKL and oneDNN are capped to at that level
    "default": {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "avx512": {
        "ATEN_CPU_CAPABILITY": "avx512",
        "MKL_ENABLE_INSTRUCTIONS": "AVX512",
        "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
    },
}
THREADS = (1, 2)


@dataclass(frozen=True)
class Run:
    level: str
    threads: int
    seen: str  # the capability torch reports under this environment
    returncode: int | None  # None: not run (the CPU does not offer the level)
    summary: str
    seconds: float
    output: str = ""


def environment(level: str, threads: int) -> dict[str, str]:
    env = {**os.environ, **LEVELS[level]}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), RAY_AUTH_MODE="disabled")
    return env


def capability(env: dict[str, str]) -> str:
    probe = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    return subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def run(level: str, threads: int, pytest_args: list[str]) -> Run:
    env = environment(level, threads)
    seen = capability(env)
    if seen.lower() != level:
        return Run(level, threads, seen, None, f"not offered by this CPU (torch runs {seen})", 0.0)
    start = time.monotonic()
    argv = [sys.executable, "-m", "pytest", "-m", "numerics", "-q", "-p", "no:cacheprovider", *pytest_args]
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    summary = lines[-1].strip("= ") if lines else done.stderr.strip()[-200:]
    return Run(level, threads, seen, done.returncode, summary, time.monotonic() - start, done.stdout + done.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (default 2)")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (e.g. a test file)")
    args = parser.parse_args()
    combos = [(level, threads) for level in LEVELS for threads in THREADS]
    print(f"numerics tests under {len(LEVELS)} dispatch levels x threads {THREADS} ({args.jobs} at a time)", flush=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(lambda c: run(*c, args.pytest_args), combos))
    print(f"\n{'level':<8} {'threads':>7}  {'torch runs':<10} {'seconds':>8}  result")
    for r in runs:
        print(f"{r.level:<8} {r.threads:>7}  {r.seen:<10} {r.seconds:>8.0f}  {r.summary}")
    failed = [r for r in runs if r.returncode not in (0, None)]
    for r in failed:
        print(f"\n--- {r.level}, {r.threads} thread(s) ---\n{r.output[-6000:]}")
    if any(r.returncode is None and r.level == "default" for r in runs):
        print("the default level must always run", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
