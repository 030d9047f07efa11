"""Training throughput: a typical research loop vs this project's loop.

LeNet-300-100, batch 60, Adam 1.2e-3 on Fashion-MNIST, one CPU thread each:
  (a) torchvision dataset + ToTensor/Normalize + DataLoader(num_workers=0) + default Adam
  (b) study.engine.train.train: in-memory tensors, seeded per-epoch permutation, fused Adam
and then two single-thread trainings of (b) at once (separate processes), aggregate it/s.

    python bench/train_throughput.py [--iterations 3000] [--masked]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import torch
import torch.nn.functional as F


def typical_loop(iterations: int) -> float:
    from torchvision import datasets, transforms

    from study.engine.data.vision import find_root
    from study.engine.models import build_model
    from study.engine.spec import DataSpec

    torch.set_num_threads(1)
    root = str(find_root("fashion_mnist", DataSpec()))
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.2860,), (0.3530,))])
    ds = datasets.FashionMNIST(root, train=True, transform=tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=60, shuffle=True, num_workers=0, drop_last=True)
    model = build_model("lenet_300_100", (1, 28, 28), 10, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1.2e-3)
    done, warmup = 0, 50
    t0 = time.perf_counter()
    while done < iterations + warmup:
        for x, y in loader:
            if done == warmup:
                t0 = time.perf_counter()
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            done += 1
            if done == iterations + warmup:
                break
    return iterations / (time.perf_counter() - t0)


def project_loop(iterations: int, masked: bool = False, barrier=None, out=None) -> float:
    from study.engine.data import load_task
    from study.engine.models import build_model, prunable_layers
    from study.engine.spec import DataSpec, TrainSpec
    from study.engine.train import train

    torch.set_num_threads(1)
    task = load_task("fashion_mnist", DataSpec(), batch_size=60, seed=0)
    model = build_model("lenet_300_100", task.input_shape, 10, seed=0)
    mask = None
    if masked:
        g = torch.Generator().manual_seed(0)
        mask = {
            n: torch.rand(p.shape, generator=g) < 0.2
            for n, p in model.named_parameters()
            if n in prunable_layers(model)
        }
    spec = TrainSpec(lr=1.2e-3, iterations=iterations + 50, batch_size=60, eval_every=10**9)
    train(model, task, spec, mask=mask, end=50)  # warm-up
    if barrier is not None:
        barrier.wait()
    result = train(model, task, spec, mask=mask, start=50)
    rate = iterations / (result.wall_seconds)
    if out is not None:
        out.put((rate, time.perf_counter() - result.wall_seconds, time.perf_counter()))
    return rate


def parallel_project_loops(iterations: int, masked: bool) -> tuple[float, list[float]]:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=project_loop, args=(iterations, masked, barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    start = min(r[1] for r in results)
    stop = max(r[2] for r in results)
    return 2 * iterations / (stop - start), [r[0] for r in results]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=3000)
    ap.add_argument("--masked", action="store_true", help="(b) with 80%% of the weights pruned")
    args = ap.parse_args()
    a = typical_loop(args.iterations)
    print(f"(a) typical loop (DataLoader + ToTensor/Normalize + Adam), 1 thread: {a:8.0f} it/s")
    b = project_loop(args.iterations, args.masked)
    print(f"(b) study.engine.train loop{' (masked)' if args.masked else ''}, 1 thread:                {b:8.0f} it/s")
    print(f"ratio b/a: {b / a:.2f}  (target >= 3.0)")
    agg, each = parallel_project_loops(args.iterations, args.masked)
    print(f"2 parallel (b) runs: {agg:8.0f} it/s aggregate ({each[0]:.0f} + {each[1]:.0f})  (target >= 1400)")


if __name__ == "__main__":
    main()
