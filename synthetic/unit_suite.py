"""Unit tests for stochastic optimization (Schaul, Antonoglou & Silver, ICLR 2014 workshop), vectorised.

Every optimizer of the harness is run on small, isolated difficulties: the project's pure rules through
``vsgd.core`` (whatever is registered at run time, by name) and the PyPI tuning-free optimizers of
:mod:`experiments.torch_members`, each at its defaults. One optimizer is one batched computation over
K = cases x runs members (the runs are the ensemble axis).

Only a summary of that paper was available to us (``../shared/reference/IMPLEMENTATION_NOTES.md``:
prototype names, noise types, compositions). The precise definitions below are ours; each is a choice,
named as such and listed in ``docs/beyond.md``.

**Sample loss.** Member k at update t sees the sample loss (x in R^D, D = 1 for the 1-D cases)

    L_t(x; xi) = A s_t [ w F(x - o_t) + sigma_t xi . x ]

with F the case's (composed) prototype, A its scale, and the noise of its type:

    none        w = 1,                       sigma = 0
    gauss_add   w = 1,                       xi ~ N(0, I), sigma = 1        (additive gradient noise)
    gauss_mul   w = 1 + zeta, zeta ~ N(0, 1), sigma = 0                      (multiplicative: the sign can flip)
    cauchy      w = 1,                       xi ~ Cauchy(0, 1) per dim, sigma = 1   (heavy tails, outliers)
    mask        w = m / (1 - p), m ~ Bernoulli(1 - p), p = 0.9, sigma = 0 (mask-out: sparse, unbiased)

so the gradient is A s_t (w F'(x - o_t) + sigma_t xi), the curvature A s_t w F''(x - o_t) and, with the
noise inside the loss, ``grad_at`` / ``hvp`` are the same sample at other points. Noise is relative to A
(choice): a scale-invariant optimizer behaves the same at every A. Non-stationary cases change s_t
(scale), sigma_t (noise) or o_t (offset) during the run.

**Measure.** The loss we record is the noise-free function f_t(x) = A s_t F(x - o_t) (the location of
every noise above, and the expectation wherever it exists). The gain at update t is
log10(f_t(x_0) / f_t(x_t)) -- the paper-2 heatmap quantity, with f_t(x_0) "not having moved" so that
non-stationary scale and offset cancel -- capped at +-``GAIN_CAP``; for the two prototypes unbounded
below (line, non-convex quadratic) it is sign(d) log10(1 + |d| / (A s_t)) with d = f_t(x_0) - f_t(x_t).
A run whose iterate becomes non-finite has gain -inf from then on.

**Summary.** A case is *improved* when the median run's final gain exceeds ``improve_threshold``
(0.1: the loss is at least 21 % lower) and *unstable* when at least a quarter of its runs end non-finite
or 10x worse than the start (final gain <= -1). The table gives, per optimizer, the fractions of cases.

    python -m experiments.run experiment=unit_suite                # writes <store>/synthetic/unit_suite.*
    python -m synthetic.unit_suite --steps 256 --runs 8           # the same without Hydra
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

GAIN_CAP = 12.0  # |gain| is capped: a loss of exactly 0 would be an infinite gain

# -- the 1-D prototypes ------------------------------------------------------------------------------
# name -> (F, x0, bounded below by 0). F acts element-wise on u = x - o_t. Each is a choice (see docstring).
SIGMA_BUMP = 0.05  # width of the cliff's steep part and of the ridge's bump


def _bend(u):  # convex, piecewise linear: slope 1 on |u| <= 1, slope 10 beyond (a sudden change of slope)
    a = u.abs()
    return torch.where(a <= 1, a, 1 + 10 * (a - 1))


def _cliff(u):  # |u| plus a drop of height 10 over [0.5, 0.55]: one region of slope 200 on the way down
    return u.abs() + 10 * ((u - 0.5) / SIGMA_BUMP).clamp(0, 1)


def _ridge(u):  # |u| plus a bump of height 1 at u = 0.5 that the descent from u0 = 1 must cross
    return u.abs() + torch.exp(-0.5 * ((u - 0.5) / SIGMA_BUMP) ** 2)


def _q(u):
    return 0.5 * u * u


PROTOTYPES: dict[str, tuple[Callable[[Tensor], Tensor], float, bool]] = {
    "line": (lambda u: u, 1.0, False),                       # zero curvature, unbounded below
    "relu": (lambda u: torch.relu(u), 1.0, True),            # slope 1, then a flat region (min 0 for u <= 0)
    "abs": (lambda u: u.abs(), 1.0, True),                   # non-smooth V
    "bend": (_bend, 2.0, True),
    "cliff": (_cliff, 1.0, True),
    "ridge": (_ridge, 1.0, True),
    "exp": (lambda u: torch.exp(u), 0.0, True),              # exponentially vanishing slope towards -inf
    # quadratic / Gaussian / Laplace kernels k(u) = u^2/2, u^2/2, |u| in three forms:
    "quad_convex": (_q, 1.0, True),                          # u^2/2
    "quad_bowl": (lambda u: _q(u) / (1 + _q(u)), 2.0, True),  # k/(1+k): quadratic bottom, flat tails
    "quad_nonconvex": (lambda u: -_q(u), 0.1, False),        # -u^2/2: start near the top of a hill, unbounded
    "gauss_convex": (lambda u: torch.expm1(_q(u)), 1.0, True),  # exp(k)-1: curvature grows with |u|
    "gauss_bowl": (lambda u: -torch.expm1(-_q(u)), 2.0, True),  # 1-exp(-k): bounded bowl, flat tails
    "gauss_nonconvex": (lambda u: torch.exp(-_q(u)), 0.1, True),  # exp(-k): a hill, min 0 at infinity
    "laplace_convex": (lambda u: torch.expm1(u.abs()), 1.0, True),
    "laplace_bowl": (lambda u: -torch.expm1(-u.abs()), 2.0, True),
    "laplace_nonconvex": (lambda u: torch.exp(-u.abs()), 0.1, True),
}
NOISES = ("none", "gauss_add", "gauss_mul", "cauchy", "mask")
MASK_P = 0.9  # mask-out probability
SCALES = (0.1, 1.0, 10.0)

# -- multivariate compositions (D = 2) ---------------------------------------------------------------
COND = (1.0, 10.0)  # per-dimension scales of the separable (L1) combination: condition number 10
ROT = math.pi / 6  # rotation angle of the rotated combination (30 degrees)
COMPOSITIONS = ("l1", "l2", "linf", "rot")
NONSTATIONARY = ("scale", "noise", "offset")
ND_PROTOTYPES = ("quad_convex", "abs", "gauss_bowl")
ND_NONSTATIONARY_PROTOTYPES = ("quad_convex", "abs")
D_ND = 2


@dataclass(frozen=True)
class Case:
    prototype: str
    noise: str
    scale: float
    composition: str = ""  # "", "l1", "l2", "linf", "rot"
    nonstationary: str = ""  # "", "scale", "noise", "offset"

    @property
    def dim(self) -> int:
        return 1 if not self.composition else D_ND

    @property
    def key(self) -> tuple[str, str]:
        return (self.prototype, self.composition)

    @property
    def label(self) -> str:
        parts = [self.prototype]
        if self.composition:
            parts.append(self.composition)
        if self.nonstationary:
            parts.append(f"ns-{self.nonstationary}")
        return " ".join(parts) + f" {self.noise} A={self.scale:g}"


def cases_1d(scales: Sequence[float] = SCALES, noises: Sequence[str] = NOISES) -> list[Case]:
    return [Case(p, n, a) for p in PROTOTYPES for n in noises for a in scales]


def cases_nd() -> list[Case]:
    out = [Case(p, n, 1.0, c) for p in ND_PROTOTYPES for c in COMPOSITIONS for n in ("none", "gauss_add")]
    out += [Case(p, "gauss_add", 1.0, "l2", ns) for p in ND_NONSTATIONARY_PROTOTYPES for ns in NONSTATIONARY]
    return out


def _rotation(dtype) -> Tensor:
    c, s = math.cos(ROT), math.sin(ROT)
    return torch.tensor([[c, -s], [s, c]], dtype=dtype)


def composed(case: Case, u: Tensor) -> Tensor:
    """The case's noise-free F on u = x - o_t, ``u: [n, D]`` -> ``[n]``."""
    F = PROTOTYPES[case.prototype][0]
    if case.composition == "":
        return F(u[:, 0])
    if case.composition == "l1":  # separable: sum_i c_i F(u_i)
        return sum(c * F(u[:, i]) for i, c in enumerate(COND))
    if case.composition == "rot":  # the same, in rotated coordinates
        v = u @ _rotation(u.dtype).to(u.device).T
        return sum(c * F(v[:, i]) for i, c in enumerate(COND))
    if case.composition == "l2":  # radial: F(||u||_2) (the norm made smooth at 0 by a 1e-12 floor)
        return F(torch.sqrt((u * u).sum(dim=1) + 1e-24))
    if case.composition == "linf":  # F(max_i |u_i|)
        return F(u.abs().amax(dim=1))
    raise ValueError(f"unknown composition {case.composition!r}; expected one of {COMPOSITIONS}")


