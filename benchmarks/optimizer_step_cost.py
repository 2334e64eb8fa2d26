"""Time per training step of each vsgd optimizer against torch.optim.Adam, interleaved in one run (issue 34 s3B).

    PYTHONPATH=. python benchmarks/optimizer_step_cost.py [--rounds 7] [--steps 20] [--out benchmarks/optimizer_step_cost.csv]

Models (minibatch 64 of MNIST, experiments.data): the 784-256-256-10 ReLU MLP and a small CNN
(conv 1->16 3x3, ReLU, max-pool 2, conv 16->32 3x3, ReLU, max-pool 2, linear 1568->10).

A step is what a user's loop pays per minibatch: ``opt.step(closure)``, the closure zeroing the gradients and
running forward and backward. Methods:

* ``adam``: torch.optim.Adam at its defaults (the foreach implementation);
* ``vsgd_l``/``_b``/``_g``: VSGD with ``model=`` at its defaults (``curvature="auto"``: bbprop on the MLP, the
  sampled Gauss-Newton estimate "gnb" of vsgd/curvature.py on the CNN; the CSV's ``curvature`` column says which);
* ``vsgd_l, no step cap``: ``cap_step=False`` (the default before session 25): the cap's extra forward pass is
  the difference;
* ``vsgd_l given curvature``: VSGD mode "l" with ``curvature_fn`` returning fixed tensors, which isolates the
  element-wise update (the front-end and the rule math) from the curvature estimate (helper H1's part);
* ``vsgd_fd``: VSGDfd with the plain closure (two gradient evaluations per step, paper 2 eq. 6);
* ``closure only``: the forward and backward pass alone, the floor any optimizer pays.

Every round times ``--steps`` steps of every method in turn (after a warm-up round), on one thread, so all
methods see the same machine; the ratio to Adam is taken within each round, then the median over rounds is
reported. The machine is shared with other jobs: the CSV records the load average, and only ratios within one run
mean anything.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

import vsgd


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def cnn() -> nn.Module:
    return nn.Sequential(nn.Unflatten(1, (1, 28, 28)), nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(32 * 7 * 7, 10))


def given_curvature(model):
    fixed = [torch.full_like(p, 1.0) for p in model.parameters()]  # any positive values: the cost is what counts
    return lambda: fixed


METHODS = {
    "adam": lambda m, bbprop: torch.optim.Adam(m.parameters()),
    "vsgd_l": lambda m, bbprop: vsgd.VSGD(m.parameters(), mode="l", model=m, loss="cross_entropy"),
    "vsgd_b": lambda m, bbprop: vsgd.VSGD(m.parameters(), mode="b", model=m, loss="cross_entropy"),
    "vsgd_g": lambda m, bbprop: vsgd.VSGD(m.parameters(), mode="g", model=m, loss="cross_entropy"),
    "vsgd_l, no step cap": lambda m, bbprop: vsgd.VSGD(m.parameters(), mode="l", model=m, loss="cross_entropy",
                                                       cap_step=False),
    "vsgd_l given curvature": lambda m, bbprop: vsgd.VSGD(m.parameters(), mode="l", curvature_fn=given_curvature(m)),
    "vsgd_fd": lambda m, bbprop: vsgd.VSGDfd(m.parameters()),
    "closure only": lambda m, bbprop: "closure",
}
MODELS = {"mlp 784-256-256-10": (mlp, True), "small cnn": (cnn, False)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", default="benchmarks/optimizer_step_cost.csv")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from experiments.data import load  # the harness's loader (this script sits above the library)

    data = load("mnist")
    rows = []
    load_before = os.getloadavg()[0]
    for model_name, (make, bbprop) in MODELS.items():
        runs = {}
        for name, make_opt in METHODS.items():
            torch.manual_seed(0)
            model = make()
            opt = make_opt(model, bbprop)
            if opt is not None:
                runs[name] = (model, opt, [0])
        times = {name: [] for name in runs}

        def one(name, steps):
            model, opt, pos = runs[name]
            t0 = time.perf_counter()
            for _ in range(steps):
                i = pos[0] = (pos[0] + 64) % (data.n_train - 64)
                x, y = data.x_train[i:i + 64], data.y_train[i:i + 64]

                def closure():
                    (opt if opt != "closure" else model).zero_grad()
                    loss = F.cross_entropy(model(x), y)
                    loss.backward()
                    return loss

                closure() if opt == "closure" else opt.step(closure)
            return (time.perf_counter() - t0) / steps

        for name in runs:  # warm-up (and VSGD's slow start, VSGDfd's bootstrap)
            one(name, 15)
        for _ in range(args.rounds):
            for name in runs:
                times[name].append(one(name, args.steps))
        for name, ts in times.items():
            ratios = [t / a for t, a in zip(ts, times["adam"])]
            opt = runs[name][1]
            rows.append({"model": model_name, "method": name,
                         "curvature": getattr(opt, "curvature", "") if not isinstance(opt, str) else "",
                         "ms_per_step": 1e3 * statistics.median(ts),
                         "ratio_to_adam": statistics.median(ratios), "ratio_min": min(ratios),
                         "ratio_max": max(ratios), "rounds": args.rounds, "steps_per_round": args.steps,
                         "threads": 1, "batch": 64})
            print(rows[-1], flush=True)
    load_after = os.getloadavg()[0]
    df = pd.DataFrame(rows)
    df["load_avg_1min"] = f"{load_before:.2f} -> {load_after:.2f} on {os.cpu_count()} cores"
    df.to_csv(args.out, index=False, float_format="%.4g")
    print(df.to_string())


if __name__ == "__main__":
    main()
