"""Time per training step of each vsgd optimizer against torch.optim.Adam, interleaved in one run (issue 34 s3B).

    PYTHONPATH=. python benchmarks/optimizer_step_cost.py [--rounds 7] [--steps 20] [--out benchmarks/optimizer_step_cost.csv]

Models: the issue's 784-256-256-10 ReLU MLP and a small CNN (conv 1->16 3x3, ReLU, max-pool 2, conv 16->32 3x3,
ReLU, max-pool 2, linear 1568->10), minibatch 64 of MNIST (experiments.data); and the five Table 4 workloads
(conf/workload/, experiments.workloads: their models, data and minibatch of 32), named ``table4 <workload>``.

A step is what a user's loop pays per minibatch: ``opt.step(closure)``, the closure zeroing the gradients and
running forward and backward. Methods:

* ``adam``: torch.optim.Adam at its defaults (the foreach implementation);
* ``vsgd_l``/``_b``/``_g``: VSGD with ``model=`` at its defaults (``curvature="auto"``: bbprop on the MLP, the
  sampled Gauss-Newton estimate "gnb" of vsgd/curvature.py on the CNN; the CSV's ``curvature`` column says which);
* ``vsgd_l, no step cap``: ``cap_step=False`` (the default before session 25): the cap's extra forward passes are
  the difference;
* ``vsgd_l, cap without the check``: ``cap_step=True`` (the default of session 25): the cap alone, without the
  check of the batch loss at the capped step (the default's second extra forward pass, session 26);
* ``vsgd_l given curvature``: VSGD mode "l" with ``curvature_fn`` returning fixed tensors, which isolates the
  element-wise update (the front-end and the rule math) from the curvature estimate (helper H1's part);
* ``vsgd_fd``: VSGDfd with the plain closure (two gradient evaluations per step, paper 2 eq. 6);
* ``closure only``: the forward and backward pass alone, the floor any optimizer pays;
* ``vsgd_l, per-sample closure``: VSGD mode "l" stepped with a :class:`vsgd.PerSampleClosure`, as Table 4 runs it
  (paper 2's minibatch rates, eq. 3: per-sample gradients from ``torch.func.vmap`` on top of the step).

A run that diverges (a non-finite loss, or an optimizer error on a non-finite output: vSGD-l without the step cap
on the residual CNN) restarts from its initialisation inside the timed loop; ``restarts`` counts them.

Every round times ``--steps`` steps of every method in turn (after a warm-up round), on one thread, so all
methods see the same machine; the ratio to Adam is taken within each round, then the median over rounds is
reported. The machine is shared with other jobs: the CSV records the load average, and only ratios within one run
mean anything.
"""

from __future__ import annotations

import argparse
import math
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
    "adam": lambda m: torch.optim.Adam(m.parameters()),
    "vsgd_l": lambda m: vsgd.VSGD(m.parameters(), mode="l", model=m, loss="cross_entropy"),
    "vsgd_b": lambda m: vsgd.VSGD(m.parameters(), mode="b", model=m, loss="cross_entropy"),
    "vsgd_g": lambda m: vsgd.VSGD(m.parameters(), mode="g", model=m, loss="cross_entropy"),
    "vsgd_l, no step cap": lambda m: vsgd.VSGD(m.parameters(), mode="l", model=m, loss="cross_entropy",
                                                       cap_step=False),
    "vsgd_l, cap without the check": lambda m: vsgd.VSGD(m.parameters(), mode="l", model=m,
                                                                  loss="cross_entropy", cap_step=True),
    "vsgd_l given curvature": lambda m: vsgd.VSGD(m.parameters(), mode="l", curvature_fn=given_curvature(m)),
    "vsgd_fd": lambda m: vsgd.VSGDfd(m.parameters()),
    "closure only": lambda m: "closure",
    "vsgd_l, per-sample closure": lambda m: vsgd.VSGD(m.parameters(), mode="l", model=m, loss="cross_entropy"),
}
PER_SAMPLE = {"vsgd_l, per-sample closure"}
MODELS = {"mlp 784-256-256-10": mlp, "small cnn": cnn}
TABLE4 = ("mnist_cnn", "cifar_resnet", "char_lstm", "char_transformer", "sparse_logreg")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", default="benchmarks/optimizer_step_cost.csv")
    ap.add_argument("--models", nargs="*", default=None,
                    help=f"a subset of: {', '.join([*MODELS, *('table4 ' + w for w in TABLE4)])}")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from experiments import workloads  # the harness (this script sits above the library)
    from experiments.data import load

    mnist = load("mnist")
    cases = {name: (make, mnist.x_train, mnist.y_train, 64) for name, make in MODELS.items()}
    for name in TABLE4:
        wl = workloads.workload_config(name)
        data = workloads.build_data(wl)
        cases[f"table4 {name}"] = (lambda wl=wl, data=data: workloads.build_model(wl, data), data.x_train,
                                   data.y_train, int(wl["batch_size"]))
    unknown = set(args.models or []) - set(cases)
    if unknown:
        raise SystemExit(f"unknown --models {sorted(unknown)}; choose from {list(cases)}")
    rows = []
    load_before = os.getloadavg()[0]
    for model_name, (make, xs, ys, batch) in cases.items():
        if args.models and model_name not in args.models:
            continue
        runs, restarts = {}, {}

        def fresh(name):
            torch.manual_seed(0)
            model = make()
            return model, METHODS[name](model)

        for name in METHODS:
            runs[name] = (*fresh(name), [0])
            restarts[name] = 0
        times = {name: [] for name in runs}

        def one(name, steps):
            model, opt, pos = runs[name]
            t0 = time.perf_counter()
            for _ in range(steps):
                i = pos[0] = (pos[0] + batch) % (len(xs) - batch)
                x, y = xs[i:i + batch], ys[i:i + batch]

                def closure():
                    (opt if opt != "closure" else model).zero_grad()
                    loss = F.cross_entropy(model(x), y)
                    loss.backward()
                    return loss

                try:
                    if name in PER_SAMPLE:
                        loss = opt.step(vsgd.PerSampleClosure(model, F.cross_entropy, x, y))
                    else:
                        loss = closure() if opt == "closure" else opt.step(closure)
                    ok = math.isfinite(float(loss))
                except (RuntimeError, ValueError):  # a diverged run (non-finite output): timed from a fresh start
                    ok = False
                if not ok:
                    restarts[name] += 1
                    model, opt = fresh(name)
                    runs[name] = (model, opt, pos)
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
                         "threads": 1, "batch": batch, "restarts": restarts[name]})
            print(rows[-1], flush=True)
    load_after = os.getloadavg()[0]
    df = pd.DataFrame(rows)
    df["load_avg_1min"] = f"{load_before:.2f} -> {load_after:.2f} on {os.cpu_count()} cores"
    df.to_csv(args.out, index=False, float_format="%.4g")
    print(df.to_string())


if __name__ == "__main__":
    main()
