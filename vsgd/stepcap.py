"""The step cap of the ``VSGD`` front-end: no step goes past the minimum of the loss's own model along it.

vSGD's rates (paper 1 eq. 7) are optimal for a *separable* quadratic: each element i moves by
g_bar_i^2 / (h_bar_i v_bar_i) times its gradient, as if no other element moved. On models whose
parameters are strongly coupled (a convolution kernel shared by every position, a residual stack) the
curvature along the step that all elements take together is much larger than the diagonal model
sum_i h_i d_i^2 says. Measured on Table 4's MNIST CNN (``benchmarks/vsgd_step_cap.py``, docs/vsgd.md, "The
step cap"): at the step where vSGD-l's loss started to blow up, the Gauss-Newton curvature along the step was
88x the diagonal model's and the step 6.5x longer than the minimum along it; the next step 155x and 47x.
The paper's MLPs (tanh, an L2 term) are not run through this front-end (Tables 2-3 are unchanged).

The cap uses the two quantities the rule is built on, taken along the step d = -eta * g it proposes: the
slope ``-g.d`` (g: the gradient the closure computed) and the Gauss-Newton curvature ``d^T G d`` of the
same loss on the same samples (the matrix whose diagonal the ``gnb`` and bbprop estimators estimate,
plus the L2 term's ``l2 |d|^2``). Their ratio is the minimiser of the quadratic model along d, so the
step taken is ``alpha d`` with

    alpha = min(1, -g.d / d^T G d)

(1: the rule's own step, unchanged). ``d^T G d = (J d)^T H (J d)``, H the loss's Hessian w.r.t. the
model's output (:func:`vsgd.curvature.output_quadratic`), and ``J d`` is a finite difference of the
model's output, ``(f(theta + e d) - f(theta)) / e``, on the inputs of the closure's forward pass: one
more forward pass without gradients, which every layer has (forward-mode AD, the exact alternative,
is missing for PyTorch's fused attention and CPU LSTM kernels). ``e = sqrt(machine eps) (1 + |theta|) /
|d|``, the usual forward-difference step (a fixed e = 1e-3 did slightly worse; e = 1, the whole step's
secant, over-damped; the free one-draw estimate (u . J d)^2 from the gnb draw was too noisy to stop the
divergence: docs/vsgd.md). The extra pass sees the random state
of the closure's forward pass (the same dropout masks) and copies of the buffers (BatchNorm's running
statistics are not moved twice); it changes neither the parameters nor the random state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from vsgd.curvature import output_quadratic
from vsgd.frontend import _rng_state, _set_rng_state


class InputRecorder:
    """A forward hook on the model keeping the inputs and output of its last forward pass with gradients
    enabled (the closure's), for the cap's second pass. ``paused`` turns it off (per-sample passes). Holds no
    reference to the optimizer (the optimizer's finalizer removes the hook)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.paused = False
        self.last: tuple[tuple, dict, Tensor] | None = None
        self._handles = [model.register_forward_hook(self._hook, with_kwargs=True)]

    def _hook(self, module, args, kwargs, out) -> None:
        if not self.paused and torch.is_grad_enabled() and isinstance(out, Tensor):
            self.last = (args, kwargs, out.detach())

    def reset(self) -> None:
        self.last = None

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self.last = None


def step_scale(model: nn.Module, recorder: InputRecorder, moves: Sequence[tuple[Tensor, Tensor]], *, loss: str,
               reduction: str, l2: float, rng: Any = None, names: dict[int, str] | None = None,
               ) -> tuple[Tensor, dict[str, float]] | None:
    """alpha = min(1, -g.d / d^T G d) for the step ``moves`` ((parameter, its update d), the updates the rule
    proposes), or None where it cannot be measured (no forward pass recorded, a zero step); with the slope and
    the curvature it came from. ``rng``: the random state before the closure's forward pass (replayed);
    ``names``: ``{id(parameter): name}`` of the model's parameters (the caller's cache; built here if None).

    Cost (docs/vsgd.md, "Speed of a step against Adam"): one forward pass without gradients at the shifted
    parameters, run on the model itself with its parameters shifted in place and restored by copy (bit for bit)
    rather than through ``torch.func.functional_call``, whose re-binding of every parameter cost as much as the
    small models' forward; and one read from the device for the three reductions (each per-tensor sum is read
    as a float64 and summed in Python in the parameters' order, the arithmetic of one read per tensor)."""
    if recorder.last is None or not moves:
        return None
    args, kwargs, out = recorder.last
    terms = [(p.grad.detach().to(u.dtype) * u).sum().double() for p, u in moves if p.grad is not None]
    n_slope = len(terms)
    terms += [(u.double() ** 2).sum() for _, u in moves]
    terms += [(p.detach().double() ** 2).sum() for p, _ in moves]
    sums = torch.stack(terms).tolist()  # float64 sums read once
    slope = -sum(sums[:n_slope])
    d2 = sum(sums[n_slope:n_slope + len(moves)])
    if not (slope > 0 and d2 > 0 and math.isfinite(slope) and math.isfinite(d2)):
        return None
    theta = math.sqrt(sum(sums[n_slope + len(moves):]))
    dtype = moves[0][0].dtype
    e = math.sqrt(torch.finfo(dtype if dtype.is_floating_point else torch.float32).eps) * (1 + theta) / math.sqrt(d2)
    if names is None:
        names = {id(p): n for n, p in model.named_parameters()}
    shifted = [(p, (e * u).to(p.dtype)) for p, u in moves if id(p) in names]
    saved = [(p, p.detach().clone()) for p, _ in shifted]
    buffers = [(b, b.clone()) for b in model.buffers()]  # BatchNorm's running statistics move once per step
    after = _rng_state() if rng is not None else None
    recorder.paused = True
    try:
        if rng is not None:
            _set_rng_state(rng)
        with torch.no_grad():
            for p, s in shifted:
                p.add_(s)  # theta + e d, the same sum as a new tensor p + e d
            out2 = model(*args, **kwargs)
    finally:
        with torch.no_grad():
            for x, copy in (*saved, *buffers):
                x.copy_(copy)  # restore by copy: (theta + e d) - e d is not theta
        recorder.paused = False
        if after is not None:
            _set_rng_state(after)
    jd = (out2.detach().to(out.dtype) - out) / e
    curv = float(output_quadratic(loss, out, jd, reduction)) + l2 * d2
    alpha = min(1.0, slope / curv) if curv > 0 and math.isfinite(curv) else 1.0
    ref = moves[0][1]
    return torch.tensor(alpha, dtype=ref.dtype, device=ref.device), {"slope": slope, "curvature": curv, "alpha": alpha}
