"""Why ``VSGD(mode="l")`` at the paper's defaults diverges on a ReLU MLP without L2 (issue 34 s3A), measured.

    PYTHONPATH=. python benchmarks/vsgd_divergence.py [--steps 940] [--seeds 0] [--out benchmarks/vsgd_divergence]

Two workloads:

* ``mlp``: a 784-256-256-10 ReLU MLP on MNIST (experiments.data), minibatch 64, torch default init, cross entropy
  without L2 unless the variant adds it; ``--steps`` minibatches (940 = about one epoch), then the test error on
  the 10,000 test images. Variants: the paper's rule at its defaults (no curvature floor), ``l2=1e-4`` (the paper's
  setting: its curvature is the floor), ``h_min`` = paper 2's eps 1e-5 (an absolute floor), and the relative floor
  ``h_rel`` (vsgd/vsgd.py: h_bar_i >= h_rel x the mean h_bar of its tensor, Sec. 4.3) at 1 (VSGD's default) and
  0.1, paper 2's curvature variability ``h_var``; vSGD-b and -g at their defaults for comparison.
* ``m1``: the paper's M1 (784-120-10 tanh MLP, L2 1e-4 on the weights and biases) through the front-end, one sample per
  step as in the paper, ``--m1-steps`` steps: what the front-end's guards cost on a model the paper's rule handles.
* ``softmax``: a 20-input, 3-class softmax regression (d = 63, so C = d/10 = 6.3), one sample per step, Gaussian
  inputs and a random linear teacher with 10% label noise; the running loss over the first 1000 samples.

For the first ``--log-steps`` steps of every run it logs, per parameter tensor, the largest rate and, at that
element, h_bar, v_bar, g_bar, tau and the number of steps so far with a non-zero gradient, plus the largest |update|:
``<out>_steps.csv``. One row per run with the final numbers: ``<out>.csv``.
"""

from __future__ import annotations

import argparse
import math
import time

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

import vsgd

MLP_VARIANTS = {
    # name: (VSGD keyword arguments, l2 in the loss); every variant passes its floor explicitly
    "l, paper (no floor)": ({"mode": "l", "cap_step": False, "h_rel": 0.0}, 0.0),
    "l, l2=1e-4": ({"mode": "l", "cap_step": False, "h_rel": 0.0}, 1e-4),
    "l, h_min=1e-5": ({"mode": "l", "cap_step": False, "h_rel": 0.0, "h_min": 1e-5}, 0.0),
    "l, h_rel=1 (default)": ({"mode": "l", "cap_step": False, "h_rel": 1.0}, 0.0),
    "l, h_rel=0.1": ({"mode": "l", "cap_step": False, "h_rel": 0.1}, 0.0),
    "l, h_rel=1, l2=1e-4": ({"mode": "l", "cap_step": False, "h_rel": 1.0}, 1e-4),
    "l, h_var": ({"mode": "l", "cap_step": False, "h_rel": 0.0, "h_var": True}, 0.0),
    "l, h_var, h_rel=1": ({"mode": "l", "cap_step": False, "h_rel": 1.0, "h_var": True}, 0.0),
    "b, paper": ({"mode": "b", "cap_step": False, "h_rel": 0.0}, 0.0),
    "g, paper": ({"mode": "g", "cap_step": False, "h_rel": 0.0}, 0.0),
    # session 25: the step cap (vsgd/stepcap.py), on by default since then
    "l, h_rel=1, cap (default)": ({"mode": "l", "h_rel": 1.0}, 0.0),
    "l, paper (no floor), cap": ({"mode": "l", "h_rel": 0.0}, 0.0),
}


def _diagnostics(opt, params, before, nonzero, step, run, rows):
    rates = opt.learning_rates()
    for li, (p, r, b, nz) in enumerate(zip(params, rates, before, nonzero)):
        st = opt.state[p]
        flat = r.flatten()
        i = int(flat.argmax())
        rows.append({"run": run, "step": step, "tensor": li, "shape": "x".join(map(str, p.shape)),
                     "rate_max": float(flat[i]), "rate_median": float(flat.median()),
                     "h_bar": float(st["h_bar"].flatten()[i]), "v_bar": float(st["v_bar"].flatten()[i])
                     if "v_bar" in st else float("nan"),
                     "g_bar": float(st["g_bar"].flatten()[i]),
                     "tau": float(st["tau"].flatten()[i]) if "v_bar" in st else float("nan"),
                     "nonzero_grad_steps": int(nz.flatten()[i]),
                     "h_bar_median": float(st["h_bar"].median()),
                     "update_max": float((p.detach() - b).abs().max())})


