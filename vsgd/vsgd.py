"""vSGD-l, vSGD-b and vSGD-g (paper 1: Schaul, Zhang & LeCun, ICML 2013), one code path.

The three variants differ only in how the statistics are *pooled*:

    pooling="element" (vSGD-l, Algorithm 1, eq. 7)   one learning rate per parameter element
    pooling="block"   (vSGD-b, Sec. 5)               one rate per block = per parameter tensor
    pooling="global"  (vSGD-g, eq. 8, App. B)        one rate for all parameters

For a pooled unit u (an element, a block, or everything), with per-sample gradient grad and
per-sample bbprop curvature h(j) (Sec. 4.3), each step does (Algorithm 1, in its order)::

    g_bar_i <- (1 - 1/tau_u) g_bar_i + 1/tau_u grad_i                # Sec. 4.1
    l_bar_u <- (1 - 1/tau_u) l_bar_u + 1/tau_u sum_{i in u} grad_i^2  # Sec. 4.1 (= v_bar_i per element)
    h_bar_i <- (1 - 1/tau_u) h_bar_i + 1/tau_u |h(j)_i|               # Sec. 4.3, Algorithm 1
    r_u      = sum_{i in u} g_bar_i^2 / (l_bar_u + eps)                # the variance factor of eq. 7 / eq. 8
    eta_u    = r_u / max(h+_u, h_min + eps),  h+_u = max_{i in u} h_bar_i  # eq. 7 (element) / eq. 8 (pooled)
    tau_u   <- (1 - r_u) tau_u + 1                                    # Sec. 4.2 / App. B
    theta_i <- theta_i - eta_u grad_i

Per element the sums and the max are over one element, so the same lines read
``eta_i = g_bar_i^2 / (h_bar_i v_bar_i)`` (eq. 7): the state key is then ``v_bar`` (per element),
otherwise ``l_bar`` (per block or global).

Slow start (Sec. 4.4): the first ``n0`` samples only build arithmetic means (the EMA with
1/tau = 1/(t+1) *is* the running arithmetic mean), with the squared-gradient samples multiplied by
C so that v_bar / l_bar start overestimated by C; after them, tau starts at ``tau0``.

Where the paper is silent we chose (each an option, see docs/vsgd.md):

* ``tau0 = 2``: tau's value when the main loop starts (Schaul's own code starts tau at 2). Since
  tau then grows by about 1 per step while v_bar is overestimated, C's excess decays like tau0 C / t,
  which gives the "slow start until about 0.1 epoch" of Supp. Fig. 6 for C = d/10 on M0/C0;
  tau0 = n0 would stretch the slow start n0/2 times longer.
* ``c_scales_h = 1``: h_bar is overestimated by C too, as in Zhang's Torch code (likely behind the
  ICML tables); the paper's text names only v_bar and l_bar, and Schaul's code leaves h_bar alone
  (``c_scales_h=0``). Measured on M1 (docs/vsgd.md): with h_bar unscaled vSGD-l blows up in its first
  thousand steps (train loss 18 and 28% test error after 1/8 epoch) and is still at 16-17% after one
  epoch; with h_bar scaled it is at 8% after 1/8 epoch, and its rates rise until about 0.06 epoch, the
  "slow start until about 0.1 epochs" of Supp. Fig. 6.
* ``move_during_init = 0``: the parameters do not move during the n0 samples (both authors' code);
  with 1 they move with the rate computed from the running means so far.
* ``c = 0`` (the default) means C = max(1, d/10), d the number of parameters of one member (the paper's d/10;
  both authors' code floors it at 1, which matters only for d < 10).
* ``eps = 1e-16`` (Zhang's value) in the two divisions that need it: by l_bar (0/0 when a parameter's
  gradient has been exactly zero on every sample so far) and by the curvature (0 when nothing
  curves, e.g. a bias without L2 behind saturated units). ``h_min`` is the optional curvature
  floor of Sec. 4.3 (0 by default: the L2 term keeps the curvature away from 0, Sec. 7.2).
* ``|h(j)|`` as in Algorithm 1 (bbprop is non-negative anyway; the abs guards other estimators).

State keys: ``g_bar``, ``h_bar`` (lists like params), ``v_bar`` (element) or ``l_bar``, ``tau``
(lists like params for element; a list of [K] tensors, one per parameter tensor, for block; a [K]
tensor for global) and ``step`` (a Python int: all members of an ensemble advance in lock step).
Block statistics are kept as one [K] tensor per parameter tensor rather than one [K, n_blocks]
tensor so that the torch.optim front-end can leave parameters whose ``grad`` is ``None`` untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from vsgd.core import HyperParam, Rule, member_max, member_sum, per_member, register
from vsgd.fd import minibatch_ratio

POOLINGS = ("element", "block", "global")

HYPERPARAMS = {
    "n0": HyperParam(0.001, low=0.0, low_inclusive=False, ntrain_power=+1,
                     doc="slow-start samples n0 (Sec. 4.4); in configs a fraction of #train, "
                         "the rule rounds to a count >= 1"),
    "c": HyperParam(0.0, low=0.0, doc="slow-start overestimate C of v_bar and l_bar (Sec. 4.4); 0 = max(1, d/10)"),
    "tau0": HyperParam(2.0, low=1.0, doc="memory size tau when the main loop starts"),
    "c_scales_h": HyperParam(1.0, low=0.0, high=1.0, doc="1 = h_bar is overestimated by C too (Zhang's code); 0 = only v_bar, l_bar"),
    "move_during_init": HyperParam(0.0, low=0.0, high=1.0, doc="1 = parameters move during the n0 slow-start samples"),
    "eps": HyperParam(1e-16, low=0.0, doc="added to the denominators l_bar and h+ (the curvature floor when h_min=0)"),
    "h_min": HyperParam(0.0, low=0.0, doc="optional curvature floor, eta = r / max(h+, h_min + eps) (Sec. 4.3)"),
    "h_rel": HyperParam(0.0, low=0.0, high=1.0,
                        doc="relative curvature floor of vSGD-l: h_bar_i >= h_rel x (mean h_bar of its parameter "
                            "tensor) in the rate (Sec. 4.3's floor, from the rule's own statistics); 0 = off (the "
                            "paper); the VSGD front-end uses 1"),
    "h_var": HyperParam(0.0, low=0.0, high=1.0, choices=(0.0, 1.0),
                        doc="1 = curvature variability (paper 2 Sec. 5.2): h = E[h^2] / E[h] from a moving average of "
                            "squared curvatures, never below h_bar; 0 = h_bar (the paper)"),
}


# -- pooling: per-element lists <-> pooled units ---------------------------------------------------
# A pooled quantity is a list of "units": per element, tensors shaped like the params; per block,
# one [K] tensor per parameter tensor; globally, a list holding one [K] tensor.
def _pool_sum(xs: Sequence[Tensor], pooling: str) -> list[Tensor]:
    if pooling == "element":
        return list(xs)
    sums = [member_sum(x) for x in xs]
    return sums if pooling == "block" else [torch.stack(sums).sum(dim=0)]


def _pool_max(xs: Sequence[Tensor], pooling: str) -> list[Tensor]:
    if pooling == "element":
        return list(xs)
    maxs = [member_max(x) for x in xs]
    return maxs if pooling == "block" else [torch.stack(maxs).amax(dim=0)]


def _spread(units: Sequence[Tensor], params: Sequence[Tensor], pooling: str) -> list[Tensor]:
    """Pooled units -> one tensor per parameter, broadcastable to it."""
    if pooling == "element":
        return list(units)
    if pooling == "block":
        return [per_member(u, p) for u, p in zip(units, params)]
    return [per_member(units[0], p) for p in params]


def _units(value, pooling: str) -> list[Tensor]:
    return [value] if pooling == "global" else list(value)


def _stored(units: list[Tensor], pooling: str):
    return units[0] if pooling == "global" else units


def _var_key(pooling: str) -> str:
    return "v_bar" if pooling == "element" else "l_bar"


def slow_start_constant(hp, params: Sequence[Tensor]) -> Tensor:
    """C per member [K]: ``hp['c']`` where > 0, else max(1, d/10) (Sec. 4.4), d = parameters per member."""
    d = sum(p[0].numel() for p in params)
    return torch.where(hp["c"] > 0, hp["c"], torch.full_like(hp["c"], max(1.0, d / 10.0)))


def n0_count(hp) -> Tensor:
    """n0 as a per-member count >= 1 (configs give a fraction of #train, the trainer scales it)."""
    return torch.round(hp["n0"]).clamp_min(1.0)


# -- the rule ---------------------------------------------------------------------------------------
def init(params, hp, *, pooling: str):
    K = params[0].shape[0]
    like = params[0]
    zeros = [torch.zeros_like(p) for p in params]
    if pooling == "element":
        pooled_zero = [torch.zeros_like(p) for p in params]
        tau = [per_member(hp["tau0"], p).expand_as(p).clone() for p in params]
    elif pooling == "block":
        pooled_zero = [torch.zeros(K, dtype=like.dtype, device=like.device) for _ in params]
        tau = [hp["tau0"].clone() for _ in params]
    else:
        pooled_zero = torch.zeros(K, dtype=like.dtype, device=like.device)
        tau = hp["tau0"].clone()
    return {
        "g_bar": zeros,
        _var_key(pooling): pooled_zero,
        "h_bar": [torch.zeros_like(p) for p in params],
        "tau": tau,
        "step": 0,
        "batch_size": 1,  # n of the last step (paper 2 eq. 3), a Python int
        # the largest n0 of the ensemble, a Python int: after it, the step skips all slow-start logic
        "n0_max": int(n0_count(hp).max().item()),
        # whether any member uses the relative curvature floor, a Python bool: without it the step is the paper's
        "h_rel_on": bool((hp["h_rel"] > 0).any().item()) if "h_rel" in hp else False,
        **({"h2_bar": [torch.zeros_like(p) for p in params]} if _h_var_on(hp) else {}),
    }


def _h_var_on(hp) -> bool:
    return "h_var" in hp and bool((hp["h_var"] > 0).any().item())


def _curvature_used(h_bar, state, hp):
    """The curvature in the rate: h_bar (paper 1), or with ``h_var`` paper 2 Sec. 5.2's E[h^2] / E[h] (>= h_bar by
    Jensen: an estimate that rarely curves is taken at the curvature it has when it does, not at its mean)."""
    if "h2_bar" not in state:
        return h_bar
    on = hp["h_var"] > 0
    return [torch.where(_pm(on, h), h2 / (h + _pm(hp["eps"], h)), h) for h, h2 in zip(h_bar, state["h2_bar"])]


def _rate_units(g_bar, var_units, h_bar, hp, pooling, rel_floor: bool = False, n: int = 1):
    """(r_u, eta_u) from the statistics: eq. 7 per element, eq. 8 pooled. ``rel_floor``: apply ``h_rel`` and keep
    r <= 1 (a Python flag, set when some member has h_rel > 0, so that the paper's configs, which leave it 0, run
    exactly the paper's arithmetic)."""
    gb2 = _pool_sum([g * g for g in g_bar], pooling)
    h_units = _pool_max(h_bar, pooling)
    if rel_floor and pooling == "element":
        # Sec. 4.3's lower bound on the curvature ("to avoid numerical instability"), taken from the rule's own
        # statistics: no element counts as flatter than h_rel x the mean curvature of its tensor (the block that
        # vSGD-b pools). Pooled units use h+ (the block's max), never below the mean.
        h_units = [torch.maximum(h, per_member(member_sum(h) * (hp["h_rel"] / h[0].numel()), h)) for h in h_units]
    ratios, rates = [], []
    for s, l, hp_u, in zip(gb2, var_units, h_units):
        r = s / (l + _pm(hp["eps"], l))  # eq. 7 / eq. 8: ||g_bar||^2 / l_bar, l_bar ~ E[||grad||^2]
        if rel_floor:
            # r <= 1 by Jensen (g_bar and l_bar are averages with the same weights), but rounding gives r = 1 + 1e-7
            # when an element's gradient keeps its sign (r -> 1); then tau = (1 - r) tau + 1 < 1, the averages
            # extrapolate, r grows and tau alternates in sign up to inf and NaN (measured: an L2-dominated weight
            # of the ReLU MLP after 180 steps, benchmarks/vsgd_divergence.py). Kept with the front-end's guards.
            r = r.clamp_max(1.0)
        floor = _pm(hp["h_min"] + hp["eps"], hp_u)
        ratios.append(r)
        if n > 1:  # paper 2 eq. 3 (pooled: eq. 8's sums): n g_bar^2 / (v_bar + (n - 1) g_bar^2), per-sample v_bar
            r = minibatch_ratio(s, l, n, _pm(hp["eps"], l))  # tau keeps g_bar^2 / v_bar (paper 2 Algorithm 1)
        rates.append(r / torch.maximum(hp_u, floor))  # eq. 7 / eq. 8: eta = r / h (h+ pooled)
    return ratios, rates


def _pm(value: Tensor, like: Tensor) -> Tensor:
    return per_member(value, like) if like.dim() > 1 else value


def update(grads, state, params, hp, extras, *, pooling: str):
    curv = extras["curvature"]
    n = extras.get("batch_size", 1)  # > 1 with per-sample statistics: extras["sq_grad_mean"] = mean_j grad_j^2
    squares = extras["sq_grad_mean"] if n > 1 else [g * g for g in grads]
    t = state["step"]
    vkey = _var_key(pooling)
    tau = _units(state["tau"], pooling)
    var = _units(state[vkey], pooling)
    warm = t < state["n0_max"]  # some member is still in its slow start (Sec. 4.4)
    if warm:
        in_init = t < n0_count(hp)  # [K]
        C = slow_start_constant(hp, params)
        # during the slow start: arithmetic means (1/tau = 1/(t+1)), squared gradients scaled by C
        fract = [torch.where(_pm(in_init, u), torch.full_like(u, 1.0 / (t + 1)), 1.0 / u) for u in tau]
        v_scale = torch.where(in_init, C, torch.ones_like(C))
        h_scale = torch.where(in_init & (hp["c_scales_h"] > 0), C, torch.ones_like(C))
        sq = [s * per_member(v_scale, s) for s in squares]
        h_sample = [c.abs() * per_member(h_scale, c) for c in curv]
    else:
        fract = [torch.reciprocal(u) for u in tau]
        sq = squares
        h_sample = [c.abs() for c in curv]
    fract_p = _spread(fract, params, pooling)

    g_bar = [torch.lerp(gb, g, f) for gb, g, f in zip(state["g_bar"], grads, fract_p)]  # Sec. 4.1
    var = [torch.lerp(v, s, f) for v, s, f in zip(var, _pool_sum(sq, pooling), fract)]  # Sec. 4.1: v_bar / l_bar
    h_bar = [torch.lerp(hb, h, f) for hb, h, f in zip(state["h_bar"], h_sample, fract_p)]  # Sec. 4.3
    new_state = dict(state)
    if "h2_bar" in state:  # paper 2 Sec. 5.2: moving average of the squared curvature samples
        new_state["h2_bar"] = [torch.lerp(h2, h * h, f) for h2, h, f in zip(state["h2_bar"], h_sample, fract_p)]
    ratio, rate = _rate_units(g_bar, var, _curvature_used(h_bar, new_state, hp), hp, pooling,
                              state.get("h_rel_on", False), n)
    new_tau = [torch.addcmul(u, r, u, value=-1.0).add_(1.0) for u, r in zip(tau, ratio)]  # Sec. 4.2: (1 - r) tau + 1

    rate_p = _spread(rate, params, pooling)
    updates = [torch.mul(g, e).neg_() for g, e in zip(grads, rate_p)]  # theta <- theta - eta grad
    if warm:
        # tau stays at tau0 during the slow start; parameters move only with move_during_init
        new_tau = [torch.where(_pm(in_init, u), u, n) for u, n in zip(tau, new_tau)]
        frozen = in_init & (hp["move_during_init"] <= 0)
        updates = [torch.where(per_member(frozen, u), torch.zeros_like(u), u) for u in updates]

    new_state.update({"g_bar": g_bar, vkey: _stored(var, pooling), "h_bar": h_bar,
                      "tau": _stored(new_tau, pooling), "step": t + 1, "batch_size": n})
    return updates, new_state


def rates(state, hp, params, *, pooling: str):
    """The current learning rates (eq. 7 / eq. 8 at the current statistics), broadcastable to params."""
    _, rate = _rate_units(state["g_bar"], _units(state[_var_key(pooling)], pooling),
                          _curvature_used(state["h_bar"], state, hp), hp, pooling, state.get("h_rel_on", False),
                          state.get("batch_size", 1))
    return _spread(rate, params, pooling)


def _make_rule(name: str, pooling: str, doc: str) -> Rule:
    return register(
        Rule(
            name=name,
            init=lambda params, hp: init(params, hp, pooling=pooling),
            update=lambda grads, state, params, hp, extras: update(grads, state, params, hp, extras, pooling=pooling),
            hyperparams=HYPERPARAMS,
            extras=("curvature",),
            rates=lambda state, hp, params: rates(state, hp, params, pooling=pooling),
            doc=doc + "\n\n" + __doc__,
        )
    )


VSGD_L = _make_rule("vsgd_l", "element", "vSGD-l: one learning rate per parameter element (Algorithm 1, eq. 7).")
VSGD_B = _make_rule("vsgd_b", "block", "vSGD-b: vSGD-g within each parameter tensor (each W_k, each b_k).")
VSGD_G = _make_rule("vsgd_g", "global", "vSGD-g: one global learning rate (eq. 8, App. B).")
RULES = {"element": VSGD_L, "block": VSGD_B, "global": VSGD_G}


# -- the torch.optim front-end ---------------------------------------------------------------------
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

from vsgd.bbprop import LOSSES, REDUCTIONS, ActivationRecorder
from vsgd.curvature import CURVATURES, SampledGaussNewton, is_bbprop_model
from vsgd.frontend import RuleOptimizer, _rng_state, state_dtype
from vsgd.stepcap import InputRecorder, step_scale

MODES = {"l": "element", "b": "block", "g": "global"}


def check_n0(n0: Any) -> int:
    """``n0`` of the front-ends: an int >= 1, a number of samples (``VSGD`` and ``VSGDfd`` alike)."""
    if isinstance(n0, bool) or not isinstance(n0, int) or n0 < 1:
        raise ValueError(f"Invalid n0={n0!r}: an int >= 1 (the number of slow-start samples), e.g. n0=10.")
    return n0


class VSGD(RuleOptimizer):
    r"""vSGD (paper 1): SGD whose learning rates set themselves, one per element ("l"), per parameter
    tensor ("b") or one for all ("g"). There is no learning rate to give (``lr``, default 1.0, is a
    multiplier on the rates it sets, for schedulers and tools that expect one).

    Each step (Algorithm 1; the block and global variants pool the sums, eq. 8)::

        g_bar <- (1 - 1/tau) g_bar + grad / tau                 # mean gradient
        v_bar <- (1 - 1/tau) v_bar + grad^2 / tau               # mean squared gradient (l_bar pooled)
        h_bar <- (1 - 1/tau) h_bar + |bbprop| / tau             # mean diagonal curvature
        eta   = g_bar^2 / (h_bar v_bar)                          # eq. 7
        tau   <- (1 - g_bar^2 / v_bar) tau + 1                  # adaptive memory, Sec. 4.2
        theta <- theta - lr * eta * grad                         # lr = 1 (default): the paper's step

    The first ``n0`` steps only build the statistics (slow start, Sec. 4.4); v_bar (and h_bar, see
    ``c_scales_h``) start C times too large (C = max(1, d/10), d the number of parameters), which keeps
    the first steps small.

    Curvature, one of:
      * ``model=`` any ``nn.Module`` (or ``torch.compile`` of one) whose output tensor feeds ``loss=``
        "cross_entropy" (``F.cross_entropy``, classes on the output's last axis) or "mse" (``F.mse_loss``),
        with ``reduction=`` "mean" (default) or "sum". ``curvature=`` picks the estimator (:mod:`vsgd.curvature`,
        docs/vsgd.md "Curvature for any model"):

        - "bbprop" (paper 1 Sec. 4.3): ``nn.Sequential`` of Linear / Tanh / ReLU only; runs on the
          closure's own forward pass (or, for ``step()`` without a closure, on the one forward pass with
          gradients enabled since the last step; it refuses to guess when there were several);
        - "gnb": the sampled-output Gauss-Newton diagonal, (J^T u)^2 with labels drawn from the model's
          own prediction (unbiased for the Gauss-Newton diagonal), for any model: one extra backward pass
          from the output, made inside the user's ``backward()`` on the same graph (no second forward;
          ``.grad`` and the global random state untouched; draws from a generator seeded by ``seed=`` and
          saved in ``state_dict()``); ``step()`` without a closure works after one ``backward()``;
        - "auto" (default): "bbprop" where it applies (the paper's MLPs: Tables 2-3 unchanged), else "gnb".

        The hooks are removed by :meth:`close` or when the optimizer is garbage collected;
      * ``curvature_fn=`` a callable taking no argument, called once per step after the closure (with
        gradients disabled, unless it enables them), returning a non-negative diagonal curvature of *the
        loss the closure returns* for every parameter that has a gradient: a list in the optimizer's
        parameter order (all groups) or a dict keyed by parameter, each tensor with the parameter's
        shape (or number of elements), finite. A closure returning a mean over the batch needs the mean
        of the per-sample curvatures, one returning a sum the sum. See docs/vsgd.md for an example.
    If the loss contains an L2 penalty l2/2 ||theta||^2, pass ``l2=`` so its curvature is added.

    Minibatches (paper 2 eq. 3): ``opt.step(vsgd.PerSampleClosure(model, loss_fn, x, y))`` adds per-sample
    gradients (``torch.func``) to the closure's pass; v_bar then averages mean_j grad_j^2 and the rate is
    n g_bar^2 / (v_bar + (n - 1) g_bar^2) / h_bar. With a plain closure the minibatch gradient is one sample
    (n = 1, the same rate in expectation); at n = 1 both are today's rule bit for bit (docs/vsgd.md).

    Example (no learning rate anywhere)::

        model = nn.Sequential(nn.Linear(784, 120), nn.Tanh(), nn.Linear(120, 10))
        opt = VSGD(model.parameters(), mode="l", model=model, loss="cross_entropy")
        def closure():
            opt.zero_grad(); loss = F.cross_entropy(model(x), y); loss.backward(); return loss
        opt.step(closure)
        opt.learning_rates()   # one tensor per parameter

    Args:
        mode: "l", "b" or "g".
        lr: a multiplier >= 0 on the rates (default 1.0: exactly the paper's rates). Each param group
            has its own ``group["lr"]``, which learning-rate schedulers change.
        blocks: for mode "b": "tensor" (every parameter tensor is a block, as the paper's per-layer
            weight and bias blocks) or "group" (every param group is one block).
        n0: slow-start samples (an int >= 1; the paper uses 0.001 x #train).
        c: slow-start constant C; None = max(1, d/10), d counted over all param groups.
        tau0, c_scales_h, move_during_init, eps, h_min: see :mod:`vsgd.vsgd` and docs/vsgd.md.
        h_rel: mode "l" only: no element's curvature is taken below h_rel x the mean curvature of its parameter
            tensor (default 1.0; 0.0 = the paper's rule, which diverges on ReLU nets without L2: docs/vsgd.md,
            "Robustness").
        h_var: use paper 2's curvature variability E[h^2] / E[h] instead of h_bar (default False).
        cap_step: take ``alpha`` times the rule's step, alpha = min(1, -g.d / d^T G d), the minimum of the loss's
            Gauss-Newton model along the step d (:mod:`vsgd.stepcap`; one more forward pass per step, on the
            closure's inputs). Default: ``"checked"`` with ``model=`` (off with ``curvature_fn=``, which it cannot
            serve).
            vSGD's per-element rates assume uncoupled parameters; on a convnet the curvature along the whole
            step reached 88x the diagonal model's and vSGD-l diverged without it (docs/vsgd.md, "The step cap").
            ``opt.last_step_cap`` holds the last step's slope, curvature and alpha. ``"checked"`` (the default
            since session 26): the cap, then the batch loss at the capped step (one more forward pass); a step
            that raises its own batch's loss is cut to the minimum of the quadratic through the two losses and
            the slope (:mod:`vsgd.stepcap`, "The check"; ``last_step_cap["loss_change"]``). Without it, 2 of 6
            runs of a residual CNN on repeated minibatches diverged (docs/vsgd.md, "The check").

    Dtypes: float32 and float64 parameters keep state in their dtype; float16 and bfloat16 parameters
    keep float32 state (the update is added in the parameter's dtype). Sparse gradients are refused.

    Warning: the rates assume one sample (or one minibatch) per step with a roughly quadratic loss
    per sample and uncoupled parameters; ``cap_step`` (on with ``model=``) keeps each step within the
    minimum of the loss's Gauss-Newton model along it, without which vSGD-l diverges on convnets.
    """

    lr_multiplier = True
    strict_closure = True

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        mode: str = "l",
        *,
        lr: float = 1.0,
        model: nn.Module | None = None,
        loss: str | None = None,
        curvature_fn: Callable[[], Any] | None = None,
        curvature: str = "auto",
        seed: int = 0,
        l2: float = 0.0,
        reduction: str = "mean",
        blocks: str = "tensor",
        n0: int = 10,
        c: float | None = None,
        tau0: float = 2.0,
        c_scales_h: bool = True,
        move_during_init: bool = False,
        eps: float = 1e-16,
        h_min: float = 0.0,
        h_rel: float = 1.0,
        h_var: bool = False,
        cap_step: bool | str | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"Invalid mode {mode!r}: use 'l' (per element), 'b' (per block) or 'g' (global).")
        if blocks not in ("tensor", "group"):
            raise ValueError(f"Invalid blocks {blocks!r}: use 'tensor' (each parameter tensor a block) or 'group'.")
        if (model is None) == (curvature_fn is None):
            raise ValueError("VSGD needs a curvature: pass model=<the nn.Module> with loss='cross_entropy'|'mse', "
                             "or curvature_fn=<callable> - exactly one of them.")
        if curvature not in CURVATURES:
            raise ValueError(f"Invalid curvature={curvature!r}: one of {CURVATURES} ('auto': bbprop on an nn.Sequential "
                             "of Linear/Tanh/ReLU, the sampled Gauss-Newton 'gnb' on any other model).")
        if model is not None and loss not in LOSSES:
            raise ValueError(f"Invalid loss {loss!r}: with model=..., loss must be one of {LOSSES}.")
        if reduction not in REDUCTIONS:
            raise ValueError(f"Invalid reduction={reduction!r}: 'mean' (the loss is a mean over the batch, as "
                             "F.cross_entropy's default) or 'sum'.")
        check_n0(n0)
        if c is not None and not c > 0:
            raise ValueError(f"Invalid c={c!r}: C must be > 0, or None for max(1, d/10).")
        if not l2 >= 0:
            raise ValueError(f"Invalid l2={l2!r}: the L2 coefficient must be >= 0.")
        if curvature_fn is not None and not callable(curvature_fn):
            raise TypeError(f"curvature_fn must be a callable taking no argument, got {type(curvature_fn).__name__}.")
        if cap_step is None:
            cap_step = "checked" if model is not None else False
        if cap_step not in (True, False, "checked"):
            raise ValueError(f"Invalid cap_step={cap_step!r}: True (the cap), 'checked' (the cap, and a step that "
                             "raises its own batch's loss cut back), False or None (the default: 'checked' with model=).")
        self._cap_check = cap_step == "checked"
        if cap_step and model is None:
            raise ValueError("cap_step=True needs model=... and loss=...: the cap measures the Gauss-Newton curvature "
                             "of the loss along the step on the model's output (with curvature_fn=..., leave it off).")
        model = getattr(model, "_orig_mod", model)  # torch.compile(model): hook the module it wraps
        if model is not None and curvature == "auto":
            curvature = "bbprop" if is_bbprop_model(model) else "gnb"
        self.curvature = curvature if model is not None else "curvature_fn"
        self._recorder: ActivationRecorder | SampledGaussNewton | None = None
        if self.curvature == "bbprop":
            self._recorder = ActivationRecorder(model)
        elif self.curvature == "gnb":
            self._recorder = SampledGaussNewton(model, loss, reduction=reduction, seed=seed)
        self.cap_step = cap_step if cap_step == "checked" else bool(cap_step)
        self._inputs = InputRecorder(model, keep_grad=self._cap_check) if cap_step else None
        self._model = model if cap_step else None
        self.replay_rng = bool(cap_step)
        self.last_step_cap: dict[str, float] | None = None  # the last step's slope, curvature and alpha (cap_step)
        self._own = None if model is None else {id(p) for p in model.parameters()}
        params = list(params)
        tensors = [p for g in params for p in g["params"]] if params and isinstance(params[0], dict) else params
        if c is None:
            c = max(1.0, sum(p.numel() for p in tensors) / 10.0)  # Sec. 4.4: C = d/10
        pooling = "global" if (mode == "b" and blocks == "group") else MODES[mode]
        try:
            super().__init__(params, RULES[pooling], lr=lr, n0=n0, c=c, tau0=tau0, c_scales_h=float(c_scales_h),
                             move_during_init=float(move_during_init), eps=eps, h_min=h_min, h_rel=h_rel,
                             h_var=float(h_var))
        except BaseException:
            for hooks in (self._recorder, self._inputs):
                if hooks is not None:
                    hooks.remove()
            raise
        self.mode, self.blocks = mode, blocks
        self._loss, self._l2, self._reduction = loss, float(l2), reduction
        self._curvature_fn = curvature_fn
        self._curv: dict[int, torch.Tensor] | None = None
        # the hooks go when the optimizer goes (the finalizer holds the recorders, not the optimizer)
        hooks = [h for h in (self._recorder, self._inputs) if h is not None]
        self._finalizer = weakref.finalize(self, _remove_all, hooks) if hooks else None

    def state_dict(self) -> dict[str, Any]:
        out = super().state_dict()
        if isinstance(self._recorder, SampledGaussNewton):
            out["curvature_rng"] = self._recorder.get_state()  # the draws of curvature="gnb" resume where they were
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        rng = state_dict.pop("curvature_rng", None)
        super().load_state_dict(state_dict)
        if rng is not None and isinstance(self._recorder, SampledGaussNewton):
            self._recorder.set_state(rng)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if getattr(self, "_own", None) is not None:
            ps = param_group["params"]
            ps = [ps] if isinstance(ps, torch.Tensor) else list(ps)
            foreign = [i for i, p in enumerate(ps) if id(p) not in self._own]
            if foreign:
                raise ValueError(f"parameter #{foreign[0]} of the param group given to VSGD is not a parameter of "
                                 "model=...: the curvature is estimated for the model's own parameters only.")
            param_group = {**param_group, "params": ps}
        super().add_param_group(param_group)

    def close(self) -> None:
        """Remove the forward hooks that ``model=`` put on the model (also done when the optimizer is
        garbage collected). The optimizer cannot step with bbprop afterwards."""
        if self._finalizer is not None:
            self._finalizer()

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None):
        if self._recorder is not None and not self._recorder._handles:
            raise RuntimeError("VSGD.step after close(): the model's hooks are gone, the curvature has no forward pass.")
        self._curv = None  # computed once per step, after the closure ran
        if self._recorder is not None and closure is not None:
            self._recorder.reset()  # bbprop uses the closure's own forward pass
        if self._inputs is not None and closure is not None:
            self._inputs.reset()  # the cap's second pass uses the closure's inputs
        try:
            if closure is not None and hasattr(closure, "per_sample_grads"):
                return self._minibatch_step(closure)
            return super().step(closure)
        finally:
            self._curv = None
            self._batch = None
            if self._recorder is not None:
                self._recorder.reset()  # count forward passes from here to the next step

    def _minibatch_step(self, closure):
        """A step with paper 2's minibatch rates (eq. 3): the closure's own pass gives the gradient (and the
        curvature, from the hooks), ``closure.per_sample_grads()`` (torch.func vmap, :class:`vsgd.PerSampleClosure`)
        the per-sample squared gradients, mean_j grad_j^2, whose average v_bar makes eq. 3's variance of the mean."""
        rng = _rng_state() if self.replay_rng else None
        loss = self._call_closure(closure)
        paused = [h for h in (self._recorder, self._inputs) if h is not None]
        for h in paused:
            h.paused = True  # the per-sample pass is not the closure's forward pass
        try:
            _, per_sample = closure.per_sample_grads()
        finally:
            for h in paused:
                h.paused = False
        self._batch = (closure.batch_size, per_sample)
        self._step(closure, first=(loss, rng))
        return loss

    def _step_scale(self, moves, rng):
        """``cap_step``: alpha = min(1, -g.d / d^T G d), the minimum of the loss's Gauss-Newton model along the
        step d the rule proposes (:mod:`vsgd.stepcap`); None without the cap or where it cannot be measured."""
        self.last_step_cap = None
        if self._inputs is None:
            return None
        got = step_scale(self._model, self._inputs, moves, loss=self._loss, reduction=self._reduction, l2=self._l2,
                         rng=rng, own=self._own, check=self._cap_check)  # add_param_group keeps moves within _own
        if got is None:
            return None
        self.last_step_cap = got[1]
        return got[0]

    def _curvatures(self) -> dict[int, torch.Tensor]:
        if self._curv is None:
            if isinstance(self._recorder, SampledGaussNewton):
                if self._recorder.backwards > 1:
                    raise RuntimeError(
                        f"{self._recorder.backwards} backward passes went through the model's output since the last "
                        "step (gradient accumulation?): the sampled Gauss-Newton curvature is of one loss. Call step() "
                        "after each backward(), or pass curvature_fn=....")
                live = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
                curv = self._recorder.curvature(l2=self._l2, only=live)
                self._curv = {id(p): c for p, c in curv.items()}
            elif self._recorder is not None:
                if self._recorder.forwards > 1:
                    raise RuntimeError(
                        f"the model ran {self._recorder.forwards} forward passes with gradients enabled since the last "
                        "step, and bbprop cannot tell which one the gradient came from. Run evaluations under "
                        "torch.no_grad() or after step(), or pass the closure to step() (its own forward pass is then "
                        "used); gradient accumulation over several forward passes needs curvature_fn=... or VSGDfd.")
                live = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
                curv = self._recorder.curvature(self._loss, l2=self._l2, reduction=self._reduction, only=live)
                self._curv = {id(p): c for p, c in curv.items()}
            else:
                out = self._curvature_fn()
                tensors = [p for g in self.param_groups for p in g["params"]]
                if isinstance(out, dict):
                    self._curv = {id(p): c for p, c in out.items()}
                elif isinstance(out, (list, tuple)):
                    if len(out) != len(tensors):
                        raise ValueError(f"curvature_fn returned a list of {len(out)} tensors; the optimizer has "
                                         f"{len(tensors)} parameters (a list must follow their order, over all groups).")
                    self._curv = {id(p): c for p, c in zip(tensors, out)}
                else:
                    raise TypeError("curvature_fn must return a list of tensors (the optimizer's parameter order) "
                                    f"or a dict {{parameter: tensor}}, got {type(out).__name__}.")
                if self._l2:
                    self._curv = {k: c + self._l2 for k, c in self._curv.items()}
        return self._curv

    def _extras(self, group, params, closure):
        extras = super()._extras(group, params, closure)
        curv = self._curvatures()
        out = []
        for p in params:
            c = curv.get(id(p))
            if c is None:
                raise RuntimeError(f"curvature_fn returned no curvature for {self._where(group, p)}, which has a gradient.")
            if not isinstance(c, torch.Tensor) or c.numel() != p.numel():
                got = list(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
                raise ValueError(f"the curvature for {self._where(group, p)} must be a tensor of the parameter's "
                                 f"shape, got {got}.")
            out.append(c.detach().reshape(p.shape).to(state_dtype(p)).unsqueeze(0))
        # finite curvatures: one pass and one read from the device for all tensors (a NaN or inf element makes its
        # tensor's sum NaN or inf; the elementwise check runs only to name the culprit)
        bad = None
        if out and not bool(torch.isfinite(torch.stack([c.sum().float() for c in out])).all()):
            bad = next((p for p, c in zip(params, out) if not bool(torch.isfinite(c).all())), None)  # None: a sum overflowed
        if bad is not None:
            raise ValueError(f"the curvature for {self._where(group, bad)} is not finite (NaN or inf): it would "
                             "turn the parameters into NaN. Check curvature_fn (or the loss: bbprop of a diverged "
                             "model is not finite either).")
        extras["curvature"] = out
        batch = getattr(self, "_batch", None)
        if batch is not None and batch[0] > 1:  # paper 2 eq. 3 from the per-sample gradients [n, *shape]
            extras["batch_size"] = batch[0]
            extras["sq_grad_mean"] = [(g * g).mean(dim=0).to(state_dtype(p)).unsqueeze(0)
                                      for p, g in ((p, batch[1][p]) for p in params)]
        return extras

    def _where(self, group: dict, p: torch.Tensor) -> str:
        i = next(i for i, q in enumerate(group["params"]) if q is p)
        gi = next(i for i, g in enumerate(self.param_groups) if g is group)
        return f"parameter #{i} of param group {gi} (shape {list(p.shape)})"


def _remove_all(hooks) -> None:
    for h in hooks:
        h.remove()
