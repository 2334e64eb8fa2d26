"""Cost and accuracy of the curvature estimators of vsgd/curvature.py (issue 34 s1).

Cost: per model, the time of one forward + backward pass ("grad", what any optimizer's step needs) against the
same pass with each estimator added, as a ratio within one run (repetitions interleaved, median over them):

* ``gnb``: what ``VSGD(model=..., curvature="gnb")`` does: the closure's forward + backward with the optimizer's
  hook on the model output (one extra backward from the output, no extra forward);
* ``bbprop``: the closure's pass with the ActivationRecorder hooks, then bbprop (the paper's MLP M1 only);
* ``gnb_per_sample``, ``hutchinson_ggn``: the plain pass plus the stand-alone estimator (torch.func; they run
  their own forward passes).

Models (issue 34 s4): small CNN on 1x28x28 (batch 64), small residual CNN on 3x32x32 (batch 64), LSTM and
transformer encoder on token sequences (vocab 64, length 64, batch 32), the paper's M1 MLP 784-120-10 tanh
(batch 64).

Accuracy: on a small float64 tanh MLP and a small CNN, an exponential moving average (1/tau = 0.1, as vSGD's
h_bar with tau = 10) of each estimator over 100 draws on one batch, its relative error
||h_bar - G_diag|| / ||G_diag|| against the exact Gauss-Newton diagonal (torch.func), mean over 5 repeats.
bbprop is deterministic: its error is its bias (it drops off-diagonal terms, docs/vsgd.md).

    python benchmarks/curvature_cost.py [--reps 7] [--out benchmarks/curvature_cost]
writes ``<out>.csv`` (cost) and ``<out>_error.csv`` (accuracy).
"""

from __future__ import annotations

import argparse
import statistics
import time

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from vsgd.bbprop import ActivationRecorder, bbprop
from vsgd.curvature import SampledGaussNewton, exact_ggn_diagonal, gnb, gnb_per_sample, hutchinson_ggn


class Residual(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width))

    def forward(self, x):
        return torch.relu(x + self.body(x))


class LSTMClassifier(nn.Module):
    def __init__(self, vocab=64, width=64):
        super().__init__()
        self.embed, self.lstm, self.head = nn.Embedding(vocab, width), nn.LSTM(width, width, batch_first=True), nn.Linear(width, vocab)

    def forward(self, x):
        return self.head(self.lstm(self.embed(x))[0])  # next-token logits at every position [B, T, vocab]


class Encoder(nn.Module):
    def __init__(self, vocab=64, width=64, length=64):
        super().__init__()
        self.embed, self.pos = nn.Embedding(vocab, width), nn.Parameter(torch.zeros(length, width))
        self.blocks = nn.TransformerEncoder(nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.1, batch_first=True), 2)
        self.head = nn.Linear(width, vocab)

    def forward(self, x):
        return self.head(self.blocks(self.embed(x) + self.pos))


def workloads():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 64, (32, 64), generator=g)
    return {
        "cnn_mnist": (nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                                    nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 7 * 7, 10)),
                      torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)),
        "resnet_cifar": (nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), Residual(16),
                                       nn.MaxPool2d(2), Residual(16), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)),
                         torch.randn(64, 3, 32, 32, generator=g), torch.randint(0, 10, (64,), generator=g)),
        "lstm_tokens": (LSTMClassifier(), tokens, torch.roll(tokens, -1, 1)),
        "transformer_tokens": (Encoder(), tokens, torch.roll(tokens, -1, 1)),
        "m1_mlp": (nn.Sequential(nn.Linear(784, 120), nn.Tanh(), nn.Linear(120, 10)),
                   torch.randn(64, 784, generator=g), torch.randint(0, 10, (64,), generator=g)),
    }