def start_point(case: Case, dtype) -> Tensor:
    x0 = PROTOTYPES[case.prototype][1]
    if case.composition in ("", "linf", "l1"):
        return torch.full((case.dim,), x0, dtype=dtype)
    if case.composition == "l2":  # radius x0 on the diagonal
        return torch.full((case.dim,), x0 / math.sqrt(case.dim), dtype=dtype)
    if case.composition == "rot":  # rotated coordinates start at (x0, x0)
        return _rotation(dtype).T @ torch.full((case.dim,), x0, dtype=dtype)
    raise ValueError(case.composition)


def ramp(t: float, steps: int) -> float:
    """Non-stationary factor: 10^(2 t / T - 1), from 0.1 at the start to 10 at the end (log-linear)."""
    return 10.0 ** (2.0 * t / steps - 1.0)


class Problem:
    """K = len(cases) x runs members with the same dimension D; members ordered case-major."""

    def __init__(self, cases: Sequence[Case], runs: int, steps: int, *, dtype=torch.float64, seed: int = 0):
        dims = {c.dim for c in cases}
        if len(dims) != 1:
            raise ValueError("all cases of one Problem must have the same dimension; split 1-D and multivariate cases")
        self.D = dims.pop()
        order = sorted(range(len(cases)), key=lambda i: cases[i].key)  # group equal prototypes: one call each
        self.cases = [cases[i] for i in order]
        self.runs, self.steps, self.dtype = runs, steps, dtype
        C, R = len(self.cases), runs
        self.K = C * R
        rep = lambda v: torch.tensor(v, dtype=dtype).repeat_interleave(R)
        self.A = rep([c.scale for c in self.cases])
        self.noise = {n: rep([c.noise == n for c in self.cases]).bool() for n in NOISES}
        self.ns = {n: rep([c.nonstationary == n for c in self.cases]).bool() for n in NONSTATIONARY}
        self.bounded = rep([PROTOTYPES[c.prototype][2] for c in self.cases]).bool()
        self.x0 = torch.stack([start_point(c, dtype) for c in self.cases]).repeat_interleave(R, dim=0)  # [K, D]
        self.groups: list[tuple[slice, Case]] = []
        a = 0
        for i in range(1, C + 1):
            if i == C or self.cases[i].key != self.cases[a].key:
                self.groups.append((slice(a * R, i * R), self.cases[a]))
                a = i
        self.gen = torch.Generator().manual_seed(seed)
        self.offset_dir = torch.full((self.D,), 1.0 / math.sqrt(self.D), dtype=dtype)

    # the time-dependent parts of the case
    def scale_at(self, t: float) -> Tensor:
        return self.A * torch.where(self.ns["scale"], torch.tensor(ramp(t, self.steps), dtype=self.dtype), torch.ones_like(self.A))

    def offset_at(self, t: float) -> Tensor:
        # the optimum moves away from the start along the diagonal, by 2 ||x0|| over the run (away, so that
        # "not having moved", the gain's reference, never sits on the optimum)
        dist = 2.0 * t / self.steps * self.x0.norm(dim=1)
        return -torch.where(self.ns["offset"], dist, torch.zeros_like(dist))[:, None] * self.offset_dir

    def function(self, x: Tensor, t: float) -> Tensor:
        """Noise-free F(x - o_t) per member, [K, D] -> [K] (without the scale)."""
        u = x - self.offset_at(t)
        return torch.cat([composed(c, u[s]) for s, c in self.groups])

    def true_loss(self, x: Tensor, t: float) -> Tensor:
        return self.scale_at(t) * self.function(x, t)

    def draw(self, t: int) -> dict[str, Tensor]:
        """One sample of every member's noise at update t."""
        K, D, g, dt = self.K, self.D, self.gen, self.dtype
        xi = torch.randn(K, D, generator=g, dtype=dt)
        cauchy = torch.tan(math.pi * (torch.rand(K, D, generator=g, dtype=dt) - 0.5))  # standard Cauchy
        zeta = torch.randn(K, generator=g, dtype=dt)
        keep = (torch.rand(K, generator=g, dtype=dt) >= MASK_P).to(dt)
        w = torch.ones(K, dtype=dt)
        w = torch.where(self.noise["gauss_mul"], 1 + zeta, w)
        w = torch.where(self.noise["mask"], keep / (1 - MASK_P), w)
        add = torch.zeros(K, D, dtype=dt)
        add = torch.where(self.noise["gauss_add"][:, None], xi, add)
        add = torch.where(self.noise["cauchy"][:, None], cauchy, add)
        sigma = torch.where(self.ns["noise"], torch.tensor(ramp(t, self.steps), dtype=dt), torch.ones(K, dtype=dt))
        return {"w": w, "add": add * sigma[:, None], "scale": self.scale_at(t), "t": t}

    def sample_loss(self, x: Tensor, s: dict[str, Tensor]) -> Tensor:
        """L_t(x; xi) per member [K] (see the module docstring)."""
        return s["scale"] * (s["w"] * self.function(x, s["t"]) + (s["add"] * x).sum(dim=1))

    def grad(self, x: Tensor, s, *, create_graph: bool = False) -> tuple[Tensor, Tensor]:
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(self.sample_loss(x, s).sum(), x, create_graph=create_graph)
        return x, g

    def grads_and_extras(self, x: Tensor, s, need: set[str]) -> tuple[Tensor, dict[str, Any]]:
        """The stochastic gradient [K, D] and the extras a rule declared (see vsgd.core)."""
        second = bool(need & {"curvature", "hvp"})
        xr, g = self.grad(x, s, create_graph=second)
        extras: dict[str, Any] = {"batch_size": 1}
        if "curvature" in need:
            # exact diagonal of the sample loss's Hessian, through abs() as in the first author's code
            diag = []
            for i in range(self.D):
                e = torch.zeros_like(g)
                e[:, i] = 1
                (hv,) = torch.autograd.grad(g, xr, e, retain_graph=True, allow_unused=True)
                diag.append(torch.zeros_like(g[:, i]) if hv is None else hv[:, i])
            extras["curvature"] = [torch.stack(diag, dim=1).abs().detach()]
        if "hvp" in need:
            def hvp(vectors, xr=xr, g=g):
                (hv,) = torch.autograd.grad(g, xr, vectors[0], retain_graph=True, allow_unused=True)
                return [torch.zeros_like(vectors[0]) if hv is None else hv.detach()]
            extras["hvp"] = hvp
        if "grad_at" in need:
            extras["grad_at"] = lambda shifts, x=x, s=s: [self.grad(x + shifts[0], s)[1].detach()]
        g = g.detach()
        if "sq_grad_mean" in need:
            extras["sq_grad_mean"] = [g * g]
        if "nonzero_count" in need:
            extras["nonzero_count"] = [(g != 0).to(g.dtype)]
        return g, extras

    def gain(self, x: Tensor, t: float) -> Tensor:
        """Per member: log10(f_t(x0) / f_t(x_t)) (bounded) or the symmetric log of the decrease (unbounded)."""
        with torch.no_grad():
            f0, ft = self.true_loss(self.x0, t), self.true_loss(x, t)
            tiny = torch.finfo(self.dtype).tiny
            ratio = torch.log10(f0.clamp_min(tiny)) - torch.log10(ft.clamp_min(tiny))
            d = f0 - ft
            sym = torch.sign(d) * torch.log1p(d.abs() / self.scale_at(t)) / math.log(10)
            out = torch.where(self.bounded, ratio, sym).clamp(-GAIN_CAP, GAIN_CAP)
            return torch.where(torch.isfinite(x).all(dim=1) & torch.isfinite(ft), out, torch.full_like(out, -math.inf))


