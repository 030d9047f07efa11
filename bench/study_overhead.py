"""The platform's overhead: the same lineages run bare and as a study.

Bare: `run_lineage` in a loop, in two processes at once (one thread each), each taking half of
the lineages (balanced by work). Study: `study tune` machinery (local Ray with 2 CPUs,
OptunaSearch over a grid of four data splits (seeds are replicates, never searched), 2
concurrent trials whose lineages run as 1-CPU Ray tasks, Parquet rows and a Tune checkpoint every
round). `--unequal`: imp against random_reinit x 3 seeds, trials of unequal length. Both sides
are timed end to end (process/Ray start-up, data loading and everything else included).

    python bench/study_overhead.py [--lineages 4] [--rounds 3] [--iterations 3000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def base_lineage(rounds: int, iterations: int, split_seed: int = 0) -> dict:
    return {
        "data": {"split_seed": split_seed},
        "model": "lenet_300_100",
        "dataset": "fashion_mnist",
        "strategy": "imp",
        "rounds": rounds,
        "train": {"optimizer": "adam", "lr": 1.2e-3, "batch_size": 60, "iterations": iterations, "eval_every": 500},
        "prune": {"scope": "layerwise", "rates": {"fc": 0.2, "output": 0.1}},
    }


def bare_worker(specs: list[dict], out) -> None:
    from study.engine.lineage import RunContext, run_lineage
    from study.engine.spec import lineage_spec_from_dict

    total = 0
    for raw in specs:
        spec = lineage_spec_from_dict(raw)
        total += sum(r.iterations for r in run_lineage(spec, context=RunContext(threads=1)))
    out.put(total)


def balanced_halves(specs: list[dict]) -> list[list[dict]]:
    """Two lists of lineages with about equal training work (longest first, to the lighter half)."""
    from study.engine.plan import plan_lineage, total_iterations
    from study.engine.spec import lineage_spec_from_dict

    work = [(total_iterations(s, plan_lineage(s)), raw) for raw in specs for s in [lineage_spec_from_dict(raw)]]
    halves: list[list[dict]] = [[], []]
    loads = [0, 0]
    for its, raw in sorted(work, key=lambda w: -w[0]):
        lighter = loads.index(min(loads))
        halves[lighter].append(raw)
        loads[lighter] += its
    return halves


def run_bare(specs: list[dict]) -> tuple[int, float]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    t0 = time.perf_counter()
    procs = [ctx.Process(target=bare_worker, args=(half, out)) for half in balanced_halves(specs)]
    for p in procs:
        p.start()
    total = sum(out.get() for _ in procs)
    for p in procs:
        p.join()
    return total, time.perf_counter() - t0


def bench_study(name: str, base: dict, search: dict, num_samples: int, root: str, seeds: tuple[int, ...] = (0,)):
    """A validated grid study: 2 concurrent trials, 1 CPU per lineage (a test checks the benchmarks' studies)."""
    from study.search.study_spec import StudySpec
    from study.typed_yaml import build

    raw = {
        "name": name,
        "base": base,
        "search": search,
        "seeds": list(seeds),
        "sampler": "grid",
        "budget": {"num_samples": num_samples},
        "max_concurrent": 2,
        "resources": {"cpu": 1},
        "storage": {"results": root},
    }
    study = build(StudySpec, raw, "study")
    study.validate()
    return study


def overhead_study(n: int, rounds: int, iterations: int, root: str):
    """The same lineages as the bare side, as n trials over the data splits."""
    search = {"data.split_seed": {"type": "categorical", "choices": list(range(n))}}
    return bench_study("overhead", base_lineage(rounds, iterations), search, n, root)


def unequal_study(rounds: int, iterations: int, root: str):
    """Several seeds per configuration, trials of unequal length: imp against random_reinit (which
    also trains its IMP track), 3 seeds each."""
    search = {"strategy": {"type": "categorical", "choices": ["imp", "random_reinit"]}}
    return bench_study("unequal", base_lineage(rounds, iterations), search, 2, root, seeds=(0, 1, 2))


def run_as_study(study) -> tuple[int, float]:
    from study.lake.reader import read_rounds
    from study.search.tune import run_study

    t0 = time.perf_counter()
    outcome = run_study(study)
    wall = time.perf_counter() - t0
    assert outcome.errors == 0
    table = read_rounds(study.storage.results, study.name).table
    return sum(table["iterations"].to_pylist()), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lineages", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=3000)
    ap.add_argument("--unequal", action="store_true", help="imp vs random_reinit x 3 seeds: unequal trials")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as root:
        if args.unequal:
            study = unequal_study(args.rounds, args.iterations, root)
            specs = [study.lineage_spec({"strategy": s}, seed).to_dict() for s in ("imp", "random_reinit")
                     for seed in study.seeds]  # fmt: skip
            what = "2 configurations x 3 seeds as 2 trials"
        else:
            study = overhead_study(args.lineages, args.rounds, args.iterations, root)
            specs = [base_lineage(args.rounds, args.iterations, s) for s in range(args.lineages)]
            what = f"the same lineages as {args.lineages} trials"
        bare_its, bare_wall = run_bare(specs)
        bare_rate = bare_its / bare_wall
        print(
            f"bare: {len(specs)} lineages x {args.rounds + 1} rounds, 2 processes (balanced by work): {bare_its} it "
            f"in {bare_wall:.1f} s = {bare_rate:.0f} it/s aggregate"
        )
        study_its, study_wall = run_as_study(study)
    study_rate = study_its / study_wall
    assert study_its == bare_its, (study_its, bare_its)
    print(f"study: {what}, 2 concurrent: {study_its} it in {study_wall:.1f} s = {study_rate:.0f} it/s aggregate")
    print(
        f"study / bare throughput: {study_rate / bare_rate:.1%}  (target >= 85%); "
        f"platform overhead {study_wall - bare_wall:.1f} s"
    )


if __name__ == "__main__":
    main()