def loss_of(model, x, y):
    out = model(x)
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def cost(reps: int) -> pd.DataFrame:
    rows = []
    for name, (model, x, y) in workloads().items():
        torch.manual_seed(0)

        def grad():
            model.zero_grad()
            loss_of(model, x, y).backward()

        def with_hook(make):
            def run():
                hook = make()
                try:
                    grad()
                    if isinstance(hook, ActivationRecorder):
                        hook.curvature("cross_entropy")
                    else:
                        hook.curvature()
                finally:
                    hook.remove()
            return run

        def plus(est):
            def run():
                grad()
                est(model, x, "cross_entropy", generator=torch.Generator().manual_seed(0))
            return run

        ways = {"grad": grad, "gnb": with_hook(lambda: SampledGaussNewton(model, "cross_entropy")),
                "gnb_per_sample": plus(gnb_per_sample), "hutchinson_ggn": plus(hutchinson_ggn)}
        if isinstance(model, nn.Sequential) and all(isinstance(m, (nn.Linear, nn.Tanh)) for m in model):
            ways["bbprop"] = with_hook(lambda: ActivationRecorder(model))
        times: dict[str, list[float]] = {k: [] for k in ways}
        notes: dict[str, str] = {}
        for r in range(reps + 1):  # the first round warms up and is not counted
            for k, fn in ways.items():
                if k in notes:
                    continue
                try:
                    t = timed(fn)
                except (RuntimeError, NotImplementedError) as err:
                    notes[k] = str(err).splitlines()[0][:160]
                    continue
                if r:
                    times[k].append(t)
        base = statistics.median(times["grad"])
        for k in ways:
            ms = statistics.median(times[k]) * 1e3 if times[k] else float("nan")
            rows.append({"model": name, "estimator": k, "ms": round(ms, 2),
                         "ratio_to_grad": round(ms / 1e3 / base, 2) if times[k] else float("nan"),
                         "note": notes.get(k, "")})
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def error(repeats: int = 5, draws: int = 100, fraction: float = 0.1) -> pd.DataFrame:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    models = {
        "tanh_mlp_20-16-16-5": (nn.Sequential(nn.Linear(20, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 5)).double(),
                                torch.randn(32, 20, generator=g, dtype=torch.float64)),
        "cnn_1x8x8": (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 5)).double(),
                      torch.randn(32, 1, 8, 8, generator=g, dtype=torch.float64)),
    }
    rows = []
    for name, (model, x) in models.items():
        exact = torch.cat([e.reshape(-1) for e in exact_ggn_diagonal(model, x, "cross_entropy")])
        ests = {"gnb": gnb, "gnb_per_sample": gnb_per_sample, "hutchinson_ggn": hutchinson_ggn}
        for est_name, est in ests.items():
            errs = []
            for r in range(repeats):
                gen = torch.Generator().manual_seed(100 + r)
                h_bar = torch.zeros_like(exact)
                for t in range(draws):
                    sample = torch.cat([s.reshape(-1) for s in est(model, x, "cross_entropy", generator=gen)])
                    h_bar = torch.lerp(h_bar, sample.abs(), max(fraction, 1.0 / (t + 1)))  # vSGD's h_bar uses |h|
                errs.append(float((h_bar - exact).norm() / exact.norm()))
            rows.append({"model": name, "estimator": est_name, "relative_error": round(statistics.mean(errs), 4),
                         "note": f"EMA 1/tau={fraction} after {draws} draws, mean of {repeats}"})
            print(rows[-1], flush=True)
        if all(isinstance(m, (nn.Linear, nn.Tanh)) for m in model):
            b = torch.cat([c.reshape(-1) for c in bbprop(model, x, "cross_entropy")])
            rows.append({"model": name, "estimator": "bbprop", "relative_error": round(float((b - exact).norm() / exact.norm()), 4),
                         "note": "deterministic: its bias (drops off-diagonal terms)"})
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--out", default="benchmarks/curvature_cost")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cost(args.reps).to_csv(args.out + ".csv", index=False)
    error().to_csv(args.out + "_error.csv", index=False)


if __name__ == "__main__":
    main()
