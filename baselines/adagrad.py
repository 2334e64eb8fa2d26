"""AdaGrad (Duchi, Hazan & Singer 2010), as paper 1 Sec. 2 writes it.

    s_i(t)   = s_i(0) + sum_{u=0..t} grad_i(u)^2             (s_i(0) = initial_accumulator_value)
    eta_i(t) = eta0 / (sqrt(s_i(t)) + eps)                    # paper 1 Sec. 2: eta_i(t) = eta0 / sqrt(sum_s grad_i(s)^2)
    theta_i <- theta_i - eta_i(t) grad_i(t)

The sum includes the current gradient (s = 0 .. t), so the very first step has size eta0 in every
dimension with a non-zero gradient.

Epsilon: the paper has none. ``eps`` is added to the square root, where ``torch.optim.Adagrad`` adds
it (default 1e-10, torch's), so that with the same ``eta0``, ``initial_accumulator_value`` and ``eps``
this rule equals ``torch.optim.Adagrad(lr=eta0, lr_decay=0, weight_decay=0)`` step for step. It only
matters where every gradient so far was exactly 0 (then the update is 0 / eps = 0 instead of 0 / 0).
"""

from __future__ import annotations

import torch

from vsgd.core import HyperParam, Rule, per_member, register
from vsgd.frontend import RuleOptimizer

HYPERPARAMS = {
    "eta0": HyperParam(0.1, low=0.0, low_inclusive=False, doc="global learning rate"),
    "eps": HyperParam(1e-10, low=0.0, doc="added to sqrt(sum of squared gradients), as in torch.optim.Adagrad"),
    "initial_accumulator_value": HyperParam(0.0, low=0.0, doc="starting value of the sum of squared gradients"),
}


def init(params, hp):
    return {"sum_sq_grad": [torch.zeros_like(p) + per_member(hp["initial_accumulator_value"], p) for p in params]}


def _rates(sums, hp):
    # paper 1 Sec. 2: eta_i(t) = eta0 / sqrt(sum_{s<=t} grad_i(s)^2); eps where torch.optim.Adagrad puts it
    return [per_member(hp["eta0"], s) / (s.sqrt() + per_member(hp["eps"], s)) for s in sums]


def update(grads, state, params, hp, extras):
    sums = [s + g * g for s, g in zip(state["sum_sq_grad"], grads)]  # the sum runs to s = t (current gradient included)
    updates = [-r * g for r, g in zip(_rates(sums, hp), grads)]
    return updates, {"sum_sq_grad": sums}


def rates(state, hp, params):
    """The rates the *last* update used (before any new gradient is added)."""
    return _rates(state["sum_sq_grad"], hp)


RULE = register(
    Rule(
        name="adagrad",
        init=init,
        update=update,
        hyperparams=HYPERPARAMS,
        rates=rates,
        doc=__doc__,
    )
)


class Adagrad(RuleOptimizer):
    """AdaGrad: eta_i(t) = eta0 / (sqrt(initial_accumulator_value + sum_{s<=t} grad_i(s)^2) + eps).

    Equals ``torch.optim.Adagrad(params, lr=eta0, eps=eps, initial_accumulator_value=...)``.

    Example::

        opt = baselines.Adagrad(model.parameters(), eta0=0.1)
    """

    def __init__(self, params, eta0: float = 0.1, eps: float = 1e-10, initial_accumulator_value: float = 0.0):
        super().__init__(params, RULE, eta0=eta0, eps=eps, initial_accumulator_value=initial_accumulator_value)
