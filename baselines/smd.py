"""Stochastic meta-descent (Schraudolph 1999, 2002) with one global learning rate, as paper 1 App. C gives it.

    theta(t+1) = theta(t) - eta(t) grad(t)                                   # App. C (paper 1), line 1
    eta(t+1)   = eta(t) exp(-mu grad(t) . v(t))                               # App. C (paper 1), line 2
    v(t+1)     = (1 - 1/tau) v(t) - eta(t) (grad(t) + (1 - 1/tau) H(t) v(t))  # App. C (paper 1), line 3

with eta(0) = eta0 and v(0) = 0. ``v`` is (an exponentially decayed estimate of) d theta / d log eta, so
grad . v is the derivative of the loss with respect to log eta and line 2 is a step of exponentiated
gradient descent on log eta, with meta-learning rate ``mu``. All three lines use the quantities at time t
(the old eta in line 3, the old v in line 2). ``grad . v`` is summed over every element of every
parameter: one rate per ensemble member (App. C: "based on a global learning rate").

H(t) v(t) is the exact Hessian-vector product of the same sample's loss (including the L2 term) at
theta(t), taken from ``extras["hvp"]``: in the ensemble trainer ``EnsembleMLP.hvp`` (forward-over-reverse
AD, Pearlmutter's R-operator), in the ``torch.optim`` front-end autograd's double backward (see :class:`SMD`).
The authors' Torch7 code used a finite difference with r = 1e-3 instead (reference notes); the paper
says only that Hv "can be computed in linear time", and the exact product is what that stands for.

No epsilon: nothing is divided. ``eta`` stays positive (it is multiplied by an exponential).

One numerical guard: the exponent of line 2 is clipped to [-MAX_LOG_GAIN, MAX_LOG_GAIN] (a change of
eta by at most e^5 ~ 148x in one step). In a sane run mu |grad . v| is far below that; without the clip
a single huge gradient makes eta overflow to inf (exp of ~1e30) and takes v with it, where with it the
member merely diverges in its parameters and is recorded as diverged. Schraudolph's own SMD guards the
same spot with eta <- eta max(1/2, 1 - mu grad . v).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from vsgd.core import HyperParam, Rule, member_sum, per_member, register
from vsgd.frontend import RuleOptimizer

MAX_LOG_GAIN = 5.0  # largest |log| change of eta in one step (numerical guard, never active in sane runs)

HYPERPARAMS = {
    "eta0": HyperParam(0.1, low=0.0, low_inclusive=False, doc="initial (global) learning rate"),
    "mu": HyperParam(1e-3, low=0.0, doc="meta-learning rate of log eta"),
    "tau": HyperParam(1e3, low=1.0, doc="time constant of the auxiliary vector v (decay 1 - 1/tau)"),
}


def init(params, hp):
    return {"eta": hp["eta0"].to(params[0]).clone(), "v": [torch.zeros_like(p) for p in params]}


def update(grads, state, params, hp, extras):
    eta, v = state["eta"], state["v"]
    decay = 1.0 - 1.0 / hp["tau"]  # [K]
    hv = extras["hvp"](v)
    g_dot_v = sum(member_sum(g * vi) for g, vi in zip(grads, v))  # [K], over all parameters (global rate)
    updates = [-per_member(eta, g) * g for g in grads]  # App. C line 1: theta <- theta - eta grad
    log_gain = (-hp["mu"] * g_dot_v).clamp(-MAX_LOG_GAIN, MAX_LOG_GAIN)  # guard: see module docstring
    new_eta = eta * torch.exp(log_gain)  # App. C line 2: eta <- eta exp(-mu grad . v)
    new_v = [  # App. C line 3: v <- (1 - 1/tau) v - eta (grad + (1 - 1/tau) H v)
        per_member(decay, vi) * vi - per_member(eta, vi) * (g + per_member(decay, vi) * h)
        for vi, g, h in zip(v, grads, hv)
    ]
    return updates, {"eta": new_eta, "v": new_v}


def rates(state, hp, params):
    return [per_member(state["eta"], p) for p in params]


RULE = register(
    Rule(
        name="smd",
        init=init,
        update=update,
        hyperparams=HYPERPARAMS,
        extras=("hvp",),
        rates=rates,
        hvp_vectors=lambda state: state["v"],  # line 3's H(t) v(t): v is known before the gradient
        doc=__doc__,
    )
)


class SMD(RuleOptimizer):
    """Stochastic meta-descent with a global learning rate (paper 1 App. C).

    SMD needs the Hessian-vector product H v on the sample of the current gradient. This front-end takes
    it from the gradient's own autograd graph (double backward, as torch users know from AdaHessian-like
    optimizers): compute the gradient with ``loss.backward(create_graph=True)``, then call ``step()``. The
    product costs about one more backward pass; its result is exact. Gradients without a graph (a loss
    linear in that parameter) count as having zero curvature. Call ``zero_grad()`` (set_to_none, the
    default) after each step to free the graph.

    Example::

        opt = baselines.SMD(model.parameters(), eta0=0.1, mu=1e-3, tau=1e3)
        for x, y in data:
            opt.zero_grad()
            loss_fn(model(x), y).backward(create_graph=True)
            opt.step()

    With a closure, the closure must call ``backward(create_graph=True)`` itself.

    Each param group is its own SMD run with its own global rate (as every ``RuleOptimizer`` treats groups);
    its H v is the group's diagonal block of the Hessian applied to the group's v.
    """

    def __init__(self, params, eta0: float = 0.1, mu: float = 1e-3, tau: float = 1e3):
        super().__init__(params, RULE, eta0=eta0, mu=mu, tau=tau)

    def _extras(self, group: dict, params: list[torch.Tensor], closure: Callable | None) -> dict[str, Any]:
        extras = super()._extras(group, params, closure)
        if not any(p.grad.grad_fn is not None for p in params):
            raise RuntimeError(
                "SMD.step needs Hessian-vector products, taken from the gradient's graph: compute the gradient "
                "with loss.backward(create_graph=True) (in your closure, if you pass one) before calling step()."
            )
        extras["hvp"] = lambda vectors: _double_backward_hvp(params, vectors)
        return extras


def _double_backward_hvp(params: list[torch.Tensor], vectors: list[torch.Tensor]) -> list[torch.Tensor]:
    """H v = d/dtheta (grad . v) by autograd through ``p.grad``'s graph; vectors carry the K = 1 axis."""
    live = [i for i, p in enumerate(params) if p.grad.grad_fn is not None]
    with torch.enable_grad():
        hv = torch.autograd.grad(
            [params[i].grad for i in live],
            params,
            grad_outputs=[vectors[i].squeeze(0) for i in live],
            retain_graph=True,
            allow_unused=True,
        )
    return [(torch.zeros_like(p) if h is None else h.detach()).unsqueeze(0) for p, h in zip(params, hv)]
