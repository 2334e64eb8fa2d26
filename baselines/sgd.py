"""SGD with the paper's 1/t decay schedule (paper 1, Sec. 2 and Sec. 7).

    eta(t) = eta0 / (1 + gamma t)          # paper 1 Sec. 2: eta(t) = eta0 (1 + gamma t)^-1
    theta <- theta - eta(t) grad

``gamma`` is given in units of 1/#train (``gamma_times_ntrain`` in Table 1): the trainer divides by
the number of training samples, so ``gamma=1`` halves the rate after one epoch. ``t`` counts updates
from 0.
"""

from __future__ import annotations

import torch

from vsgd.core import HyperParam, Rule, per_member, register
from vsgd.frontend import RuleOptimizer

HYPERPARAMS = {
    "eta0": HyperParam(0.01, low=0.0, low_inclusive=False, doc="initial learning rate"),
    "gamma": HyperParam(0.0, low=0.0, ntrain_power=-1, doc="decay, eta(t) = eta0 / (1 + gamma t); in configs per 1/#train"),
}


def init(params, hp):
    return {"step": torch.zeros(params[0].shape[0], dtype=params[0].dtype, device=params[0].device)}


def _eta(state, hp):
    return hp["eta0"] / (1.0 + hp["gamma"] * state["step"])  # paper 1 Sec. 2: eta(t) = eta0 / (1 + gamma t)


def scalar_rate(state, hp):
    """The update is -eta(t) * grad with one rate per member: (eta [K], next state)."""
    return _eta(state, hp), {"step": state["step"] + 1}


def update(grads, state, params, hp, extras):
    eta, state = scalar_rate(state, hp)
    return [-per_member(eta, g) * g for g in grads], state


def rates(state, hp, params):
    eta = _eta(state, hp)
    return [per_member(eta, p) for p in params]


RULE = register(
    Rule(
        name="sgd",
        init=init,
        update=update,
        hyperparams=HYPERPARAMS,
        rates=rates,
        scalar_rate=scalar_rate,
        doc=__doc__,
    )
)


class SGD(RuleOptimizer):
    """SGD with the schedule eta(t) = eta0 / (1 + gamma t); ``gamma`` here is per update.

    Example::

        opt = baselines.SGD(model.parameters(), eta0=0.03, gamma=1 / 60000)
    """

    def __init__(self, params, eta0: float = 0.01, gamma: float = 0.0):
        super().__init__(params, RULE, eta0=eta0, gamma=gamma)
