"""The engine on a CUDA device: correctness checks and throughput, in one run.

    STUDY_DATA_DIR=<folder with Fashion-MNIST IDX files> python bench/gpu_check.py [--lake DIR]

Checks: LeanAdam equals torch's fused Adam bit for bit on CUDA; pruned weights stay exactly 0
through masked training on CUDA; tasks, augmentation and evaluation stay on the device; a short
Fashion-MNIST IMP lineage runs on CUDA into a lake with exact per-layer sparsity. Then it times
LeNet-300-100 (batch 60), Conv-2 and ResNet-20 (batch 60, CIFAR-shaped data with augmentation).
"""

from __future__ import annotations

import argparse
import time

import torch

from study.engine.data import load_task
from study.engine.lineage import RunContext
from study.engine.models import build_model, prunable_layers
from study.engine.optim import LeanAdam
from study.engine.plan import plan_lineage
from study.engine.spec import DataSpec, TrainSpec, lineage_spec_from_dict
from study.engine.train import train
from study.lake.recorder import run_to_lake


def check_lean_adam(dev: torch.device) -> None:
    g = torch.Generator(device="cpu").manual_seed(0)
    a = [
        torch.randn(300, 784, generator=g).to(dev).requires_grad_(),
        torch.randn(300, generator=g).to(dev).requires_grad_(),
    ]
    b = [t.detach().clone().requires_grad_() for t in a]
    oa, ob = LeanAdam(a, lr=1e-3, weight_decay=1e-4), torch.optim.Adam(b, lr=1e-3, weight_decay=1e-4, fused=True)
    x = torch.randn(60, 784, generator=g).to(dev)
    for _ in range(25):
        for ps in (a, b):
            (x @ ps[0].t() + ps[1]).tanh().pow(2).sum().backward()
        oa.step(), ob.step(), oa.zero_grad(), ob.zero_grad()
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True)), "LeanAdam differs from fused Adam on CUDA"
    print("LeanAdam == torch.optim.Adam(fused=True) on CUDA after 25 steps: bit-identical")


def check_masked_training(dev: torch.device) -> None:
    task = load_task("synthetic", DataSpec(validation_size=300, synthetic_size=1200), batch_size=32, seed=0, device=dev)
    model = build_model("lenet_300_100", task.input_shape, 10, seed=0).to(dev)
    g = torch.Generator().manual_seed(0)
    mask = {
        n: (torch.rand(p.shape, generator=g) < 0.2).to(dev)
        for n, p in model.named_parameters()
        if n in prunable_layers(model)
    }
    result = train(model, task, TrainSpec(lr=1e-2, iterations=300, eval_every=100), mask=mask)
    params = dict(model.named_parameters())
    moved = sum(int(torch.count_nonzero(params[n].detach()[~m])) for n, m in mask.items())
    assert moved == 0, f"{moved} pruned weights moved on CUDA"
    assert task.train_x.device.type == params["fc1.weight"].device.type == dev.type
    print(f"masked training on CUDA: pruned weights all 0 after 300 steps; test acc {result.final.test_acc:.3f}")


def throughput(dev: torch.device, model_name: str, dataset: str, iterations: int, masked: bool, **data) -> float:
    task = load_task(dataset, DataSpec(**data), batch_size=60, seed=0, device=dev)
    model = build_model(model_name, task.input_shape, 10, seed=0).to(dev)
    mask = None
    if masked:
        g = torch.Generator().manual_seed(0)
        mask = {
            n: (torch.rand(p.shape, generator=g) < 0.2).to(dev)
            for n, p in model.named_parameters()
            if n in prunable_layers(model)
        }
    spec = TrainSpec(lr=1e-3, iterations=iterations + 50, eval_every=10**9)
    train(model, task, spec, mask=mask, end=50)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    train(model, task, spec, mask=mask, start=50)
    torch.cuda.synchronize()
    return iterations / (time.perf_counter() - t0)


def lineage_on_cuda(lake: str) -> None:
    spec = lineage_spec_from_dict(
        {
            "model": "lenet_300_100",
            "dataset": "fashion_mnist",
            "strategy": "imp",
            "rounds": 3,
            "train": {"lr": 1.2e-3, "batch_size": 60, "iterations": 2000, "eval_every": 250},
            "prune": {"scope": "layerwise", "rates": {"fc": 0.2, "output": 0.1}},
        }
    )
    plan = plan_lineage(spec)
    t0 = time.perf_counter()
    results = run_to_lake(spec, lake, study="gpu-check", context=RunContext(device="cuda"))
    wall = time.perf_counter() - t0
    print(f"Fashion-MNIST LeNet-300-100 imp lineage on CUDA, 4 rounds x 2000 it in {wall:.1f} s:")
    print("round  %remaining  early-stop  test-acc  device")
    for i, r in enumerate(results):
        assert r.device.startswith("cuda"), r.device
        assert abs(r.remaining_pct - plan.remaining_pct(i)) < 1e-9
        print(f"{r.round:5d}  {r.remaining_pct:10.2f}  {r.early_stop_iteration:10d}  {r.test_acc:8.4f}  {r.device}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lake", default="gpu-lake")
    args = ap.parse_args()
    assert torch.cuda.is_available(), "no CUDA device"
    dev = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    check_lean_adam(dev)
    check_masked_training(dev)
    lineage_on_cuda(args.lake)
    for name, dataset, its, data in (
        ("lenet_300_100", "fashion_mnist", 3000, {}),
        ("conv2", "synthetic_cifar", 1000, {"validation_size": 1000, "synthetic_size": 20000, "augment": True}),
        ("resnet20", "synthetic_cifar", 500, {"validation_size": 1000, "synthetic_size": 20000, "augment": True}),
    ):
        dense = throughput(dev, name, dataset, its, False, **data)
        masked = throughput(dev, name, dataset, its, True, **data)
        print(f"{name:14s} batch 60 on CUDA: {dense:7.0f} it/s dense, {masked:7.0f} it/s with 80% pruned")


if __name__ == "__main__":
    main()
