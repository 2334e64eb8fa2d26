"""Diagnostics of vSGD-fd (docs/vsgd_fd.md): the 1-D suite ablation and the M0 learning-rate breakdown.

    python -m synthetic.fd_diagnostics ablate '{"fd_sign=-1": {"fd_sign": -1}}' --n 1 10
    python -m synthetic.fd_diagnostics m0 --steps 3000 [--diagonal-oracle]

``ablate``: each variant (hyper-parameter overrides of ``vsgd_fd``) on all 36 cases, 100 runs x 1024 updates,
the suite's samples (``suite_1d.simulate(..., seed=1000 n)``); prints the number of cases whose median final
gain is <= 0, the fraction of (run, checkpoint) cells after the bootstrap worse than the start (red), the
fraction of runs ending worse, the number of cases with any red, and the lowest gain of the expected loss.

``m0``: vSGD-fd at n = 1 on a stand-alone softmax regression equal to M0 (784 -> 10, cross-entropy,
lambda / 2 ||W||^2 with lambda = 1e-4 on the weights, Glorot-uniform start, MNIST as ``experiments.data``
prepares it). Every 500 updates: median rate and its factors (1/h = h_bar / v_fd_bar, 1/h_bar, the variance
normalisation h_bar^2 / v_fd_bar, the SNR g_bar^2 / v_bar); then, on one sample, the FD curvature of Alg. 1
(all parameters shifted by g_bar at once) against the sample's diagonal curvature p_k (1 - p_k) x_j^2 + lambda.
``--diagonal-oracle`` gives the rule an FD that sees only that diagonal (what Alg. 1 would see if the problem
were separable). Run both with ``nice``; one thread.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import torch

from synthetic import suite_1d as s
from vsgd.fd import RULE


def ablate(variants: dict[str, dict[str, float]], ns=(1, 10)) -> None:
    cases = s.cases()
    for name, hp in variants.items():
        for n in ns:
            G = s.gains(s.simulate(RULE, [hp], cases, runs=100, updates=1024, n=n, seed=1000 * n))[0]
            neg, live = G < 0, G != 0  # bootstrap checkpoints are exactly 0
            med = np.median(G[..., -1], axis=1)
            worst = G.min(axis=(1, 2))
            w = int(np.argmin(worst))
            print(f"{name:32s} n={n:2d}: medians<=0 {int((med <= 0).sum())}, red cells {neg.sum() / live.sum():.4f}, "
                  f"runs ending worse {neg[..., -1].mean():.4f}, cases with red {int(neg.any(axis=(1, 2)).sum())}, "
                  f"worst {worst[w]:.3f} ({cases[w].label})", flush=True)


def m0(steps: int = 3000, diagonal_oracle: bool = False, hp_over: dict | None = None, lam: float = 1e-4) -> None:
    from experiments.data import load

    torch.manual_seed(0)
    D = load("mnist")
    X, Y = D.x_train.double(), D.y_train
    r = math.sqrt(6 / (784 + 10))
    W = (torch.rand(1, 10, 784, dtype=torch.float64) * 2 - 1) * r
    b = torch.zeros(1, 10, dtype=torch.float64)

    def grads(W, b, x, y):
        p = torch.softmax(W[0] @ x + b[0], 0)
        e = p.clone()
        e[y] -= 1
        return [(torch.outer(e, x) + lam * W[0]).unsqueeze(0), e.unsqueeze(0)], p

    def diag(p, x):  # the sample's diagonal curvature of the weights
        return torch.outer(p * (1 - p), x * x) + lam

    hp = RULE.hp_tensors([hp_over or {}], dtype=torch.float64, device="cpu")
    st = RULE.init([W, b], hp)
    perm = torch.randperm(X.shape[0])
    for t in range(steps):
        x, y = X[perm[t]], int(Y[perm[t]])
        (gW, gb), p = grads(W, b, x, y)
        if diagonal_oracle:
            grad_at = lambda sh, gW=gW, gb=gb, p=p, x=x: [gW + diag(p, x) * sh[0], gb + p * (1 - p) * sh[1]]
        else:
            grad_at = lambda sh, x=x, y=y, W=W, b=b: grads(W + sh[0], b + sh[1], x, y)[0]
        ex = {"batch_size": 1, "sq_grad_mean": [gW * gW, gb * gb], "nonzero_count": [(gW != 0).double(), (gb != 0).double()],
              "grad_at": grad_at}
        ups, st = RULE.update([gW, gb], st, [W, b], hp, ex)
        W, b = W + ups[0], b + ups[1]
        if (t + 1) % 500 == 0 or t == steps - 1:
            hb, vfd, gbar, vb = (st[k][0][0] for k in ("h_bar", "v_fd_bar", "g_bar", "v_bar"))
            print(f"update {t + 1}: weight rates median {float(st['eta'][0].median()):.2e} = 1/h median "
                  f"{float(((hb + 1e-5) / (vfd + 1e-5)).median()):.2e} (1/h_bar {float((1 / hb).median()):.2e} x h_bar^2/v_fd "
                  f"{float((hb * hb / vfd).median()):.3f}) x SNR g^2/v median {float((gbar ** 2 / (vb + 1e-5)).median()):.2e}; "
                  f"tau median {float(st['tau'][0][0].median()):.0f}", flush=True)
    x, y = X[perm[steps]], int(Y[perm[steps]])
    (gW, gb), p = grads(W, b, x, y)
    dW, db = (torch.where(d >= 0, d + 1e-5, d - 1e-5) for d in st["g_bar"])  # eq. 6's delta, as the rule forms it
    (sW, _), _ = grads(W + dW, b + db, x, y)
    h_alg1 = ((gW - sW) / dW).abs()[0]
    mask = x.abs() > 0.05
    print(f"one sample, pixels |x| > 0.05: FD curvature of Alg. 1 median {float(h_alg1[:, mask].median()):.3e}, diagonal "
          f"median {float(diag(p, x)[:, mask].median()):.3e}, ratio median {float((h_alg1 / diag(p, x))[:, mask].median()):.1f}; "
          f"logit change of the shift max {float((dW[0] @ x + db[0]).abs().max()):.3f}")
    Hexp = sum(diag(torch.softmax(W[0] @ xx + b[0], 0), xx) for xx in X[perm[:2000]]) / 2000
    print(f"median 1/E[H_ii] (expected diagonal over 2000 samples) {float((1 / Hexp).median()):.2e}")
    err = float(((W[0] @ D.x_test.double().T + b[0].unsqueeze(1)).argmax(0) != D.y_test).double().mean())
    print(f"test error after {steps} updates: {100 * err:.2f} %")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("ablate")
    a.add_argument("variants", help='JSON: {"name": {hp: value}}; {} = the defaults')
    a.add_argument("--n", type=int, nargs="+", default=[1, 10])
    m = sub.add_parser("m0")
    m.add_argument("--steps", type=int, default=3000)
    m.add_argument("--diagonal-oracle", action="store_true")
    m.add_argument("--hp", default="{}", help="JSON hyper-parameter overrides")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.cmd == "ablate":
        ablate(json.loads(args.variants), tuple(args.n))
    else:
        m0(args.steps, args.diagonal_oracle, json.loads(args.hp))


if __name__ == "__main__":
    main()