def checkpoints(steps: int) -> list[int]:
    """1, 2, 4, ..., steps (log2 spacing, as in the 1-D suite's heatmaps)."""
    out = [1 << j for j in range(int(math.log2(steps)) + 1)]
    return out if out[-1] == steps else out + [steps]


# -- running one optimizer ----------------------------------------------------------------------------
def available_optimizers() -> list[tuple[str, str]]:
    """(kind, name) of every optimizer in the harness now: registered pure rules, then the PyPI ones."""
    from experiments import torch_members  # importing experiments registers the paper's baselines
    from vsgd.core import REGISTRY

    out = [("rule", n) for n in sorted(REGISTRY)]
    for n, o in torch_members.REGISTRY.items():
        try:
            torch_members._resolve(o.cls)
        except ValueError:
            continue  # package not installed: skipped, and said so in the summary
        out.append(("torch", n))
    return out


def run_rule(name: str, problem: Problem, *, ntrain: int) -> np.ndarray:
    """gain[K, checkpoints] of a pure rule at its defaults (config units scaled with ``ntrain``)."""
    from vsgd.core import get_rule

    rule = get_rule(name)
    K = problem.K
    settings = rule.check_hp({})
    hp = {n: torch.full((K,), settings[n] * ntrain**p.ntrain_power, dtype=problem.dtype) for n, p in rule.hyperparams.items()}
    params = [problem.x0.clone()]
    state = rule.init(params, hp)
    need = set(rule.extras)
    ckpts = checkpoints(problem.steps)
    out = np.empty((K, len(ckpts)))
    dead = torch.zeros(K, dtype=torch.bool)
    for t in range(1, problem.steps + 1):
        s = problem.draw(t - 1)
        g, extras = problem.grads_and_extras(params[0], s, need)
        updates, state = rule.update([g], state, params, hp, extras)
        params = [params[0] + updates[0]]
        if t in ckpts:
            gain = problem.gain(params[0], t)
            dead |= ~torch.isfinite(gain)
            out[:, ckpts.index(t)] = torch.where(dead, torch.full_like(gain, -math.inf), gain).numpy()
    return out


