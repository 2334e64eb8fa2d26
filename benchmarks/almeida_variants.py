"""Other readings of Almeida's rule (paper 1 Sec. 2) on M0, Table 1's setting, seeds 0 and 1.

    ours:      eta_i(t) = max(0, eta0 g(t) g(t-1) / v(t)),    v(t) includes g(t)^2   (baselines/almeida.py)
    v_before:  eta_i(t) = max(0, eta0 g(t) g(t-1) / v(t-1)),  the average before g(t) enters (0 while v = 0)
    causal:    eta_i(t) = max(0, eta0 g(t-1) g(t-2) / v(t-1)), decided before g(t) is seen, applied to g(t)
    literal:   ours with v(0) = 0 and weight 1/tau from the first step

All four use the correlation reading (first_factor = 1, a = grad(t)); the readings of the formula's first
factor and lag are options of the rule itself, run with conf/grid/almeida_readings.yaml (docs/baselines.md).

Usage: PYTHONPATH=$PWD OMP_NUM_THREADS=1 nice python benchmarks/almeida_variants.py EPOCHS [variant ...]
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace

from baselines import almeida
from baselines.averages import running_average
from experiments.data import load
from experiments.mlp import MLPSpec
from experiments.trainer import Member, train_ensemble
from vsgd.core import per_member


def _average(state, grads, hp, step, fn=running_average):
    return [fn(v, g * g, step, hp["tau"]) for v, g in zip(state["v_bar"], grads)]


def v_before(grads, state, params, hp, extras):
    rates = [r * (v > 0) for r, v in zip(almeida._rates(grads, state["g_prev"], state["v_bar"], params, hp),
                                         state["v_bar"])]
    step = state["step"] + 1
    return [-r * g for r, g in zip(rates, grads)], {"v_bar": _average(state, grads, hp, step), "g_prev": grads,
                                                    "step": step}


def causal(grads, state, params, hp, extras):
    g_prev2 = state.get("g_prev2", [g * 0 for g in grads])
    rates = almeida._rates(state["g_prev"], g_prev2, state["v_bar"], params, hp)
    step = state["step"] + 1
    return [-r * g for r, g in zip(rates, grads)], {"v_bar": _average(state, grads, hp, step), "g_prev": grads,
                                                    "g_prev2": state["g_prev"], "step": step}


def literal(grads, state, params, hp, extras):
    step = state["step"] + 1
    v_bar = [v + per_member(1.0 / hp["tau"], v) * (g * g - v) for v, g in zip(state["v_bar"], grads)]
    rates = almeida._rates(grads, state["g_prev"], v_bar, params, hp)
    return [-r * g for r, g in zip(rates, grads)], {"v_bar": v_bar, "g_prev": grads, "step": step}


SETTING = {"eta0": 1e-3, "tau": 1e3, "first_factor": 1.0, "lag": 1.0}  # Table 1 (M0), correlation reading
VARIANTS = {"ours": almeida.RULE.update, "v_before": v_before, "causal": causal, "literal": literal}


def main(epochs: float, names: list[str]) -> None:
    data = load("mnist")
    spec = MLPSpec((784, 10), "cross_entropy", 1e-4)
    for name in names:
        rule = replace(almeida.RULE, name=f"almeida_{name}", update=VARIANTS[name])
        t0 = time.perf_counter()
        out = train_ensemble(spec, rule, [Member(s, SETTING) for s in (0, 1)], data, epochs=epochs)
        print(f"almeida {name:8s} {epochs} epochs: test {[r.test_error for r in out]} "
              f"train {[round(r.train_error, 2) for r in out]} ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0, sys.argv[2:] or list(VARIANTS))
