"""Cost of a vSGD-l update relative to an SGD update in the same ensemble trainer (paper 1 Sec. 5: "about 2x").

    PYTHONPATH=. python benchmarks/vsgd_cost.py [--steps 2000] [--k 1 10] [--reps 3] [--device cpu]

For each of M0, M1, M2 and each ensemble size K, it times ``experiments.trainer.train_ensemble`` for
``steps`` updates with SGD and with vSGD-l (the latter also computes bbprop), alternating the two
``reps`` times on the same synthetic MNIST-shaped data and keeping each one's fastest run (the
machine is shared; the minimum is the least disturbed). Evaluation is included in both but small
(the data set has ``steps`` samples). Prints seconds per step and the ratio vSGD-l / SGD.
"""

from __future__ import annotations

import argparse
import time

import torch

from experiments.data import Dataset
from experiments.mlp import MLPSpec
from experiments.trainer import Member, train_ensemble
from vsgd.core import get_rule

BENCHMARKS = {"M0": (784, 10), "M1": (784, 120, 10), "M2": (784, 500, 300, 10)}


def fake_mnist(n: int) -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2 * n, 784, generator=g) - 0.13
    y = torch.randint(0, 10, (2 * n,), generator=g)
    return Dataset("fake-mnist", x[:n], y[:n], x[n:], y[n:], "none", False, ())


def seconds_per_step(spec: MLPSpec, rule: str, k: int, data: Dataset, device: str) -> float:
    hp = {"eta0": 0.01} if rule == "sgd" else {"n0": 10 / data.n_train}  # n0 in config units (fraction of #train)
    members = [Member(seed, hp) for seed in range(k)]
    t0 = time.perf_counter()
    train_ensemble(spec, get_rule(rule), members, data, epochs=1, device=device)
    if device != "cpu":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / data.n_train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--k", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--benchmarks", nargs="+", default=list(BENCHMARKS))
    args = ap.parse_args()
    data = fake_mnist(args.steps)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"{args.steps} steps per run, best of {args.reps}")
    print(f"{'bench':6}{'K':>4}{'SGD ms/step':>14}{'vSGD-l ms/step':>16}{'ratio':>8}")
    for name in args.benchmarks:
        spec = MLPSpec(BENCHMARKS[name], "cross_entropy")
        for k in args.k:
            best = {"sgd": float("inf"), "vsgd_l": float("inf")}
            for _ in range(args.reps):
                for rule in best:  # alternate, so both see the same machine load
                    best[rule] = min(best[rule], seconds_per_step(spec, rule, k, data, args.device))
            print(f"{name:6}{k:>4}{best['sgd'] * 1e3:>14.3f}{best['vsgd_l'] * 1e3:>16.3f}"
                  f"{best['vsgd_l'] / best['sgd']:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