def run_torch(name: str, problem: Problem, *, runs: int | None = None) -> np.ndarray:
    """gain[K, checkpoints] of a PyPI optimizer at its defaults (stacked or one instance per member)."""
    from experiments.torch_members import get_optimizer, guarded_step, make_optimizers, set_grads

    opt = get_optimizer(name)
    K = problem.K
    x = problem.x0.clone()
    groups = make_optimizers(name, [x], [{}] * K)
    ckpts = checkpoints(problem.steps)
    out = np.empty((K, len(ckpts)))
    alive = torch.ones(K, dtype=torch.bool)
    for t in range(1, problem.steps + 1):
        s = problem.draw(t - 1)
        _, g = problem.grad(x, s)
        set_grads(groups, [x], [g])
        with torch.no_grad():
            for idx, o in groups:
                if len(idx) == 1 and opt.needs_per_member:
                    if alive[idx[0]] and not guarded_step(o, any_error=True):
                        alive[idx[0]] = False
                else:
                    o.step()
        if t in ckpts:
            if opt.schedule_free:
                for _, o in groups:
                    o.eval()  # the averaged point x is the one evaluated
            gain = problem.gain(x, t)
            if opt.schedule_free:
                for _, o in groups:
                    o.train()
            alive &= torch.isfinite(gain)
            out[:, ckpts.index(t)] = torch.where(alive, gain, torch.full_like(gain, -math.inf)).numpy()
    return out


