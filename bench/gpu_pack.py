"""Packed training throughput: aggregate training iterations per second of K lineages trained as
one stacked model (`study.engine.packed_train`) against one lineage per process, on one device.

    python bench/gpu_pack.py --check                  # CUDA: packed == lone, graph == eager; then the table
    python bench/gpu_pack.py --device cpu --ks 1,2 --procs 1,2 --iterations 20 --models lenet_300_100

Every lineage has its own seed, data order and random 80%-pruned mask; Adam 1.2e-3; batch 60
(ResNet-20: 128, with crop-and-flip augmentation), on seeded synthetic data of each model's input
shape. The clock runs from iteration WARM to the last (CUDA graphs are captured before it
starts); evaluation (start and end only) is not timed. One lineage per process: P processes, each
a lone `train`, released together after their warm-up; their aggregate is P x iterations over the
time from the release to the last one's end. TF32 is off throughout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing as mp
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from study.engine.data import load_task
from study.engine.models import build_model, prunable_layers
from study.engine.packed_train import pack_key, train_packed
from study.engine.spec import DataSpec, TrainSpec
from study.engine.train import TrainCallback, TrainRequest, train, train_request

WARM = 10
MODELS = {  # name -> (dataset, batch size, data settings)
    "lenet_300_100": ("synthetic", 60, {"synthetic_size": 6000, "validation_size": 500}),
    "conv2": ("synthetic", 60, {"synthetic_size": 6000, "validation_size": 500}),
    "resnet20": ("synthetic_cifar", 128, {"synthetic_size": 6000, "validation_size": 500, "augment": True}),
}


class Clock(TrainCallback):
    """The time after iteration WARM and after the last one (the device synchronised)."""

    reads_model = False

    def __init__(self, last: int, sync: Callable[[], None]) -> None:
        self.last, self.sync = last, sync
        self.times: dict[int, float] = {}

    def wants_step(self, iteration: int) -> bool:
        return iteration + 1 in (WARM, self.last)

    def on_step(self, iteration: int, model: torch.nn.Module) -> None:
        if self.wants_step(iteration):
            self.sync()
            self.times[iteration + 1] = time.perf_counter()

    @property
    def rate(self) -> float:
        return (self.last - WARM) / (self.times[self.last] - self.times[WARM])


def _sync(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def requests(model: str, k: int, iterations: int, device: torch.device, dtype=torch.float32) -> list[TrainRequest]:
    """K lineages of `model`: seeds 0..K-1, their own batch orders and 80%-pruned masks, one shared data copy."""
    dataset, batch, data = MODELS[model]
    base = load_task(dataset, DataSpec(**data), batch_size=batch, seed=0, device=device)
    spec = TrainSpec(lr=1.2e-3, iterations=iterations, eval_every=iterations, batch_size=batch)
    out = []
    for seed in range(k):
        net = build_model(model, base.input_shape, 10, seed=seed).to(device=device, dtype=dtype)
        g = torch.Generator().manual_seed(seed)
        mask = {
            n: (torch.rand(p.shape, generator=g) < 0.2).to(device)
            for n, p in net.named_parameters()
            if n in prunable_layers(net)
        }
        with torch.no_grad():
            for n, p in net.named_parameters():
                if n in mask:
                    p.mul_(mask[n])
        out.append(TrainRequest(net, base.reordered(seed), spec, mask=mask, packs=True))
    return out


def packed_rate(model: str, k: int, iterations: int, device: torch.device) -> float:
    reqs = requests(model, k, iterations, device)
    clock = Clock(iterations, _sync(device))
    reqs[0] = dataclasses.replace(reqs[0], callbacks=(clock,))
    assert len({pack_key(r) for r in reqs}) == 1
    (first, *_) = train_packed(reqs)
    if isinstance(first, BaseException):
        raise first
    return k * clock.rate


def _lone_worker(model: str, iterations: int, device: str, barrier: Any, out: Any, seed: int) -> None:
    torch.set_num_threads(1)
    dev = torch.device(device)
    (req,) = requests(model, 1, iterations, dev)
    req = dataclasses.replace(req, task=req.task.reordered(seed))
    spec = req.spec
    train(req.model, req.task, spec, mask=req.mask, end=WARM)
    _sync(dev)()
    barrier.wait()
    t0 = time.perf_counter()
    train(req.model, req.task, spec, mask=req.mask, start=WARM)
    _sync(dev)()
    out.put((t0, time.perf_counter()))


def lone_rate(model: str, procs: int, iterations: int, device: torch.device) -> float:
    """One lineage per process, `procs` processes at once: aggregate iterations per second."""
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(procs), ctx.Queue()
    workers = [
        ctx.Process(target=_lone_worker, args=(model, iterations, str(device), barrier, out, seed))
        for seed in range(procs)
    ]
    for w in workers:
        w.start()
    spans = [out.get(timeout=600) for _ in workers]
    for w in workers:
        w.join()
    return procs * (iterations - WARM) / (max(e for _, e in spans) - min(s for s, _ in spans))


def check(device: torch.device, models: list[str]) -> bool:
    """Packed (CUDA graph) == lone and == packed eager, to float32 rounding, on this device."""
    ok = True
    for model in models:
        k, iterations = 4, 40
        runs = {}
        for name, run in (
            ("lone", lambda rs: [train_request(r) for r in rs]),
            ("packed", lambda rs: train_packed(rs)),
            ("packed eager", lambda rs: train_packed(rs, cuda_graph=False)),
        ):
            reqs = [
                dataclasses.replace(r, spec=dataclasses.replace(r.spec, eval_every=10))
                for r in requests(model, k, iterations, device)
            ]
            runs[name] = run(reqs)
        for name in ("packed", "packed eager"):
            worst = max(
                abs(a.val_loss - b.val_loss) / abs(b.val_loss)
                for mine, theirs in zip(runs[name], runs["lone"], strict=True)
                for a, b in zip(mine.curve, theirs.curve, strict=True)
            )
            good = worst < 1e-3
            ok &= good
            print(
                f"check {model}: {name} vs lone, worst relative val-loss difference {worst:.2e}: {'ok' if good else 'FAIL'}"
            )
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--ks", default="1,8,32,128")
    parser.add_argument("--procs", default="1,4", help="processes at once for one lineage per process")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if device.type == "cpu":
        torch.set_num_threads(1)
    if args.check and not check(device, args.models.split(",")):
        return 1
    figures: list[dict[str, Any]] = []
    for model in args.models.split(","):
        baseline = max(lone_rate(model, int(p), args.iterations, device) for p in args.procs.split(","))
        print(f"\n{model}: one lineage per process, best of P in {args.procs}: {baseline:,.0f} it/s aggregate")
        print(f"{'K':>5} {'it/s aggregate':>15} {'x one-per-process':>18}")
        for k in map(int, args.ks.split(",")):
            try:
                rate = packed_rate(model, k, args.iterations, device)
            except torch.cuda.OutOfMemoryError:
                print(f"{k:>5} {'out of memory':>15}")
                break
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            print(f"{k:>5} {rate:>15,.0f} {rate / baseline:>17.1f}x")
            figures.append({"model": model, "k": k, "rate": rate, "one_per_process": baseline})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": str(device), "figures": figures}, f, indent=1)
    return 0 if all(math.isfinite(f["rate"]) for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
