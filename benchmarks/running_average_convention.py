"""Compare the two readings of "running average with time constant tau" for Amari and Almeida on M0.

    ours:     v(t) = v(t-1) + (g^2 - v(t-1)) / min(t, tau)     (exact mean until tau samples)
    literal:  v(t) = v(t-1) + (g^2 - v(t-1)) / tau,  v(0) = 0

Table 1's M0 settings, 2 seeds, a short budget (default 0.1 epoch). Usage:
    PYTHONPATH=$PWD OMP_NUM_THREADS=1 nice python benchmarks/running_average_convention.py [epochs]
"""

from __future__ import annotations

import sys
import time

import baselines.almeida
import baselines.amari
from baselines.averages import running_average
from experiments.data import load
from experiments.mlp import MLPSpec
from experiments.run import table1_setting
from experiments.trainer import Member, train_ensemble
from vsgd.core import get_rule, per_member


def literal(v, x, count, tau):
    return v + per_member(1.0 / tau, v) * (x - v)  # weight 1/tau from the first step, v(0) = 0


def main(epochs: float) -> None:
    data = load("mnist")
    spec = MLPSpec((784, 10), "cross_entropy", 1e-4)
    for module in (baselines.amari, baselines.almeida):
        name = module.RULE.name
        setting = table1_setting("M0", name)
        for label, fn in (("ours", running_average), ("literal", literal)):
            module.running_average = fn
            t0 = time.perf_counter()
            out = train_ensemble(spec, get_rule(name), [Member(s, setting) for s in (0, 1)], data, epochs=epochs)
            errs = [r.test_error for r in out]
            div = [r.diverged for r in out]
            print(f"{name:8s} {label:8s} {setting} epochs={epochs}: test error {errs} diverged {div} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        module.running_average = running_average


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 0.1)