def run_mlp(name, kwargs, l2, seed, steps, log_steps, data, rows):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    params = list(model.parameters())
    opt = vsgd.VSGD(params, model=model, loss="cross_entropy", l2=l2, **kwargs)
    order = torch.randperm(data.n_train, generator=torch.Generator().manual_seed(seed + 1))
    nonzero = [torch.zeros_like(p) for p in params]
    losses, first_bad, worst = [], None, 0.0
    run = f"{name} seed={seed}"
    t0 = time.perf_counter()
    for t in range(steps):
        idx = order[(t * 64) % (data.n_train - 64):][:64]
        x, y = data.x_train[idx], data.y_train[idx]

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            if l2:
                loss = loss + 0.5 * l2 * sum((p * p).sum() for p in params)
            loss.backward()
            return loss

        before = [p.detach().clone() for p in params] if t < log_steps else None
        try:
            loss = float(opt.step(closure))
        except ValueError:  # the curvature of a diverged model is not finite: VSGD refuses to step
            loss = float("nan")
        losses.append(loss)
        worst = max(worst, loss) if math.isfinite(loss) else worst
        if not math.isfinite(loss) or loss > 1e3:
            first_bad = t if first_bad is None else first_bad
            break
        for nz, p in zip(nonzero, params):
            nz += (p.grad != 0).to(nz.dtype)
        if before is not None:
            _diagnostics(opt, params, before, nonzero, t, run, rows)
    with torch.no_grad():
        test_err = float((model(data.x_test).argmax(1) != data.y_test).float().mean() * 100) if first_bad is None \
            else float("nan")
    tail = [v for v in losses[-100:] if math.isfinite(v)]
    return {"workload": "mlp", "run": name, "seed": seed, "steps": len(losses), "diverged_at_step": first_bad,
            "max_train_loss": worst, "last100_train_loss": sum(tail) / max(1, len(tail)),
            "test_error_pct": test_err, "seconds": time.perf_counter() - t0}


def run_softmax(name, kwargs, seed, samples=1000):
    g = torch.Generator().manual_seed(seed)
    d_in, k = 20, 3
    teacher = torch.randn(d_in, k, generator=g)
    x = torch.randn(samples, d_in, generator=g)
    y = (x @ teacher).argmax(1)
    flip = torch.rand(samples, generator=g) < 0.1
    y = torch.where(flip, torch.randint(0, k, (samples,), generator=g), y)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(d_in, k))
    opt = vsgd.VSGD(model.parameters(), model=model, loss="cross_entropy", **kwargs)
    losses = []
    for t in range(samples):
        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(model(x[t:t + 1]), y[t:t + 1])
            loss.backward()
            return loss
        losses.append(float(opt.step(closure)))
    first100 = losses[:100]
    return {"workload": "softmax d=63", "run": name, "seed": seed, "steps": samples, "diverged_at_step": None,
            "max_train_loss": max(first100), "argmax_step": first100.index(max(first100)),
            "last100_train_loss": sum(losses[-100:]) / 100, "test_error_pct": float("nan")}


SOFTMAX_VARIANTS = {
    "l, paper (no floor)": {"mode": "l", "cap_step": False, "h_rel": 0.0},
    "l, h_rel=1 (default)": {"mode": "l", "cap_step": False, "h_rel": 1.0},
    "l, h_var": {"mode": "l", "cap_step": False, "h_rel": 0.0, "h_var": True},
    "l, h_var, h_rel=1": {"mode": "l", "cap_step": False, "h_rel": 1.0, "h_var": True},
    "l, C=d (not d/10)": {"mode": "l", "cap_step": False, "h_rel": 0.0, "c": 63.0},
    "b, paper": {"mode": "b", "cap_step": False, "h_rel": 0.0},
    "g, paper": {"mode": "g", "cap_step": False, "h_rel": 0.0},
    "l, h_rel=1, cap (default)": {"mode": "l", "h_rel": 1.0},  # the cap checked since session 26
    "l, h_rel=1, cap without the check": {"mode": "l", "h_rel": 1.0, "cap_step": True},  # session 25's default
    "l, paper (no floor), cap": {"mode": "l", "h_rel": 0.0},
}


