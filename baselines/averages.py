"""The running average that Amari's and Almeida's rules share (paper 1 Sec. 2: "v_i ~ E[grad_i^2], a recent
running average of its square", with a time constant tau, Sec. 7).

    v_i(t) = (1 - 1/m(t)) v_i(t-1) + 1/m(t) grad_i(t)^2,     m(t) = min(t, tau),  t = 1, 2, ...

The paper gives neither the initial value nor the exact convention. We choose m(t) = min(t, tau): the exact
mean of the squared gradients while fewer than tau have been seen, then an exponential average with time
constant tau (memory 1/tau per step). Starting from v = 0 with weight 1/tau from the first step instead
would make v about t/tau times too small early on, i.e. the rates eta0 / v up to tau = 1e5 times too large
on the first steps (docs/baselines.md).
"""

from __future__ import annotations

from torch import Tensor

from vsgd.core import per_member


def running_average(v: Tensor, x: Tensor, count: Tensor, tau: Tensor) -> Tensor:
    """One step of the average above. ``count`` [K] is t, the number of values including ``x``; ``tau`` [K]."""
    # paper 1 Sec. 2/7: v <- (1 - 1/tau) v + (1/tau) x, with tau replaced by min(t, tau) while t < tau
    weight = per_member(1.0 / count.clamp(min=1.0).minimum(tau), v)
    return v + weight * (x - v)