# -- the suite ----------------------------------------------------------------------------------------
@dataclass
class SuiteResult:
    optimizers: list[str]  # row labels
    kinds: list[str]  # "rule" | "torch"
    cases: list[Case]
    checkpoints: list[int]
    gain: np.ndarray  # [optimizer, case, run, checkpoint], NaN where an optimizer had fewer runs
    seconds: list[float]


def run_suite(
    *,
    steps: int = 1024,
    runs: int = 16,
    per_member_runs: int = 4,
    scales: Sequence[float] = SCALES,
    noises: Sequence[str] = NOISES,
    multivariate: bool = True,
    optimizers: Sequence[str] | None = None,
    ntrain: int = 10_000,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> SuiteResult:
    """Run every (or the named) optimizer on every case; one batched computation per optimizer and dimension."""
    from experiments.torch_members import REGISTRY as TORCH

    all_cases = cases_1d(scales, noises) + (cases_nd() if multivariate else [])
    avail = available_optimizers()
    if optimizers:
        unknown = sorted(set(optimizers) - {n for _, n in avail})
        if unknown:
            raise ValueError(f"unknown or unavailable optimizer(s) {unknown}; available: {[n for _, n in avail]}")
        avail = [(k, n) for k, n in avail if n in optimizers]
    ckpts = checkpoints(steps)
    R = max(runs, per_member_runs)
    gain = np.full((len(avail), len(all_cases), R, len(ckpts)), np.nan)
    secs = []
    for o, (kind, name) in enumerate(avail):
        t0 = time.perf_counter()
        r = per_member_runs if kind == "torch" and TORCH[name].needs_per_member else runs
        for dim in sorted({c.dim for c in all_cases}):
            part = [c for c in all_cases if c.dim == dim]
            prob = Problem(part, r, steps, seed=seed + 1000 * o + dim)
            g = run_rule(name, prob, ntrain=ntrain) if kind == "rule" else run_torch(name, prob)
            g = g.reshape(len(prob.cases), r, len(ckpts))
            for i, c in enumerate(prob.cases):
                gain[o, all_cases.index(c), :r] = g[i]
        secs.append(time.perf_counter() - t0)
        log(f"[unit_suite] {name:20s} {kind:5s} runs={r:3d}  {secs[-1]:7.1f}s")
    return SuiteResult([n for _, n in avail], [k for k, _ in avail], all_cases, ckpts, gain, secs)


def case_outcomes(res: SuiteResult, *, improve_threshold: float = 0.1, unstable_fraction: float = 0.25) -> pd.DataFrame:
    """One row per (optimizer, case): median final gain, improved, unstable (the summary's definitions)."""
    rows = []
    for o, name in enumerate(res.optimizers):
        for c, case in enumerate(res.cases):
            v = res.gain[o, c, :, -1]
            v = v[~np.isnan(v)]
            bad = (~np.isfinite(v)) | (v <= -1.0)
            med = float(np.median(np.where(np.isfinite(v), v, -np.inf)))
            rows.append({"optimizer": name, **asdict(case), "median_gain": med,
                         "improved": med > improve_threshold, "unstable": bool(bad.mean() >= unstable_fraction)})
    return pd.DataFrame(rows)


def by_prototype(res: SuiteResult, **kw) -> pd.DataFrame:
    """Fraction of a prototype's 1-D cases (noises x scales) improved / unstable, per optimizer: 'I/U' strings."""
    df = case_outcomes(res, **kw)
    df = df[df.composition == ""]
    g = df.groupby(["optimizer", "prototype"], sort=False)[["improved", "unstable"]].mean()
    cell = (g.improved.map("{:.2f}".format) + "/" + g.unstable.map("{:.2f}".format)).unstack("prototype")
    return cell.loc[res.optimizers, [p for p in PROTOTYPES if p in cell.columns]].reset_index()


def summary(res: SuiteResult, *, improve_threshold: float = 0.1, unstable_fraction: float = 0.25) -> pd.DataFrame:
    """Per optimizer: fraction of cases improved / unstable (1-D, multivariate and all)."""
    rows = []
    final = res.gain[..., -1]  # [O, C, R]
    for o, name in enumerate(res.optimizers):
        f = final[o]
        valid = ~np.isnan(f)
        improved, unstable = [], []
        for c in range(len(res.cases)):
            v = f[c][valid[c]]
            bad = (~np.isfinite(v)) | (v <= -1.0)
            improved.append(float(np.median(np.where(np.isfinite(v), v, -np.inf))) > improve_threshold)
            unstable.append(bad.mean() >= unstable_fraction)
        improved, unstable = np.array(improved), np.array(unstable)
        is1d = np.array([c.dim == 1 for c in res.cases])
        row = {"optimizer": name, "kind": res.kinds[o], "runs": int(valid[0].sum()), "cases": len(res.cases),
               "improved": improved.mean(), "unstable": unstable.mean(),
               "improved_1d": improved[is1d].mean() if is1d.any() else np.nan,
               "unstable_1d": unstable[is1d].mean() if is1d.any() else np.nan,
               "improved_nd": improved[~is1d].mean() if (~is1d).any() else np.nan,
               "unstable_nd": unstable[~is1d].mean() if (~is1d).any() else np.nan,
               "seconds": res.seconds[o]}
        for n in NOISES:
            m = np.array([c.noise == n and c.dim == 1 for c in res.cases])
            if m.any():
                row[f"improved_{n}"] = improved[m].mean()
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table (floats to 2 decimals), without the optional ``tabulate`` dependency."""
    fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def save(res: SuiteResult, folder: Path, name: str = "unit_suite", **summary_kw) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    npz = folder / f"{name}.npz"
    case_cols = {f"case_{k}": np.array([asdict(c)[k] for c in res.cases]) for k in asdict(res.cases[0])}
    np.savez_compressed(npz, gain=res.gain, optimizers=np.array(res.optimizers), kinds=np.array(res.kinds),
                        checkpoints=np.array(res.checkpoints), seconds=np.array(res.seconds), **case_cols)
    return {"npz": npz, **write_tables(res, folder, name, **summary_kw)}


def write_tables(res: SuiteResult, folder: Path, name: str = "unit_suite", label: Callable[[str], str] | None = None,
                 **summary_kw) -> dict[str, Path]:
    """The summary (``<name>_summary.{csv,md}``), per-case and per-prototype tables of ``res`` in ``folder``;
    ``label``: how the markdown names an optimizer (the analysis passes its display names; the CSVs keep the
    registry names, the key other tables join on)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = summary(res, **summary_kw)
    csv = folder / f"{name}_summary.csv"
    table.to_csv(csv, index=False)
    md = folder / f"{name}_summary.md"
    md.write_text(markdown(table if label is None else table.assign(optimizer=table.optimizer.map(label))))
    cases = folder / f"{name}_cases.csv"
    case_outcomes(res, **summary_kw).to_csv(cases, index=False)
    protos = folder / f"{name}_by_prototype.csv"
    by_prototype(res, **summary_kw).to_csv(protos, index=False)
    return {"csv": csv, "md": md, "cases": cases, "by_prototype": protos}


def load(path: Path) -> SuiteResult:
    z = np.load(path, allow_pickle=False)
    fields = [k[len("case_"):] for k in z.files if k.startswith("case_")]
    cols = {f: z[f"case_{f}"] for f in fields}
    cases = [Case(**{f: (float(cols[f][i]) if f == "scale" else str(cols[f][i])) for f in fields})
             for i in range(len(cols["prototype"]))]
    return SuiteResult(list(map(str, z["optimizers"])), list(map(str, z["kinds"])), cases,
                       list(map(int, z["checkpoints"])), z["gain"], list(map(float, z["seconds"])))


def run(cfg) -> dict[str, Any]:
    """Hydra entry (``conf/experiment/unit_suite.yaml``): run and save under <store>/synthetic/. The figures are
    the analysis's (a layer above): ``python -m analysis`` (which ``./reproduce.sh unit_suite`` runs next) or
    ``python -m analysis.unit_suite_figures`` draws them from the saved npz.

    Returns ``{"npz", "csv", "md": paths, "summary": DataFrame}`` (a dict, not a DataFrame, so that
    experiments.run does not print it as a table of benchmark rows; the summary is printed here)."""
    from experiments.results import DEFAULT_STORE

    u = cfg.unit_suite
    torch.set_num_threads(int(u.get("threads", 1)))
    res = run_suite(steps=int(u.steps), runs=int(u.runs), per_member_runs=int(u.per_member_runs),
                    scales=list(u.scales), noises=list(u.noises), multivariate=bool(u.multivariate),
                    optimizers=list(u.optimizers) if u.get("optimizers") else None, ntrain=int(u.ntrain),
                    seed=int(u.seed))
    store = Path(cfg.store) if cfg.get("store") else DEFAULT_STORE
    paths = save(res, store / "synthetic", improve_threshold=float(u.improve_threshold),
                 unstable_fraction=float(u.unstable_fraction))
    table = pd.read_csv(paths["csv"])
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    return {**paths, "summary": table}


def main() -> None:
    ap = argparse.ArgumentParser(description="Unit tests for stochastic optimization (Schaul et al. 2014).")
    ap.add_argument("--steps", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=16)
    ap.add_argument("--per-member-runs", type=int, default=4)
    ap.add_argument("--optimizers", nargs="*")
    ap.add_argument("--no-multivariate", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="folder (default <store>/synthetic)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    from experiments.results import DEFAULT_STORE

    torch.set_num_threads(args.threads)
    res = run_suite(steps=args.steps, runs=args.runs, per_member_runs=args.per_member_runs,
                    optimizers=args.optimizers, multivariate=not args.no_multivariate)
    paths = save(res, args.out or DEFAULT_STORE / "synthetic")
    print(Path(paths["md"]).read_text())


if __name__ == "__main__":
    main()
