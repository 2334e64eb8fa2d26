"""Amari on M1: is the paper's worse number (test 3.95 against our 3.75) a reading of the rule?

    nice python benchmarks/amari_variants.py [--epochs 6] [--eta0 1e-6 3e-6] [--variants ours literal v_before]

Paper 1 Sec. 2 gives Amari's rate only as eta_i = eta0 / v_i with v_i "a recent running average" of
grad_i^2 (baselines/amari.py). Two details are open; each variant changes one:

* ``ours``: v includes the current gradient, and is the exact mean until tau samples (baselines.averages);
* ``literal``: v(0) = 0 and weight 1/tau from the first step (v starts about t/tau too small);
* ``v_before``: the rate uses v(t-1), the average before the current gradient (from the second step on).

M1 at Table 1's tau (5e3), seeds 0 and 1, CPU, float32. Prints test and train error per seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from baselines import amari
from baselines.averages import running_average
from experiments.data import load
from experiments.mlp import MLPSpec
from experiments.trainer import Member, train_ensemble
from vsgd.core import per_member


def literal(v, x, count, tau):
    return v + per_member(1.0 / tau, v) * (x - v)  # weight 1/tau from the first step, v(0) = 0


def update_v_before(grads, state, params, hp, extras):
    """As amari.update, but the rate divides by v(t-1) (v(1) on the first step)."""
    step = state["step"] + 1
    v_bar = [running_average(v, g * g, step, hp["tau"]) for v, g in zip(state["v_bar"], grads)]
    first = step == 1  # [K]
    v_rate = [torch.where(per_member(first, vn), vn, vp) for vn, vp in zip(v_bar, state["v_bar"])]
    rates = amari._rates(v_rate, hp)
    return [-r * g for r, g in zip(rates, grads)], {"v_bar": v_bar, "step": step}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=float, default=6.0)
    ap.add_argument("--eta0", nargs="+", type=float, default=[1e-6, 3e-6])
    ap.add_argument("--variants", nargs="+", default=["ours", "literal", "v_before"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = load("mnist")
    spec = MLPSpec((784, 120, 10), "cross_entropy", 1e-4)
    for variant in args.variants:
        rule = amari.RULE
        if variant == "literal":
            amari.running_average = literal
        elif variant == "v_before":
            rule = dataclasses.replace(amari.RULE, update=update_v_before)
        members = [Member(s, {"eta0": e, "tau": 5e3}) for e in args.eta0 for s in (0, 1)]
        t0 = time.perf_counter()
        out = train_ensemble(spec, rule, members, data, epochs=args.epochs, compile=True)
        amari.running_average = running_average
        for r in out:
            print(f"{variant:9s} eta0={r.member.hp['eta0']:.0e} seed={r.member.seed}: test {r.test_error:.2f} "
                  f"train {r.train_error:.2f} diverged {r.diverged} ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
