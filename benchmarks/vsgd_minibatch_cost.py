"""Cost of VSGD's minibatch rates (paper 2 eq. 3, issue 34 s2): a step with a plain closure (the minibatch gradient
as one sample) against a step with ``vsgd.PerSampleClosure`` (the closure's pass plus torch.func per-sample
gradients for mean_j g_j^2), as a ratio within one run (steps interleaved, median over repetitions), and Adam's
step as a yardstick. Models: the paper's M1 MLP (784-120-10 tanh, bbprop) and a small CNN on 1x28x28 (gnb),
batch 64.

    python benchmarks/vsgd_minibatch_cost.py [--reps 20] [--out benchmarks/vsgd_minibatch_cost.csv]
"""

from __future__ import annotations

import argparse
import statistics
import time

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from vsgd import VSGD, PerSampleClosure


def models():
    return {
        "m1_mlp": lambda: nn.Sequential(nn.Linear(784, 120), nn.Tanh(), nn.Linear(120, 10)),
        "cnn_mnist": lambda: nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                           nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                           nn.Linear(32 * 7 * 7, 10)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out", default="benchmarks/vsgd_minibatch_cost.csv")
    args = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    rows = []
    for name, make in models().items():
        shape = (64, 784) if name == "m1_mlp" else (64, 1, 28, 28)
        x, y = torch.randn(*shape, generator=g), torch.randint(0, 10, (64,), generator=g)
        runs = {}
        for way in ("adam", "vsgd_plain", "vsgd_per_sample"):
            torch.manual_seed(0)
            model = make()
            opt = (torch.optim.Adam(model.parameters(), 1e-3) if way == "adam"
                   else VSGD(model.parameters(), model=model, loss="cross_entropy"))

            def closure(model=model, opt=opt):
                opt.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                return loss

            step = ((lambda opt=opt, model=model: opt.step(PerSampleClosure(model, F.cross_entropy, x, y)))
                    if way == "vsgd_per_sample" else (lambda opt=opt, closure=closure: opt.step(closure)))
            runs[way] = step
        times = {k: [] for k in runs}
        for r in range(args.reps + 3):  # 3 warm-up rounds
            for k, step in runs.items():
                t = time.perf_counter()
                step()
                if r >= 3:
                    times[k].append(time.perf_counter() - t)
        base = statistics.median(times["vsgd_plain"])
        adam = statistics.median(times["adam"])
        for k, ts in times.items():
            ms = statistics.median(ts)
            rows.append({"model": name, "step": k, "ms": round(ms * 1e3, 2), "ratio_to_vsgd_plain": round(ms / base, 2),
                         "ratio_to_adam": round(ms / adam, 2)})
            print(rows[-1], flush=True)
    pd.DataFrame(rows).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
