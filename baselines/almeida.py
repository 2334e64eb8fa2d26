"""Almeida & Langlois (1999) per-parameter learning rates, as paper 1 Sec. 2 writes them.

    v_i(t)   = running average of grad_i^2 with time constant tau   (baselines.averages; v_i ~ E[grad_i^2])
    eta_i(t) = max(0, eta0 grad_i(t) grad_i(t-1) / (v_i(t) + eps))  # paper 1 Sec. 2 (reading below)
    theta_i <- theta_i - eta_i(t) grad_i(t)

Reading of the formula. The text extraction of paper 1 prints the numerator as "eta0 theta_i(t) . grad(t-1)_theta_i":
the nabla of the first factor was lost (the subscript theta_i of a gradient is printed the same way as
the second factor's). A parameter times a gradient has no meaning here (it is not invariant to shifting
theta, and the paper describes the scheme as adapting the rate from successive gradients), so the first
factor is the current gradient grad_i(t). The ratio grad_i(t) grad_i(t-1) / v_i is the normalised
correlation of successive gradients, the quantity Almeida & Langlois adapt their rates with: a rate grows
while successive gradients agree in sign and vanishes (the max(0, .)) when they disagree. Almeida &
Langlois themselves apply it multiplicatively to a per-parameter gain carried over time; paper 1 writes
(and, we assume, ran) the memoryless form above, and Table 3's Almeida errors (11.13% on M0, far behind
every other method) fit a rule whose rate is zero whenever the gradient changes sign.

Conventions the paper leaves open (our choices): grad_i(-1) = 0, so the first update is 0; v_i includes
the current gradient; v_i is the exact mean of the squared gradients until tau of them have been seen
(baselines.averages). Epsilon: ``eps`` (default 1e-16) is added to v_i, only so that an always-zero
gradient gives rate 0 rather than 0 / 0.
"""

from __future__ import annotations

import torch

from baselines.averages import running_average
from vsgd.core import HyperParam, Rule, per_member, register
from vsgd.frontend import RuleOptimizer

HYPERPARAMS = {
    "eta0": HyperParam(1e-3, low=0.0, low_inclusive=False, doc="scale of the rate eta0 grad(t) grad(t-1) / v"),
    "tau": HyperParam(1e3, low=1.0, doc="time constant (in samples) of the running average v of grad^2"),
    "eps": HyperParam(1e-16, low=0.0, low_inclusive=False, doc="added to v, only to avoid 0/0"),
    # Readings of the mangled formula (module docstring, docs/baselines.md); per-member flags.
    "first_factor": HyperParam(1.0, choices=(0.0, 1.0, 2.0),
                               doc="what multiplies grad(t - lag) in the rate: 1 = grad(t), 2 = theta(t) "
                                   "(the printed formula taken literally), 0 = nothing (Schaul's py-optim)"),
    "lag": HyperParam(1.0, choices=(0.0, 1.0),
                      doc="1 = the rate uses grad(t-1) (paper 1); 0 = grad(t) (py-optim's statement order)"),
}


def init(params, hp):
    K, like = params[0].shape[0], params[0]
    return {
        "v_bar": [torch.zeros_like(p) for p in params],
        "g_prev": [torch.zeros_like(p) for p in params],  # grad_i(t-1); 0 before the first step
        "step": like.new_zeros(K),
    }


def _rates(grads, g_prev, v_bar, params, hp):
    out = []
    for g, gp, v, theta in zip(grads, g_prev, v_bar, params):
        first, lag = per_member(hp["first_factor"], v), per_member(hp["lag"], v)
        a = torch.where(first == 2, theta, torch.where(first == 0, 1.0, g))  # grad(t) | theta(t) | 1
        b = torch.where(lag == 0, g, gp)  # grad(t - lag)
        # paper 1 Sec. 2: eta_i(t) = max(0, eta0 a_i(t) grad_i(t-1) / v_i), a = grad(t) in our default reading
        out.append((per_member(hp["eta0"], v) * a * b / (v + per_member(hp["eps"], v))).clamp(min=0.0))
    return out


def update(grads, state, params, hp, extras):
    step = state["step"] + 1
    v_bar = [running_average(v, g * g, step, hp["tau"]) for v, g in zip(state["v_bar"], grads)]
    rates_now = _rates(grads, state["g_prev"], v_bar, params, hp)
    updates = [-r * g for r, g in zip(rates_now, grads)]
    return updates, {"v_bar": v_bar, "g_prev": [g.clone() for g in grads], "step": step}


def rates(state, hp, params):
    """The rates that the gradient of the last step would get if it came again (grad(t) = grad(t-1))."""
    return _rates(state["g_prev"], state["g_prev"], state["v_bar"], params, hp)


RULE = register(
    Rule(
        name="almeida",
        init=init,
        update=update,
        hyperparams=HYPERPARAMS,
        rates=rates,
        doc=__doc__,
    )
)


class Almeida(RuleOptimizer):
    """Almeida & Langlois rates as in paper 1 Sec. 2: eta_i(t) = max(0, eta0 g_i(t) g_i(t-1) / (v_i + eps)),
    v_i the running average of g_i^2 with time constant ``tau``.

    Example::

        opt = baselines.Almeida(model.parameters(), eta0=1e-3, tau=1e3)
    """

    def __init__(self, params, eta0: float = 1e-3, tau: float = 1e3, eps: float = 1e-16,
                 first_factor: float = 1.0, lag: float = 1.0):
        super().__init__(params, RULE, eta0=eta0, tau=tau, eps=eps, first_factor=first_factor, lag=lag)
