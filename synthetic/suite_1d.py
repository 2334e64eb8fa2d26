"""The 1-D stochastic test suite of paper 2, Sec. 6 (Figs. 5-6), vectorised over runs and settings.

Sample losses, u = theta - xi, xi ~ N(0, sigma^2) (paper 2 Sec. 6):

    quad     A u^2                       expected: A (theta^2 + sigma^2)
    abs      A |u|                       expected: A (sigma sqrt(2/pi) exp(-theta^2 / 2 sigma^2) + theta erf(theta / sigma sqrt 2))
    rectlin  A u if u > 0 else 0         expected: A (theta Phi(theta / sigma) + sigma phi(theta / sigma))
    gauss    A - A exp(-u^2 / 2)         expected: A - A exp(-theta^2 / 2 (1 + sigma^2)) / sqrt(1 + sigma^2)

with A and sigma^2 in {0.1, 1, 10}: 36 cases. Every run starts at theta0 = 1 (the paper does not say;
1 is the default start of the first author's 1-D code) and makes ``updates`` updates, each on a
fresh minibatch of n samples; the loss recorded is the exact expected loss at 1, 2, 4, ..., 1024
updates. The gain is log10(initial / current) of a loss chosen by ``measure`` (paper 2 says "gain in
loss" and nothing more):

* ``"excess"`` (default): the expected loss minus its minimum over theta (:func:`optimal_loss`), as the
  first author's 1-D code plots it (|E f(theta) - E f(theta*)|). The gain then measures progress towards
  the optimum, on the same scale for every noise level.
* ``"expected"``: the expected loss itself. It includes the irreducible noise term (A sigma^2 for f_quad),
  so on the sigma^2 = 10 cases the whole attainable gain is ~0.04 (f_quad) or ~0.008 (f_gauss).

The sign of every gain, and so the fraction of runs worse than they started, is the same under both:
each expected loss is an increasing function of |theta| (of theta for f_rectlin, whose minimum, 0, is at
-infinity), so current > initial under one measure exactly when it is under the other. One (rule, n) is one batched computation over K = settings x cases x runs members, through
the very rules the benchmarks use (``baselines.sgd``, ``baselines.adagrad``, ``baselines.amari``, ``vsgd.fd``).

The row ``vsgd_exact`` is the ``vsgd_l`` rule (paper 1's element-wise vSGD, n0 = 10, its other defaults) fed the
exact per-sample curvature |f''| (minibatch mean) as its ``curvature`` extra; for n = 10 it treats the minibatch
mean gradient as one sample (paper 1 has no minibatch rule). Stand-ins, used only when the registry lacks the real
rule: ``adagrad`` and ``amari`` minimal closed forms (paper 1 Sec. 2), and for ``vsgd_exact`` a minimal
element-wise vSGD (paper 1 Alg. 1 with the minibatch rate of paper 2 eq. 3) on the exact per-sample
curvature |f''| (0 for abs and rectlin), to be replaced by the ``vsgd_l`` rule.

Outputs (``run(cfg)``): ``<store>/synthetic/suite_1d.npz`` (``gain[row, case, run, checkpoint]`` =
log10(initial / current expected loss), with the row and case labels) and ``suite_1d.csv`` (median and
10 / 90 % quantiles of the gain per row, case and checkpoint, and the fraction of runs whose final loss
is worse than the initial one).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from vsgd.core import HyperParam, Rule, per_member

FUNCTIONS = ("quad", "abs", "rectlin", "gauss")
DIVERGED_GAIN = -99.0  # summary value of a run whose loss became infinite or nan (its gain is -inf in the npz)
LEVELS = (0.1, 1.0, 10.0)


@dataclass(frozen=True)
class Case:
    function: str
    A: float  # curvature setting
    s2: float  # noise variance sigma^2

    @property
    def label(self) -> str:
        return f"{self.function} A={self.A:g} s2={self.s2:g}"


def cases() -> list[Case]:
    """Columns of Fig. 6: grouped by function, the 9 inner columns vary A (outer) and sigma^2 (inner)."""
    return [Case(f, A, s2) for f in FUNCTIONS for A in LEVELS for s2 in LEVELS]


# -- the functions ----------------------------------------------------------------------------------
def sample_grad(function: str, A: Tensor, u: Tensor) -> Tensor:
    """d/dtheta of the sample loss at u = theta - xi (A broadcast against u)."""
    if function == "quad":
        return 2 * A * u
    if function == "abs":
        return A * torch.sign(u)
    if function == "rectlin":
        return A * (u > 0).to(u.dtype)
    if function == "gauss":
        return A * u * torch.exp(-0.5 * u * u)
    raise ValueError(f"unknown function {function!r}; expected one of {FUNCTIONS}")


def sample_curvature(function: str, A: Tensor, u: Tensor) -> Tensor:
    """d2/dtheta2 of the sample loss (the exact per-sample curvature; 0 almost everywhere for abs, rectlin)."""
    if function == "quad":
        return 2 * A * torch.ones_like(u)
    if function in ("abs", "rectlin"):
        return torch.zeros_like(u)
    if function == "gauss":
        return A * (1 - u * u) * torch.exp(-0.5 * u * u)
    raise ValueError(f"unknown function {function!r}")


MEASURES = ("excess", "expected")


def optimal_loss(function: str, A: Tensor, s2: Tensor) -> Tensor:
    """min over theta of :func:`expected_loss` (at theta = 0; f_rectlin: its infimum 0, at -infinity)."""
    if function == "quad":
        return A * s2
    if function == "abs":
        return A * s2.sqrt() * math.sqrt(2 / math.pi)
    if function == "rectlin":
        return torch.zeros_like(A * s2)
    if function == "gauss":
        return A - A / torch.sqrt(1 + s2)
    raise ValueError(f"unknown function {function!r}")


def measured_loss(function: str, A: Tensor, s2: Tensor, loss: Tensor, measure: str) -> Tensor:
    """The loss the gains are taken of: ``loss`` (expected losses) as such, or minus its optimum (``excess``).

    Excess losses are floored at 1e-12 x the optimal loss (below that they are float64 rounding of the difference)."""
    if measure == "expected":
        return loss
    if measure != "excess":
        raise ValueError(f"unknown measure {measure!r}; expected one of {MEASURES}")
    opt = optimal_loss(function, A, s2)
    return torch.maximum(loss - opt, 1e-12 * opt)


def expected_loss(function: str, A: Tensor, s2: Tensor, theta: Tensor) -> Tensor:
    """E_xi[f(theta - xi)], xi ~ N(0, s2), in closed form."""
    s = s2.sqrt()
    if function == "quad":
        return A * (theta * theta + s2)
    if function == "abs":
        return A * (s * math.sqrt(2 / math.pi) * torch.exp(-theta * theta / (2 * s2)) + theta * torch.erf(theta / (s * math.sqrt(2))))
    if function == "rectlin":
        z = theta / s
        return A * (theta * 0.5 * torch.erfc(-z / math.sqrt(2)) + s * torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi))
    if function == "gauss":
        return A - A * torch.exp(-theta * theta / (2 * (1 + s2))) / torch.sqrt(1 + s2)
    raise ValueError(f"unknown function {function!r}")


# -- stand-in rules (used only when the registry lacks the real one) --------------------------------
def _standin_adagrad() -> Rule:
    # paper 1 Sec. 2 (Duchi et al.): eta_i = eta0 / sqrt(sum_t grad_i^2)
    def init(params, hp):
        return {"sum_sq": [torch.zeros_like(p) for p in params]}

    def update(grads, state, params, hp, extras):
        s = [a + g * g for a, g in zip(state["sum_sq"], grads)]
        return [-per_member(hp["eta0"], g) * g / (a.sqrt() + 1e-10) for g, a in zip(grads, s)], {"sum_sq": s}

    return Rule("adagrad", init, update, {"eta0": HyperParam(0.1, low=0.0, low_inclusive=False)})


def _standin_amari() -> Rule:
    # paper 1 Sec. 2: diagonal natural gradient eta_i = eta0 / v_i, v_i a running average of grad_i^2 (time constant tau)
    def init(params, hp):
        return {"v_bar": [torch.zeros_like(p) for p in params], "step": params[0].new_zeros(params[0].shape[0])}

    def update(grads, state, params, hp, extras):
        f = torch.maximum(1.0 / (state["step"] + 1), 1.0 / hp["tau"])  # arithmetic mean until tau samples
        v = [(1 - per_member(f, g)) * vb + per_member(f, g) * g * g for vb, g in zip(state["v_bar"], grads)]
        ups = [-per_member(hp["eta0"], g) * g / (vv + 1e-16) for g, vv in zip(grads, v)]
        return ups, {"v_bar": v, "step": state["step"] + 1}

    return Rule("amari", init, update, {"eta0": HyperParam(1e-5, low=0.0, low_inclusive=False), "tau": HyperParam(1e4, low=1.0)})


def _standin_vsgd_exact() -> Rule:
    """STAND-IN for the vsgd_l rule: paper 1 Alg. 1 (element-wise vSGD) on a given curvature, eq. 3 of paper 2
    for n > 1. Bootstrap on n0 = 10 samples, v_bar x 2 slow start, tau = 2 after it. h from extras["curvature"]
    (|per-sample exact curvature|, minibatch mean), with 1e-5 against h = 0 (the f_abs instability of paper 2)."""

    def init(params, hp):
        z = lambda: [torch.zeros_like(p) for p in params]
        return {"g_bar": z(), "v_bar": z(), "h_bar": z(), "tau": [torch.ones_like(p) for p in params],
                "seen": params[0].new_zeros(params[0].shape[0])}

    def update(grads, state, params, hp, extras):
        n = float(extras.get("batch_size", 1))
        sq, curv = extras["sq_grad_mean"], extras["curvature"]
        seen = state["seen"]
        boot = seen < 10
        out = {"g_bar": [], "v_bar": [], "h_bar": [], "tau": []}
        ups = []
        for g, s, h, gb, vb, hb, tau in zip(grads, sq, curv, state["g_bar"], state["v_bar"], state["h_bar"], state["tau"]):
            b = per_member(boot, g)
            w = per_member(n / (seen + n), g)
            bs = [x + w * (y - x) for x, y in ((gb, g), (vb, s), (hb, h))]
            done = per_member((seen + n >= 10) & boot, g)
            bs[1] = torch.where(done, 2 * bs[1], bs[1])
            btau = torch.where(done, torch.full_like(tau, 2.0), tau)
            f = 1 / tau
            ms = [(1 - f) * x + f * y for x, y in ((gb, g), (vb, s), (hb, h))]  # paper 1 Alg. 1
            mtau = (1 - ms[0] ** 2 / ms[1].clamp_min(1e-300)) * tau + 1
            gb2, vb2, hb2 = [torch.where(b, x, y) for x, y in zip(bs, ms)]
            eta = n * gb2 ** 2 / ((hb2 + 1e-5) * (vb2 + (n - 1) * gb2 ** 2)).clamp_min(1e-300)  # eq. 3 (paper 2)
            ups.append(torch.where(b, torch.zeros_like(g), -eta * g))
            for k, v in zip(out, (gb2, vb2, hb2, torch.where(b, btau, mtau))):
                out[k].append(v)
        out["seen"] = seen + n
        return ups, out

    return Rule("vsgd_exact", init, update, {"n0": HyperParam(10.0, low=1.0)},
                extras=("curvature", "sq_grad_mean", "batch_size"))


def resolve_rule(name: str) -> tuple[Rule, bool]:
    """The registered rule when there is one, else the stand-in. Returns (rule, is_standin)."""
    import baselines  # noqa: F401  (registers the paper's baselines)
    from vsgd.core import REGISTRY

    real = {"vsgd_exact": "vsgd_l"}.get(name, name)  # vSGD (paper 1) on the exact curvature: the vsgd_l rule
    if real in REGISTRY:
        return REGISTRY[real], False
    return {"adagrad": _standin_adagrad, "amari": _standin_amari, "vsgd_exact": _standin_vsgd_exact}[name](), True


# -- the rows of Fig. 6 ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    algorithm: str  # sgd, adagrad, amari, vsgd_exact, vsgd_fd
    hp: tuple[tuple[str, float], ...]

    @property
    def label(self) -> str:
        inner = ", ".join(f"{k}={v:g}" for k, v in self.hp if k not in ("tau", "n0"))
        return f"{self.algorithm}({inner})" if inner else self.algorithm


def settings(eta0s=(0.01, 0.1, 1.0, 10.0), gammas=(0.0, 1.0), amari_tau: float = 100.0) -> list[Setting]:
    out = [Setting("sgd", (("eta0", e), ("gamma", g))) for g in gammas for e in eta0s]
    out += [Setting("adagrad", (("eta0", e),)) for e in eta0s]
    out += [Setting("amari", (("eta0", e), ("tau", amari_tau))) for e in eta0s]
    out += [Setting("vsgd_exact", (("n0", 10.0),)), Setting("vsgd_fd", ())]  # both bootstrap on 10 samples
    return out


def checkpoints(updates: int) -> list[int]:
    return [2**j for j in range(int(math.log2(updates)) + 1) if 2**j <= updates]


def simulate(rule: Rule, setting_hps: list[dict[str, float]], case_list: list[Case], *, runs: int, updates: int,
             n: int, theta0: float = 1.0, seed: int = 0, dtype=torch.float64, measure: str = "expected") -> np.ndarray:
    """Losses ``[settings, cases, runs, 1 + #checkpoints]`` (column 0: the initial loss): expected losses, or
    with ``measure="excess"`` expected minus optimal losses (see :func:`measured_loss`)."""
    if measure not in MEASURES:
        raise ValueError(f"measure={measure!r}: use one of {MEASURES}")
    S, C = len(setting_hps), len(case_list)
    K = S * C * runs
    gen = torch.Generator().manual_seed(seed)
    # members ordered function-major, so that each function's members are one contiguous slice
    fn_natural = torch.tensor([FUNCTIONS.index(c.function) for c in case_list]).repeat_interleave(runs).repeat(S)
    order = torch.sort(fn_natural, stable=True).indices  # member k of the sorted layout is natural member order[k]
    A = torch.tensor([c.A for c in case_list], dtype=dtype).repeat_interleave(runs).repeat(S)[order]
    s2 = torch.tensor([c.s2 for c in case_list], dtype=dtype).repeat_interleave(runs).repeat(S)[order]
    counts = torch.bincount(fn_natural, minlength=len(FUNCTIONS)).tolist()
    bounds = [0, *torch.tensor(counts).cumsum(0).tolist()]
    slices = {f: slice(bounds[i], bounds[i + 1]) for i, f in enumerate(FUNCTIONS) if counts[i]}
    natural_hps = [h for h in setting_hps for _ in range(C * runs)]
    hp = rule.hp_tensors([natural_hps[k] for k in order.tolist()], dtype=dtype, device="cpu")
    params = [torch.full((K,), theta0, dtype=dtype)]
    state = rule.init(params, hp)
    need = set(rule.extras)

    def per_fn(fun: Callable[[str, Tensor, Tensor], Tensor], u: Tensor) -> Tensor:
        return torch.cat([fun(f, A[sl].unsqueeze(1), u[sl]) for f, sl in slices.items()])

    def loss(theta: Tensor) -> Tensor:
        out = torch.cat([measured_loss(f, A[sl], s2[sl], expected_loss(f, A[sl], s2[sl], theta[sl]), measure)
                         for f, sl in slices.items()])
        return torch.nan_to_num(out, nan=math.inf)

    cps = checkpoints(updates)
    record = [loss(params[0])]
    for t in range(1, updates + 1):
        xi = torch.randn(K, n, generator=gen, dtype=dtype) * s2.sqrt().unsqueeze(1)
        u = params[0].unsqueeze(1) - xi
        g_samples = per_fn(sample_grad, u)  # [K, n]
        grads = [g_samples.mean(dim=1)]  # eq. 2
        extras: dict[str, Any] = {"batch_size": n}
        if "sq_grad_mean" in need:
            extras["sq_grad_mean"] = [(g_samples * g_samples).mean(dim=1)]
        if "nonzero_count" in need:
            extras["nonzero_count"] = [(g_samples != 0).sum(dim=1).to(dtype)]
        if "curvature" in need:
            extras["curvature"] = [per_fn(sample_curvature, u).abs().mean(dim=1)]
        if "grad_at" in need:
            extras["grad_at"] = lambda shifts, xi=xi, theta=params[0]: [per_fn(sample_grad, (theta + shifts[0]).unsqueeze(1) - xi).mean(dim=1)]

            def fd_per_sample(shifts, xi=xi, g_samples=g_samples, theta=params[0]):
                d = g_samples - per_fn(sample_grad, (theta + shifts[0]).unsqueeze(1) - xi)
                return [d.abs().mean(dim=1)], [(d * d).mean(dim=1)]

            extras["fd_per_sample"] = fd_per_sample
        updates_, state = rule.update(grads, state, params, hp, extras)
        params = [params[0] + updates_[0]]
        if t in cps:
            record.append(loss(params[0]))
    sorted_losses = torch.stack(record, dim=1)
    natural = torch.empty_like(sorted_losses)
    natural[order] = sorted_losses
    return natural.reshape(S, C, runs, len(cps) + 1).numpy()


def gains(losses: np.ndarray) -> np.ndarray:
    """log10(initial / current) per checkpoint (column 0 of ``losses`` is the initial loss); +inf loss -> -inf."""
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.log10(losses[..., :1] / np.maximum(losses[..., 1:], 1e-300))
    return np.where(np.isnan(g), -np.inf, g)


def run_suite(*, runs: int = 100, updates: int = 1024, batch_sizes=(1, 10), eta0s=(0.01, 0.1, 1.0, 10.0),
              gammas=(0.0, 1.0), amari_tau: float = 100.0, theta0: float = 1.0, seed: int = 0,
              algorithms: tuple[str, ...] | None = None, measure: str = "excess",
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every (setting, n) row on every case. Returns arrays and labels (see :func:`save`); gains of the
    ``measure`` loss (``"excess"`` or ``"expected"``, module docstring)."""
    case_list = cases()
    all_settings = [s for s in settings(eta0s, gammas, amari_tau) if algorithms is None or s.algorithm in algorithms]
    rows, row_gain, standins = [], [], set()
    for algorithm in dict.fromkeys(s.algorithm for s in all_settings):
        group = [s for s in all_settings if s.algorithm == algorithm]
        rule, standin = resolve_rule(algorithm)
        if standin:
            standins.add(algorithm)
        for n in batch_sizes:
            t0 = time.perf_counter()
            L = simulate(rule, [dict(s.hp) for s in group], case_list, runs=runs, updates=updates, n=n,
                         theta0=theta0, seed=seed + 1000 * n, measure=measure)
            G = gains(L)
            for s, g in zip(group, G):
                rows.append((s, n))
                row_gain.append(g)
            log(f"[suite_1d] {algorithm:10s} n={n:2d}: {len(group)} settings x {len(case_list)} cases x {runs} runs "
                f"in {time.perf_counter() - t0:.1f}s{' (stand-in rule)' if standin else ''}")
    return {"gain": np.stack(row_gain).astype(np.float32), "rows": rows, "cases": case_list,
            "checkpoints": checkpoints(updates), "standins": sorted(standins), "measure": measure}


def summary(result: dict[str, Any]) -> pd.DataFrame:
    """One line per (row, case, checkpoint): median and 10 / 90 % quantiles of the gain over runs, and the
    fraction of runs whose final loss is worse than the initial one."""
    G = np.maximum(result["gain"], DIVERGED_GAIN)  # a run whose loss became inf / nan counts as gain DIVERGED_GAIN
    q = np.quantile(G, [0.1, 0.5, 0.9], axis=2)  # [3, rows, cases, checkpoints]
    worse = (G[..., -1] < 0).mean(axis=2)  # [rows, cases]
    recs = []
    for r, (s, n) in enumerate(result["rows"]):
        for c, case in enumerate(result["cases"]):
            for k, step in enumerate(result["checkpoints"]):
                recs.append({"algorithm": s.algorithm, "setting": s.label, "n": n, "function": case.function, "A": case.A,
                             "sigma2": case.s2, "step": step, "gain_median": q[1, r, c, k], "gain_q10": q[0, r, c, k],
                             "gain_q90": q[2, r, c, k], "frac_worse_final": worse[r, c],
                             "standin": s.algorithm in result["standins"], "measure": result.get("measure", "expected")})
    return pd.DataFrame(recs)


def save(result: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    npz = folder / "suite_1d.npz"
    np.savez_compressed(npz, gain=result["gain"], row_algorithm=[s.algorithm for s, _ in result["rows"]],
                        row_setting=[s.label for s, _ in result["rows"]], row_n=[n for _, n in result["rows"]],
                        case_function=[c.function for c in result["cases"]], case_A=[c.A for c in result["cases"]],
                        case_sigma2=[c.s2 for c in result["cases"]], checkpoints=result["checkpoints"],
                        standins=np.array(result["standins"], dtype=str), measure=result.get("measure", "expected"))
    csv = folder / "suite_1d.csv"
    summary(result).to_csv(csv, index=False)
    return npz, csv


def load(path: Path) -> dict[str, Any]:
    """Read ``suite_1d.npz`` back into the dict :func:`run_suite` returns (settings as labels only)."""
    z = np.load(path, allow_pickle=False)
    rows = [(_LabelSetting(str(a), str(s)), int(n)) for a, s, n in zip(z["row_algorithm"], z["row_setting"], z["row_n"])]
    case_list = [Case(str(f), float(a), float(s)) for f, a, s in zip(z["case_function"], z["case_A"], z["case_sigma2"])]
    return {"gain": z["gain"], "rows": rows, "cases": case_list, "checkpoints": [int(c) for c in z["checkpoints"]],
            "standins": [str(s) for s in z["standins"]],
            "measure": str(z["measure"]) if "measure" in z.files else "expected"}  # files before fd2: expected losses


@dataclass(frozen=True)
class _LabelSetting:
    algorithm: str
    label: str


def run(cfg) -> dict[str, Any]:
    """Hydra entry (``entry: synthetic.suite_1d:run``): run the suite, write npz + csv under <store>/synthetic.

    Returns ``{"npz": path, "csv": path, "summary": DataFrame}`` (not a DataFrame: experiments.run prints
    benchmark tables for those)."""
    from experiments import results

    c = cfg.suite_1d
    # the tensors are tiny ([K] and [K, n]): extra threads only add synchronisation (13x slower on a busy 2-core machine)
    torch.set_num_threads(1)
    store = Path(cfg.store) if cfg.get("store") else results.DEFAULT_STORE
    res = run_suite(runs=int(c.runs), updates=int(c.updates), batch_sizes=tuple(int(n) for n in c.batch_sizes),
                    eta0s=tuple(float(e) for e in c.eta0), gammas=tuple(float(g) for g in c.sgd_gamma),
                    amari_tau=float(c.amari_tau), theta0=float(c.theta0), seed=int(c.seed),
                    algorithms=tuple(c.algorithms) if c.get("algorithms") else None, measure=str(c.get("measure", "excess")))
    npz, csv = save(res, store / "synthetic")
    print(f"[suite_1d] wrote {npz} and {csv}")
    df = summary(res)
    if any(s.algorithm == "vsgd_fd" for s, _ in res["rows"]):
        print(f"[suite_1d] vsgd_fd per case ({res['measure']} loss; python -m analysis.heatmaps --table prints it again):")
        print(acceptance_table(res).to_string(float_format=lambda x: f"{x:.4g}"))
    return {"npz": npz, "csv": csv, "summary": df}


def acceptance_table(result: dict[str, Any], algorithm: str = "vsgd_fd") -> pd.DataFrame:
    """Per case (rows) and n: median final gain over runs (``median``), fraction of runs ending worse than they
    started (``worse_end``), fraction of all (run, checkpoint) cells worse than the start, i.e. red in the heatmap
    (``red_cells``), and the lowest gain of any cell (``worst``; -99: a diverged run)."""
    G = np.maximum(result["gain"], DIVERGED_GAIN)
    recs = []
    for r, (s, n) in enumerate(result["rows"]):
        if s.algorithm != algorithm:
            continue
        for c, case in enumerate(result["cases"]):
            g = G[r, c]
            recs.append({"function": case.function, "A": case.A, "sigma2": case.s2, "n": n,
                         "median": float(np.median(g[:, -1])), "worse_end": float((g[:, -1] < 0).mean()),
                         "red_cells": float((g < 0).mean()), "worst": float(g.min())})
    df = pd.DataFrame(recs)
    return df.pivot_table(index=["function", "A", "sigma2"], columns="n", sort=False,
                          values=["median", "worse_end", "red_cells", "worst"]).swaplevel(axis=1).sort_index(axis=1, level=0, sort_remaining=False)


def final_table(df: pd.DataFrame, algorithm: str = "vsgd_fd") -> pd.DataFrame:
    """Median final gain per case (rows) and n (columns) for one algorithm."""
    last = df[(df.algorithm == algorithm) & (df.step == df.step.max())]
    return last.pivot_table(index=["function", "A", "sigma2"], columns="n", values="gain_median", sort=False)


if __name__ == "__main__":  # python -m synthetic.suite_1d [overrides]: the same as experiment=suite_1d
    import sys

    from hydra import compose, initialize_config_dir

    from experiments.data import PROJECT_ROOT

    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        run(compose("config", overrides=["experiment=suite_1d", *sys.argv[1:]]))
