"""Deferred rank-1 updates in the fused SGD step: on against off, alternating in one process.

    python benchmarks/fused_defer.py                    # M2 K=4,7; C1 K=2,5; CR K=4,8; best of 3
    python benchmarks/fused_defer.py --cases m2:4 c1:5 --reps 5

``experiments.mlp.FusedSGD(rank=1)`` updates every weight matrix in place each step;
``rank=16`` (the default) keeps the updates of large matrices as a pending low-rank term folded in
every 16 steps. Prints member-updates per second of each (best of ``--reps`` alternating windows, so
both see the same machine load) and the ratio.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import bench_spec, fake_batch, timed

from experiments.malloc import keep_freed_memory
from experiments.mlp import FusedSGD, glorot_init


def rate(spec, K: int, rank: int, seconds: float) -> float:
    x, y = fake_batch(spec, 1000)
    idx = torch.stack([torch.randperm(1000, generator=torch.Generator().manual_seed(k)) for k in range(K)])
    lr = torch.full((K,), 0.01)
    params = glorot_init(spec, list(range(K)))
    step = FusedSGD(spec, rank=rank)
    i = [0]

    def one():
        j = idx[:, i[0] % 1000]
        i[0] += 1
        xb = x[j]
        step(params, xb, xb if spec.loss == "mse" else y[j], lr)

    for _ in range(20):
        one()
    return timed(one, seconds) * K


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=["m2:4", "m2:7", "c1:2", "c1:5", "cr:4", "cr:8"])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()
    for case in args.cases:
        name, K = case.split(":")
        spec, cfg = bench_spec(name)
        best = {1: 0.0, 16: 0.0}
        for _ in range(args.reps):
            for rank in (1, 16):
                best[rank] = max(best[rank], rate(spec, int(K), rank, args.seconds))
        print(f"{cfg.name:3s} K={K:<3s} in place {best[1]:9,.0f}/s   deferred {best[16]:9,.0f}/s   "
              f"({best[16] / best[1]:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
