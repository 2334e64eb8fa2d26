"""Why vSGD loses where it loses in Table 4 (docs/table4.md): its learning rates against SGD-momentum's tuned step.

    python benchmarks/table4_why.py --workloads mnist_cnn char_transformer --methods vsgd_fd vsgd_l \
        --csv benchmarks/table4_why.csv

Trains one member (seed 0) of each workload with each method exactly as the Table 4 runner does
(experiments.workloads: the same data subset, model, minibatches, optimizer front-end at its defaults) and logs,
at steps 1, 2, 5, 10, 20, 50, 100, ... and the last: the minibatch loss and the quantiles (10 %, 50 %, 90 %) of the
per-element learning rates the optimizer uses (``learning_rates()``, for vSGD); ``sgdm`` rows give SGD-momentum's
effective step lr / (1 - momentum) at the lr Table 4 picked (``--sgdm-lr``), for comparison; ``relu_dead``: the
fraction of the model's ReLU outputs (every nn.ReLU module's units) that are 0 for all of the first 1000 training
rows (a unit that never fires passes no gradient; NaN for models without nn.ReLU modules); for VSGD with its step
cap (``model=``), over the steps since the previous logged step: the median of the cap's alpha (1: the rule's own
step), the fraction of steps the cap shortened (alpha < 1) and the fraction the check cut back (``loss_change`` >
0). No timing.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import write_csv

from experiments import workloads as W
from vsgd import PerSampleClosure


def log_steps(total: int) -> list[int]:
    out, k = set(), 1
    while k <= total:
        out |= {k, 2 * k, 3 * k, 5 * k, 7 * k}
        k *= 10
    return sorted({s for s in out if s <= total} | {total})


@torch.no_grad()
def relu_dead(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Fraction of the units of every nn.ReLU module that output 0 for every row of x."""
    outs = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: outs.append((o > 0).any(0).reshape(-1)))
             for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    model(x)
    for h in hooks:
        h.remove()
    alive = torch.cat(outs) if outs else torch.empty(0)
    return float(1 - alive.float().mean()) if len(alive) else float("nan")


def trace(name: str, method: str, sgdm_lr: float, epochs: float | None = None, seed: int = 0) -> list[dict]:
    wl = W.workload_config(name)
    data = W.build_data(wl)
    torch.manual_seed(seed)
    model = W.build_model(wl, data)
    hp = {"lr": sgdm_lr, "momentum": 0.9} if method == "sgdm" else {}
    opt = W.make_optimizer(method, hp, model, wl)
    gen = torch.Generator().manual_seed(seed + 7919)
    n, B = len(data.x_train), int(wl["batch_size"])
    steps = round(n // B * float(epochs if epochs is not None else wl["epochs"]))
    marks = set(log_steps(steps))
    rows, perm, pos = [], torch.randperm(n, generator=gen), 0
    caps: list[dict] = []  # the step cap's info (VSGD with model=) of the steps since the last logged one
    for step in range(1, steps + 1):
        if pos + B > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        idx = perm[pos : pos + B]
        pos += B
        try:
            loss = float(opt.step(PerSampleClosure(model, F.cross_entropy, data.x_train[idx], data.y_train[idx])).detach())
        except RuntimeError as exc:  # e.g. the curvature sampler on a non-finite output: diverged, said so
            print(f"{name} {method} seed {seed} step {step}: {type(exc).__name__}: {exc}", flush=True)
            loss = float("nan")
        if getattr(opt, "last_step_cap", None) is not None:
            caps.append(opt.last_step_cap)
        if not math.isfinite(loss):  # diverged: log this step and stop
            marks.add(step)
        if step in marks:
            if not math.isfinite(loss):
                q = [float("nan")] * 3
            elif method == "sgdm":
                q = [sgdm_lr / (1 - 0.9)] * 3
            else:
                r = torch.cat([t.reshape(-1).float() for t in opt.learning_rates()])
                q = torch.quantile(r[torch.randperm(len(r))[:100_000]], torch.tensor([0.1, 0.5, 0.9])).tolist()
            alphas = [c["alpha"] for c in caps]
            rows.append({"workload": name, "method": method, "step": step, "loss": loss, "rate_p10": q[0],
                         "rate_p50": q[1], "rate_p90": q[2], "relu_dead": relu_dead(model, data.x_train[:1000]),
                         # the cap over the steps since the last logged step: median alpha, the fraction of steps it
                         # shortened (alpha < 1) and the fraction the check cut back (the loss rose); NaN: no cap
                         "cap_alpha_p50": statistics.median(alphas) if alphas else float("nan"),
                         "cap_shortened": sum(a < 1 for a in alphas) / len(alphas) if alphas else float("nan"),
                         "check_cut": (sum(c.get("loss_change", 0.0) > 0 for c in caps) / len(caps)
                                       if caps else float("nan"))})
            caps = []
        if not math.isfinite(loss):
            break
    if hasattr(opt, "close"):
        opt.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", nargs="+", default=["mnist_cnn", "char_transformer"])
    ap.add_argument("--methods", nargs="+", default=["vsgd_fd", "sgdm"])
    ap.add_argument("--sgdm-lr", type=float, default=0.03, help="SGD-momentum's lr (Table 4's pick)")
    ap.add_argument("--epochs", type=float, default=None, help="default: the workload's budget")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="members to trace (Table 4's seeds: 0 1 2)")
    ap.add_argument("--csv", type=Path, default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for name in a.workloads:
        for m in a.methods:
            try:
                got = [r | {"seed": seed} for seed in a.seeds for r in trace(name, m, a.sgdm_lr, a.epochs, seed)]
            except (TypeError, W.Unsupported) as exc:
                print(f"{name} {m}: skipped ({exc})")
                continue
            for r in got:
                print(f"{name:16s} {m:8s} seed {r['seed']} step {r['step']:5d} loss {r['loss']:9.4g} rate p10/p50/p90 "
                      f"{r['rate_p10']:.3g} / {r['rate_p50']:.3g} / {r['rate_p90']:.3g}  relu dead {r['relu_dead']:.3f}  cap alpha "
                      f"p50 {r['cap_alpha_p50']:.3g} shortened {r['cap_shortened']:.2f} check cut {r['check_cut']:.2f}",
                      flush=True)
            rows += got
    if a.csv and rows:
        write_csv(rows, a.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
