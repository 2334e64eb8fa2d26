"""The fused SGD step's memory-traffic tricks, each against the one before, alternating in one process.

    python benchmarks/fused_defer.py                    # M1 M2 C1 CR at the runner's K and a larger K; best of 3
    python benchmarks/fused_defer.py --cases m2:4 c1:5 --reps 5

Three variants of ``experiments.mlp.FusedSGD``:

* ``in place``: ``rank=1``, every weight matrix updated in place each step;
* ``deferred``: ``rank=16``, the updates of large matrices kept as a pending low-rank term and folded
  in every 16 steps (session 2's step: no window, first layer deferred only from 200k weights);
* ``window``: the default, as the trainer calls it: also the first layer's ``x^T V`` for a window of
  16 steps in one matrix product, from the inputs the trainer passes ahead (``ahead``).

Prints member-updates per second of each (best of ``--reps`` alternating windows, so all see the same
machine load) and the ratios.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import bench_spec, lockstep_samples, timed

from experiments.malloc import keep_freed_memory
from experiments.mlp import FusedSGD, glorot_init

VARIANTS = {  # name: (FusedSGD keyword arguments, pass the inputs ahead)
    "in place": ({"rank": 1}, False),
    "deferred": ({"rank": 16, "first_min": 10**12}, False),
    "window": ({}, True),
}


def rate(spec, K: int, variant: str, seconds: float) -> float:
    kwargs, use_ahead = VARIANTS[variant]
    sample = lockstep_samples(spec, K)
    lr = torch.full((K,), 0.01)
    params = glorot_init(spec, list(range(K)))
    step = FusedSGD(spec, **kwargs)

    def one():
        x, target, ahead = sample()
        step(params, x, target, lr, ahead if use_ahead else None)

    for _ in range(20):
        one()
    return timed(one, seconds) * K


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=["m1:20", "m1:61", "m2:7", "m2:16", "c1:5", "c1:16", "cr:4", "cr:8"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()
    for case in args.cases:
        name, K = case.split(":")
        spec, cfg = bench_spec(name)
        best = dict.fromkeys(args.variants, 0.0)
        for _ in range(args.reps):
            for v in args.variants:
                best[v] = max(best[v], rate(spec, int(K), v, args.seconds))
        if len(best) < len(VARIANTS):
            print(f"{cfg.name:3s} K={K:<3s} " + "   ".join(f"{v} {r:9,.0f}/s" for v, r in best.items()), flush=True)
            continue
        a, b, c = best.values()
        print(f"{cfg.name:3s} K={K:<3s} in place {a:9,.0f}/s   deferred {b:9,.0f}/s ({b / a:.2f}x)   "
              f"window {c:9,.0f}/s ({c / b:.2f}x deferred, {c / a:.2f}x in place)", flush=True)


if __name__ == "__main__":
    main()
