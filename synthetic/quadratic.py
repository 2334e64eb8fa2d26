"""The noisy quadratic of paper 1 (Sec. 3.1, eq. 2), vectorised over independent runs.

Per-sample loss  L_j(theta) = 1/2 sum_i h_i (theta_i - c_ji)^2,   c_j = theta* + sigma xi,  xi ~ N(0, I)
gradient         grad_j     = h (theta - c_j);   exact curvature h (so vSGD needs no bbprop here)
expected loss    J(theta)   = 1/2 sum_i h_i [(theta_i - theta*_i)^2 + sigma_i^2]          (eq. 2)

We record the *excess* expected loss J(theta) - J(theta*) = 1/2 sum_i h_i (theta_i - theta*_i)^2, which
is what can fall towards 0 on a log axis (J(theta*) = 1/2 sum h sigma^2 is the same for every method).

Methods, all advanced in lock step over K runs (the ensemble axis) with the same noise draws:
  * SGD with eta(t) = eta0 / (1 + gamma t) (fixed rate: gamma = 0; the paper's "1/t" schedule is
    eta0 = 1, gamma = 1 and "0.2/t" is eta0 = 0.2, gamma = 1, t counting updates from 0);
  * vSGD: the rule ``vsgd_l`` itself (K = runs), fed the exact curvature h;
  * the oracle: eq. 5 per dimension, eta*_i = (theta_i - theta*_i)^2 / (h_i ((theta_i - theta*_i)^2 + sigma_i^2)),
    which knows h, sigma and theta*; and the global oracle of eq. 6.

Entry points (``entry: synthetic.quadratic:<fn>`` in conf/experiment/) write raw arrays to
``<store>/synthetic/<experiment>.npz``; analysis/quadratic_figures.py draws them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vsgd.core import get_rule

DTYPE = torch.float64


# -- the oracle (eqs. 5-6) --------------------------------------------------------------------------
def oracle_rate(theta: Tensor, theta_star: Tensor, h: Tensor, sigma2: Tensor) -> Tensor:
    """eq. 5 (paper 1), per dimension: eta* = (1/h) (theta - theta*)^2 / ((theta - theta*)^2 + sigma^2)."""
    d2 = (theta - theta_star) ** 2
    return d2 / (h * (d2 + sigma2))


def oracle_global_rate(theta: Tensor, theta_star: Tensor, h: Tensor, sigma2: Tensor) -> Tensor:
    """eq. 6 (paper 1): eta*_g = sum h^2 (theta - theta*)^2 / sum (h^3 (theta - theta*)^2 + h^3 sigma^2); [K, 1]."""
    d2 = (theta - theta_star) ** 2
    return (h**2 * d2).sum(dim=-1, keepdim=True) / (h**3 * (d2 + sigma2)).sum(dim=-1, keepdim=True)


def excess_loss(theta: Tensor, theta_star: Tensor, h: Tensor) -> Tensor:
    """J(theta) - J(theta*) = 1/2 sum_i h_i (theta_i - theta*_i)^2 (eq. 2), per run."""
    return 0.5 * (h * (theta - theta_star) ** 2).sum(dim=-1)


# -- methods: (theta, grad, t, theta_star) -> (new theta, rate per dimension) -------------------------
Stepper = Callable[[Tensor, Tensor, int, Tensor], tuple[Tensor, Tensor]]


def sgd_stepper(eta0: float, gamma: float) -> Stepper:
    def step(theta, grad, t, theta_star):
        eta = eta0 / (1.0 + gamma * t)  # paper 1 Sec. 2: eta(t) = eta0 / (1 + gamma t)
        return theta - eta * grad, torch.full_like(theta, eta)

    return step


def oracle_stepper(h: Tensor, sigma2: Tensor, pooling: str = "element") -> Stepper:
    def step(theta, grad, t, theta_star):
        if pooling == "element":
            eta = oracle_rate(theta, theta_star, h, sigma2)
        else:
            eta = oracle_global_rate(theta, theta_star, h, sigma2).expand_as(theta)
        return theta - eta * grad, eta

    return step


def vsgd_stepper(K: int, d: int, h: Tensor, rule_name: str = "vsgd_l", **hp: float) -> Stepper:
    """The vSGD rule itself, K runs as the ensemble axis, one [K, d] parameter tensor, exact curvature."""
    rule = get_rule(rule_name)
    hpt = {k: torch.full((K,), v, dtype=DTYPE) for k, v in rule.check_hp(hp).items()}
    box: dict[str, Any] = {}
    curv = [h.expand(K, d)]

    def step(theta, grad, t, theta_star):
        if "state" not in box:
            box["state"] = rule.init([theta], hpt)
        (u,), box["state"] = rule.update([grad], box["state"], [theta], hpt, {"curvature": curv})
        (eta,) = rule.rates(box["state"], hpt, [theta])
        moved = (t >= box["state"]["n0_max"]) or bool(hpt["move_during_init"][0] > 0)
        return theta + u, (eta.expand_as(theta) if moved else torch.zeros_like(theta))

    step.memory = lambda: box["state"]["tau"][0]  # vSGD-l's tau after the last update [K, d] (Sec. 4.2)
    return step


def simulate(stepper: Stepper, *, theta0: Tensor, theta_star: Callable[[int], Tensor], h: Tensor, sigma: Tensor,
             steps: int, seed: int, keep_theta: int = 0, oracle_at: bool = False) -> dict[str, np.ndarray]:
    """Run one method on K runs (``theta0``: [K, d]) for ``steps`` samples.

    Returns per step the excess loss [steps + 1, K], the rates [steps, K, d] and, if ``oracle_at``, the
    oracle's eq. 5 rate at the method's own theta [steps, K, d]; ``keep_theta`` runs' trajectories; for
    vSGD (a stepper with ``memory``) its memory size tau after each update [steps, K, d].
    """
    gen = torch.Generator().manual_seed(seed)  # same seed for every method: common random numbers
    theta = theta0.clone()
    losses = [excess_loss(theta, theta_star(0), h)]
    rates, oracle, traj, taus = [], [], [theta[:keep_theta].clone()], []
    memory = getattr(stepper, "memory", None)
    for t in range(steps):
        star = theta_star(t)
        c = star + sigma * torch.randn(theta.shape, generator=gen, dtype=DTYPE)  # c_j = theta* + sigma xi
        grad = h * (theta - c)  # eq. 3
        if oracle_at:
            oracle.append(oracle_rate(theta, star, h, sigma**2))
        theta, eta = stepper(theta, grad, t, star)
        rates.append(eta)
        if memory is not None:
            taus.append(memory().clone())
        losses.append(excess_loss(theta, theta_star(t + 1) if t + 1 < steps else star, h))
        traj.append(theta[:keep_theta].clone())
    out = {"loss": torch.stack(losses).numpy(), "rate": torch.stack(rates).numpy()}
    if oracle_at:
        out["oracle_rate_at_theta"] = torch.stack(oracle).numpy()
    if keep_theta:
        out["theta"] = torch.stack(traj, dim=1).numpy()  # [keep, steps + 1, d]
    if taus:
        out["tau"] = torch.stack(taus).numpy()
    return out


def run_methods(methods: Mapping[str, Mapping[str, Any]], *, K: int, theta0: Tensor, theta_star, h, sigma, steps,
                seed, keep_theta=0) -> dict[str, np.ndarray]:
    """Every method of a config (``kind: sgd|vsgd|oracle``) on the same noise; arrays keyed '<method>/<name>'."""
    d = h.numel()
    out: dict[str, np.ndarray] = {}
    for name, m in methods.items():
        kind = m["kind"]
        if kind == "sgd":
            stepper = sgd_stepper(float(m["eta0"]), float(m.get("gamma", 0.0)))
        elif kind == "oracle":
            stepper = oracle_stepper(h, sigma**2, m.get("pooling", "element"))
        elif kind == "vsgd":
            hp = {k: float(v) for k, v in m.items() if k not in ("kind", "rule")}
            stepper = vsgd_stepper(K, d, h, m.get("rule", "vsgd_l"), **hp)
        else:
            raise ValueError(f"Unknown method kind {kind!r} for {name}: use sgd, vsgd or oracle.")
        res = simulate(stepper, theta0=theta0, theta_star=theta_star, h=h, sigma=sigma, steps=steps, seed=seed,
                       keep_theta=keep_theta, oracle_at=kind == "vsgd")
        for k, v in res.items():
            out[f"{name}/{k}"] = v
    out["methods"] = np.array(list(methods))
    return out


# -- experiments --------------------------------------------------------------------------------------
def _settings(cfg) -> dict[str, Any]:
    from omegaconf import OmegaConf

    syn = cfg["synthetic"]
    return OmegaConf.to_container(syn, resolve=True) if not isinstance(syn, dict) else syn


def _out_path(cfg, name: str) -> Path:
    from experiments.results import DEFAULT_STORE

    store = Path(cfg.get("store") or DEFAULT_STORE)
    path = store / "synthetic" / f"{name}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _save(cfg, name: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    path = _out_path(cfg, name)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays, meta=np.array(repr(meta)))
    tmp.replace(path)
    print(f"[{name}] wrote {path}")
    return path


def supp_fig1_quadratic(cfg) -> Path:
    """Supp. Fig. 1: stationary 1-D noisy quadratic (h = 1), many runs, SGD / schedules / vSGD / oracle."""
    s = _settings(cfg)
    K, steps = int(s["runs"]), int(s["steps"])
    h = torch.tensor([float(s["h"])], dtype=DTYPE)
    sigma = torch.tensor([float(s["sigma"])], dtype=DTYPE)
    star = torch.zeros(K, 1, dtype=DTYPE)
    theta0 = torch.full((K, 1), float(s["theta0"]), dtype=DTYPE)
    arrays = run_methods(s["methods"], K=K, theta0=theta0, theta_star=lambda t: star, h=h, sigma=sigma,
                         steps=steps, seed=int(s["seed"]))
    return _save(cfg, "supp_fig1_quadratic", arrays, s)


def nonstationary(methods: Mapping[str, Mapping[str, Any]], *, runs: int, steps: int, period: int, jump: float,
                  h: float, sigma: float, seed: int) -> dict[str, np.ndarray]:
    """Sec. 6 / Fig. 2: the 1-D noisy quadratic of eq. 2 whose optimum jumps "abruptly every 300 timesteps".

    theta* moves by +-``jump`` (a random sign per run and jump) at t = 0, period, 2 period, ...; theta starts
    at 0, so the first segment starts ``jump`` away too. Every method sees the same noise (``seed``); the
    signs come from ``seed + 1``. Adds ``jumps`` (the steps at which theta* moves) to the arrays.
    """
    ht = torch.tensor([float(h)], dtype=DTYPE)
    st = torch.tensor([float(sigma)], dtype=DTYPE)
    gen = torch.Generator().manual_seed(seed + 1)
    n_seg = (steps + period - 1) // period
    signs = torch.where(torch.rand(n_seg, runs, 1, generator=gen) < 0.5, -1.0, 1.0).to(DTYPE)
    stars = torch.cumsum(float(jump) * signs, dim=0)  # theta* moves by +-jump at t = 0, period, 2 period, ...
    theta0 = torch.zeros(runs, 1, dtype=DTYPE)
    arrays = run_methods(methods, K=runs, theta0=theta0, theta_star=lambda t: stars[min(t // period, n_seg - 1)],
                         h=ht, sigma=st, steps=steps, seed=seed)
    arrays["jumps"] = np.arange(0, steps, period)
    return arrays


def fig2_nonstationary(cfg) -> Path:
    """Fig. 2: 1-D noisy quadratic whose optimum jumps every ``period`` steps (each run its own jumps)."""
    s = _settings(cfg)
    arrays = nonstationary(s["methods"], runs=int(s["runs"]), steps=int(s["steps"]), period=int(s["period"]),
                           jump=float(s["jump"]), h=float(s["h"]), sigma=float(s["sigma"]), seed=int(s["seed"]))
    return _save(cfg, "fig2_nonstationary", arrays, s)


def fig2_ablation(cfg) -> Path:
    """Fig. 2 over seeds and the settings the paper leaves open (jump size, optionally the period).

    For every (period, jump, seed): every method of ``methods`` plus fixed rates ``fixed_rate_sweep``, on the
    same noise; one CSV row per method with its time-averaged excess loss (of the median over runs, as
    plotted, and the mean over runs), the median loss just before each jump (the precision reached) and,
    for vSGD, the steps its rate needs after a jump to come within ``recovery_factor`` of the oracle's
    (eq. 5 at vSGD's own theta) and its median memory size tau just before the jumps. Writes <store>/synthetic/fig2_ablation.csv
    and prints the table (mean +- sd over seeds).
    """
    import pandas as pd

    s = _settings(cfg)
    methods = dict(s["methods"])
    for eta in s.get("fixed_rate_sweep", []):
        methods.setdefault(f"sgd_{float(eta):g}", {"kind": "sgd", "eta0": float(eta), "gamma": 0.0})
    vsgd = [m for m, v in methods.items() if v["kind"] == "vsgd"]
    factor = float(s.get("recovery_factor", 2.0))
    rows = []
    for period in s["periods"]:
        for jump in s["jumps"]:
            for seed in s["seeds"]:
                a = nonstationary(methods, runs=int(s["runs"]), steps=int(s["segments"]) * int(period),
                                  period=int(period), jump=float(jump), h=float(s["h"]), sigma=float(s["sigma"]),
                                  seed=int(seed))
                for m in methods:
                    loss = a[f"{m}/loss"]
                    med = np.median(loss, axis=1)
                    ends = list(a["jumps"][1:]) + [loss.shape[0] - 1]  # loss[e - 1]: still the old theta*
                    row = {"period": int(period), "jump": float(jump), "seed": int(seed), "method": m,
                           "time_avg_median_loss": float(med.mean()),
                           "time_avg_mean_loss": float(loss.mean()),
                           "pre_jump_median_loss": float(np.mean([med[e - 1] for e in ends]))}
                    if m in vsgd:
                        rec = rate_recovery_steps(a[f"{m}/rate"], a[f"{m}/oracle_rate_at_theta"], a["jumps"], factor)
                        row["recovery_steps_median"] = float(np.nanmedian(rec))
                        row["recovery_never_frac"] = float(np.isnan(rec).mean())
                        tau = np.median(a[f"{m}/tau"][..., 0], axis=1)
                        row["tau_at_jump_median"] = float(np.median([tau[j - 1] for j in a["jumps"][1:]]))
                    rows.append(row)
                print(f"[fig2_ablation] period {period} jump {jump} seed {seed} done", flush=True)
    df = pd.DataFrame(rows)
    path = _out_path(cfg, "fig2_ablation").with_suffix(".csv")
    df.to_csv(path, index=False)
    print(ablation_table(df))
    print(f"[fig2_ablation] wrote {path}")
    return path


def ablation_table(df) -> str:
    """Markdown: per (period, jump) and method, the mean +- sd over seeds of the time-averaged losses."""
    g = df.groupby(["period", "jump", "method"], sort=False)
    cols = ["time_avg_median_loss", "time_avg_mean_loss", "pre_jump_median_loss"]
    agg = g[cols].agg(["mean", "std"])
    lines = [("| period | jump / sigma | method | time-avg of median loss | time-avg of mean loss | median loss just "
              "before a jump |"), "|---|---|---|---|---|---|"]
    for (period, jump, m), r in agg.iterrows():
        cells = " | ".join(f"{r[(c, 'mean')]:.3g} +- {r[(c, 'std')]:.2g}" for c in cols)
        lines.append(f"| {period} | {jump:g} | {m} | {cells} |")
    if "recovery_steps_median" in df:
        v = df.dropna(subset=["recovery_steps_median"]).groupby(["period", "jump", "method"], sort=False)
        lines += ["", ("| period | jump / sigma | method | steps until the rate is within the factor of the oracle's "
                       "(median over runs and jumps; mean over seeds) | never within the period | median tau at the jump |"),
                  "|---|---|---|---|---|---|"]
        for (period, jump, m), r in v[["recovery_steps_median", "recovery_never_frac", "tau_at_jump_median"]].mean().iterrows():
            lines.append(f"| {period} | {jump:g} | {m} | {r['recovery_steps_median']:.1f} | "
                         f"{r['recovery_never_frac']:.3f} | {r['tau_at_jump_median']:.0f} |")
    return "\n".join(lines)


def supp_fig2_bowl(cfg) -> Path:
    """Supp. Fig. 2: 2-D noisy bowl, curvatures ``h`` (10x apart), trajectories of ``steps`` steps."""
    s = _settings(cfg)
    K, steps = int(s["runs"]), int(s["steps"])
    h = torch.tensor([float(v) for v in s["h"]], dtype=DTYPE)
    sigma = torch.tensor([float(v) for v in s["sigma"]], dtype=DTYPE)
    star = torch.zeros(K, 2, dtype=DTYPE)
    theta0 = torch.tensor([float(v) for v in s["theta0"]], dtype=DTYPE).expand(K, 2).clone()
    arrays = run_methods(s["methods"], K=K, theta0=theta0, theta_star=lambda t: star, h=h, sigma=sigma,
                         steps=steps, seed=int(s["seed"]), keep_theta=int(s.get("keep_runs", 3)))
    arrays["h"], arrays["sigma"] = h.numpy(), sigma.numpy()
    return _save(cfg, "supp_fig2_bowl", arrays, s)


# -- summaries (the acceptance numbers) ----------------------------------------------------------------
def rate_recovery_steps(rate: np.ndarray, oracle_rate: np.ndarray, jumps: np.ndarray, factor: float = 2.0) -> np.ndarray:
    """Per jump (after the first) and run: the number of updates after the jump before the rate is within
    ``factor`` of the oracle's (oracle / factor <= rate <= factor * oracle), both the rates of update t
    (arrays [steps, K, 1]); 0 = already on the first update after the jump; NaN = not before the next jump.

    ``oracle_rate`` is the oracle's eq. 5 rate at the method's own theta (``<m>/oracle_rate_at_theta``).
    Returns [n_jumps - 1, K].
    """
    ends = list(jumps[1:]) + [rate.shape[0]]
    out = []
    for j, end in zip(jumps[1:], ends[1:]):
        r, o = rate[j:end, :, 0], oracle_rate[j:end, :, 0]
        ok = (r >= o / factor) & (r <= o * factor)
        first = ok.argmax(axis=0).astype(float)
        first[~ok.any(axis=0)] = np.nan
        out.append(first)
    return np.array(out)


def summary(arrays: Mapping[str, np.ndarray], vsgd: str = "vsgd", oracle: str = "oracle",
            jumps: np.ndarray | None = None, skip: int = 0) -> dict[str, Any]:
    """The acceptance numbers, all from medians over runs (after the first ``skip`` steps for the ratios):

    * ``median_rate_ratio_same_theta``: median over time of the median over runs of vSGD's rate divided
      by the oracle's eq. 5 rate at vSGD's own theta;
    * ``median_rate_ratio_of_medians``: median over time of (median vSGD rate / median rate of the oracle run);
    * per method the final and the time-averaged median excess loss;
    * with ``jumps``: after each jump, the steps until the median rate exceeds 10x its value just before
      the jump, and the steps until the median excess loss is back below 1% of its value at the jump;
      for vSGD, per jump, the median over runs of the updates until its rate is within 2x of the oracle's
      eq. 5 rate at its own theta (``rate_recovery_steps``).
    """
    methods = [str(m) for m in arrays["methods"]]
    same = arrays[f"{vsgd}/rate"][skip:, :, 0] / arrays[f"{vsgd}/oracle_rate_at_theta"][skip:, :, 0]
    med_v = np.median(arrays[f"{vsgd}/rate"][skip:, :, 0], axis=1)
    med_o = np.median(arrays[f"{oracle}/rate"][skip:, :, 0], axis=1)
    out: dict[str, Any] = {"median_rate_ratio_same_theta": float(np.median(np.median(same, axis=1))),
                           "median_rate_ratio_of_medians": float(np.median(med_v / med_o))}
    for m in methods:
        med = np.median(arrays[f"{m}/loss"], axis=1)
        out[f"{m}/final_median_loss"] = float(med[-1])
        out[f"{m}/time_avg_median_loss"] = float(med.mean())
    if jumps is not None:
        for m in methods:
            rate = np.median(arrays[f"{m}/rate"][..., 0], axis=1)
            loss = np.median(arrays[f"{m}/loss"], axis=1)
            climb, recover = [], []
            for j in jumps[1:]:
                up = np.nonzero(rate[j:] >= 10 * rate[j - 1])[0]
                down = np.nonzero(loss[j:] <= 0.01 * loss[j])[0]  # loss[j]: theta before its first step
                climb.append(int(up[0]) + 1 if up.size else None)
                recover.append(int(down[0]) if down.size else None)
            out[f"{m}/steps_rate_x10_after_jump"] = climb
            out[f"{m}/steps_loss_recovered_after_jump"] = recover
        if f"{vsgd}/oracle_rate_at_theta" in arrays:
            rec = rate_recovery_steps(arrays[f"{vsgd}/rate"], arrays[f"{vsgd}/oracle_rate_at_theta"], jumps)
            out[f"{vsgd}/steps_rate_within_2x_of_oracle_after_jump"] = [float(np.nanmedian(x)) for x in rec]
    return out


def main() -> None:
    """Print the acceptance numbers of the stored runs: python -m synthetic.quadratic [STORE]."""
    import sys

    from experiments.results import DEFAULT_STORE

    store = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_STORE
    for name in ("supp_fig1_quadratic", "fig2_nonstationary", "supp_fig2_bowl"):
        path = store / "synthetic" / f"{name}.npz"
        if not path.exists():
            print(f"{name}: not in {path.parent} (run: python -m experiments.run experiment={name})")
            continue
        arrays = dict(np.load(path))
        print(name)
        for k, v in summary(arrays, jumps=arrays.get("jumps"), skip=10).items():
            print(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}")


if __name__ == "__main__":
    main()
