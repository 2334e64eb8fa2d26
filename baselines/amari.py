"""Amari's natural gradient with a diagonal empirical Fisher matrix (Amari, Park & Fukumizu 2000), as paper 1
Sec. 2 writes its simplest case.

    v_i(t)   = running average of grad_i^2 with time constant tau   (baselines.averages; v_i ~ E[grad_i^2])
    eta_i(t) = eta0 / (v_i(t) + eps)                                # paper 1 Sec. 2: eta_i = eta0 / v_i
    theta_i <- theta_i - eta_i(t) grad_i(t)

The preconditioner is the inverse diagonal of the gradient covariance (the empirical Fisher), not its
square root: the update is eta0 grad_i / E[grad_i^2], which is why Table 1's eta0 are tiny (1e-5 .. 3e-7).
``v`` includes the current gradient.

Epsilon: the paper has none. ``eps`` (default 1e-16) is added to v_i, only so that a dimension whose
gradients have all been exactly 0 gets update 0 / eps = 0 instead of 0 / 0. It is far below any
squared gradient of the benchmarks (the smallest are the L2-only gradients of always-zero MNIST pixels,
(1e-4 x 0.1)^2 = 1e-10), so it changes no other update.
"""

from __future__ import annotations

import torch

from baselines.averages import running_average
from vsgd.core import HyperParam, Rule, per_member, register
from vsgd.frontend import RuleOptimizer

HYPERPARAMS = {
    "eta0": HyperParam(1e-5, low=0.0, low_inclusive=False, doc="learning rate multiplying the inverse Fisher diagonal"),
    "tau": HyperParam(1e4, low=1.0, doc="time constant (in samples) of the running average v of grad^2"),
    "eps": HyperParam(1e-16, low=0.0, low_inclusive=False, doc="added to v, only to avoid 0/0"),
}


def init(params, hp):
    K, like = params[0].shape[0], params[0]
    return {"v_bar": [torch.zeros_like(p) for p in params], "step": like.new_zeros(K)}


def _rates(v_bar, hp):
    # paper 1 Sec. 2: eta_i = eta0 / v_i   (eps only against 0/0)
    return [per_member(hp["eta0"], v) / (v + per_member(hp["eps"], v)) for v in v_bar]


def update(grads, state, params, hp, extras):
    step = state["step"] + 1
    v_bar = [running_average(v, g * g, step, hp["tau"]) for v, g in zip(state["v_bar"], grads)]
    updates = [-r * g for r, g in zip(_rates(v_bar, hp), grads)]
    return updates, {"v_bar": v_bar, "step": step}


def rates(state, hp, params):
    """The rates of the last update (before any new gradient enters v)."""
    return _rates(state["v_bar"], hp)


RULE = register(
    Rule(
        name="amari",
        init=init,
        update=update,
        hyperparams=HYPERPARAMS,
        rates=rates,
        doc=__doc__,
    )
)


class Amari(RuleOptimizer):
    """Diagonal natural gradient: theta_i <- theta_i - eta0 grad_i / (v_i + eps), v_i the running average of
    grad_i^2 with time constant ``tau`` (exact mean over the first ``tau`` steps).

    Example::

        opt = baselines.Amari(model.parameters(), eta0=1e-5, tau=1e4)
    """

    def __init__(self, params, eta0: float = 1e-5, tau: float = 1e4, eps: float = 1e-16):
        super().__init__(params, RULE, eta0=eta0, tau=tau, eps=eps)
