"""ON-LSTM layer vs torch.nn.LSTM of the same size: forward + backward time.

Batch 20, length 35, embedding 200, hidden 400, chunk 10 (Shen et al.'s layer shape).
Target: ON-LSTM within 3.0x of nn.LSTM on this CPU.

    python bench/onlstm_step.py [--threads 1] [--repeats 30]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from study.engine.models.onlstm import RecurrentLayer


def time_step(fn, repeats: int) -> float:
    for _ in range(5):
        fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    T, B, E, H, C = 35, 20, 200, 400, 10
    x = torch.randn(T, B, E)
    onlstm = RecurrentLayer(E, H, C, masters=True)
    plain = RecurrentLayer(E, H, C, masters=False)
    reference = nn.LSTM(E, H)

    def step(layer):
        def run():
            layer.zero_grad(set_to_none=True)
            out = layer(x)[0]
            out.sum().backward()

        return run

    t_on = time_step(step(onlstm), args.repeats)
    t_plain = time_step(step(plain), args.repeats)
    t_ref = time_step(step(reference), args.repeats)
    print(f"batch {B}, length {T}, embedding {E}, hidden {H}, chunk {C}, {args.threads} thread(s), fwd+bwd:")
    print(f"  torch.nn.LSTM:          {t_ref * 1e3:7.2f} ms")
    print(f"  LSTM (this project):    {t_plain * 1e3:7.2f} ms")
    print(f"  ON-LSTM (this project): {t_on * 1e3:7.2f} ms")
    print(f"ON-LSTM / nn.LSTM: {t_on / t_ref:.2f}x  (target <= 3.0x)")


if __name__ == "__main__":
    main()