def run_m1(name, kwargs, seed, steps, data):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(784, 120), nn.Tanh(), nn.Linear(120, 10))
    params = list(model.parameters())
    l2 = 1e-4
    opt = vsgd.VSGD(params, model=model, loss="cross_entropy", l2=l2, n0=60, **kwargs)  # n0 = 0.001 x #train
    order = torch.randperm(data.n_train, generator=torch.Generator().manual_seed(seed + 1))
    losses = []
    for t in range(steps):
        i = order[t % data.n_train]
        x, y = data.x_train[i:i + 1], data.y_train[i:i + 1]

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y) + 0.5 * l2 * sum((p * p).sum() for p in params)
            loss.backward()
            return loss

        losses.append(float(opt.step(closure)))
    with torch.no_grad():
        test_err = float((model(data.x_test).argmax(1) != data.y_test).float().mean() * 100)
    return {"workload": "m1 tanh, batch 1", "run": name, "seed": seed, "steps": steps, "diverged_at_step": None,
            "max_train_loss": max(losses), "last100_train_loss": sum(losses[-100:]) / 100,
            "test_error_pct": test_err}


M1_VARIANTS = {"l, paper (no floor)": {"mode": "l", "cap_step": False, "h_rel": 0.0},
               "l, h_rel=1 (default)": {"mode": "l", "cap_step": False, "h_rel": 1.0},
               "l, h_rel=1, cap (default)": {"mode": "l", "h_rel": 1.0}}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=940)
    ap.add_argument("--log-steps", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--variants", nargs="*", default=None, help="names of MLP (and m1) variants (default: all)")
    ap.add_argument("--softmax-variants", nargs="*", default=None, help="names of softmax variants (default: all)")
    ap.add_argument("--softmax-seeds", type=int, default=20)
    ap.add_argument("--workloads", nargs="+", default=["softmax", "mlp"], choices=["softmax", "mlp", "m1"])
    ap.add_argument("--m1-steps", type=int, default=60000)
    ap.add_argument("--out", default="benchmarks/vsgd_divergence")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from experiments.data import load  # the harness's loader (this script sits above the library)

    rows, step_rows = [], []
    for seed in range(args.softmax_seeds if "softmax" in args.workloads else 0):
        for name in args.softmax_variants or SOFTMAX_VARIANTS:
            rows.append(run_softmax(name, SOFTMAX_VARIANTS[name], seed))
    if rows:
        soft = pd.DataFrame(rows).groupby("run", sort=False)[["max_train_loss", "last100_train_loss"]].median()
        print("softmax d=63, median over", args.softmax_seeds, "seeds:\n", soft.to_string(), flush=True)
    data = load("mnist")
    for seed in args.seeds if "m1" in args.workloads else []:
        for name in [v for v in args.variants or M1_VARIANTS if v in M1_VARIANTS]:
            rows.append(run_m1(name, M1_VARIANTS[name], seed, args.m1_steps, data))
            print(rows[-1], flush=True)
    for seed in args.seeds if "mlp" in args.workloads else []:
        for name in [v for v in args.variants or MLP_VARIANTS if v in MLP_VARIANTS]:
            kw, l2 = MLP_VARIANTS[name]
            r = run_mlp(name, kw, l2, seed, args.steps, args.log_steps, data, step_rows)
            print(r, flush=True)
            rows.append(r)
    pd.DataFrame(rows).to_csv(args.out + ".csv", index=False, float_format="%.6g")
    if step_rows:
        pd.DataFrame(step_rows).to_csv(args.out + "_steps.csv", index=False, float_format="%.6g")


if __name__ == "__main__":
    main()
