"""Why vSGD-l diverged on Table 4's convnets, and which step cap fixes it (issue 34 s3; vsgd/stepcap.py), measured.

    PYTHONPATH=. python benchmarks/vsgd_step_cap.py                      # both parts, MNIST CNN, seeds 0 1 2
    PYTHONPATH=. python benchmarks/vsgd_step_cap.py --workload cifar_resnet --variants off library

1. ``--trace`` (seed 1 of the MNIST CNN, which overflows at step 31 without the cap): for the steps after the slow
   start, the rule's own step d (cap off): its slope -g.d on the minibatch, the Gauss-Newton curvature along it
   d^T G d (exact: a forward-mode jvp of the model on the minibatch, H from the softmax), the diagonal model's
   sum_i h_bar_i d_i^2, and alpha* = -g.d / d^T G d (the minimum of the quadratic model along d).
2. The variants (Table 4's runner loop: same data, model, minibatches, ``VSGD`` at its defaults but the cap), one
   epoch each (the workload's budget), final test error:
   ``off`` (the rule's step), ``library`` (``cap_step=True``, the default: finite difference of the output with
   e = sqrt(eps) (1 + |theta|) / |d|), and, applied to the cap-off optimizer's step from outside: ``exact``
   (d^T G d by jvp), ``fd_fixed`` (a fixed e = 1e-3), ``secant`` (e = 1: the output change of the whole step),
   ``one_draw`` ((u . J d)^2 with one sampled-output u, E[u u^T] = H: free, from the gnb estimator's draw).

Writes ``benchmarks/vsgd_step_cap.csv`` (variants) and ``benchmarks/vsgd_step_cap_trace.csv``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch.func import functional_call, jvp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import workloads as W
from vsgd import PerSampleClosure
from vsgd.curvature import output_quadratic, sample_output_gradient

VARIANTS = ("off", "library", "exact", "fd_fixed", "secant", "one_draw")


def curvature_along(model, x, d: list, how: str, gen: torch.Generator) -> tuple[float, torch.Tensor]:
    """d^T G d on the minibatch x (mean cross-entropy), by ``how``; and the output at the current parameters."""
    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach() for n, p in model.named_parameters()}
    if how in ("exact", "one_draw"):
        out, jd = jvp(lambda ps: functional_call(model, ps, (x,)), (params,), (dict(zip(names, d)),))
        if how == "one_draw":
            u = sample_output_gradient("cross_entropy", out, "mean", gen)
            return float((u * jd).sum()) ** 2, out
        return float(output_quadratic("cross_entropy", out, jd)), out
    e = 1e-3 if how == "fd_fixed" else 1.0
    with torch.no_grad():
        out = functional_call(model, params, (x,))
        out2 = functional_call(model, {n: params[n] + e * di for n, di in zip(names, d)}, (x,))
    return float(output_quadratic("cross_entropy", out, (out2 - out) / e)), out


def run(workload: str, seed: int, variant: str, trace: bool = False) -> tuple[dict, list[dict]]:
    wl = W.workload_config(workload)
    data = W.build_data(wl)
    torch.manual_seed(seed)
    model = W.build_model(wl, data)
    opt = W.make_optimizer("vsgd_l", {}, model, wl)
    if variant != "library":
        opt.cap_step, opt._inputs = False, opt._inputs.remove() or None  # the rule's own step
    gen, ugen = torch.Generator().manual_seed(seed + 7919), torch.Generator().manual_seed(seed + 123)
    n, B = len(data.x_train), int(wl["batch_size"])
    steps = round(n // B * float(wl["epochs"]))
    rows, alphas, loss, step = [], [], float("nan"), 0
    for step, idx in enumerate(W.minibatch_order(n, B, steps, gen), start=1):
        x, y = data.x_train[idx], data.y_train[idx]
        before = [p.detach().clone() for p in model.parameters()]
        try:
            loss = float(opt.step(PerSampleClosure(model, F.cross_entropy, x, y)).detach())
        except RuntimeError:  # the sampled curvature on a non-finite output: diverged
            loss = float("nan")
        if not math.isfinite(loss):
            break
        if variant == "library":
            if opt.last_step_cap is not None:
                alphas.append(opt.last_step_cap["alpha"])
            continue
        d = [p.detach() - b for p, b in zip(model.parameters(), before)]
        slope = -sum(float((p.grad * di).sum()) for p, di in zip(model.parameters(), d))
        if slope <= 0:
            continue
        with torch.no_grad():
            for p, b in zip(model.parameters(), before):
                p.copy_(b)
        curv, _ = curvature_along(model, x, d, "exact" if variant == "off" else variant, ugen)
        alpha = min(1.0, slope / curv) if curv > 0 else 1.0
        if trace:
            diag = sum(float((opt.state[p]["h_bar"] * di * di).sum()) for p, di in zip(model.parameters(), d))
            rows.append({"workload": workload, "seed": seed, "step": step, "loss": loss, "slope": slope,
                         "curvature_along_step": curv, "diagonal_model": diag, "alpha_star": slope / curv if curv > 0 else float("nan"),
                         "ratio_curvature_to_diagonal": curv / diag if diag > 0 else float("nan")})
        a = 1.0 if variant == "off" else alpha
        alphas.append(a)
        with torch.no_grad():
            for p, b, di in zip(model.parameters(), before, d):
                p.copy_(b + a * di)
    err, _ = W.evaluate(model, data.x_test, data.y_test)
    diverged = not math.isfinite(loss)
    med = sorted(alphas)[len(alphas) // 2] if alphas else float("nan")
    return ({"workload": workload, "seed": seed, "variant": variant, "steps": step, "diverged": diverged,
             "test_error_pct": 100.0 if diverged else err, "final_loss": loss, "alpha_median": med,
             "alpha_min": min(alphas) if alphas else float("nan")}, rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="mnist_cnn")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--no-trace", action="store_true")
    ap.add_argument("--out", default="benchmarks/vsgd_step_cap")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    if not a.no_trace:
        _, rows = run(a.workload, 1 if 1 in a.seeds else a.seeds[0], "off", trace=True)
        pd.DataFrame(rows).to_csv(a.out + "_trace.csv", index=False, float_format="%.6g")
        for r in rows[8:]:
            print(f"step {r['step']:3d} loss {r['loss']:10.4g} -g.d {r['slope']:9.3g} d^T G d {r['curvature_along_step']:9.3g} "
                  f"sum h d^2 {r['diagonal_model']:9.3g} ratio {r['ratio_curvature_to_diagonal']:7.3g} alpha* {r['alpha_star']:8.3g}")
    out = []
    for v in a.variants:
        for s in a.seeds:
            r, _ = run(a.workload, s, v)
            print(r, flush=True)
            out.append(r)
    pd.DataFrame(out).to_csv(a.out + ".csv", index=False, float_format="%.6g")
    print(pd.DataFrame(out).groupby("variant", sort=False).test_error_pct.agg(["mean", "min", "max"]).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
