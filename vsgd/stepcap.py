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

**The check** (``cap_step="checked"``, session 26). The curvature is measured a small distance along d, so a
step much longer than the region where the loss is quadratic can pass the cap: on Table 4's residual CNN
trained on 30 minibatches over and over, a capped step (alpha = 1) moved a weight from 0.96 to 50 and the loss
from 2.3 to 15, and 2 of 6 runs diverged (``benchmarks/vsgd_repeated_batches.py``, docs/vsgd.md). The check
evaluates the batch loss at the capped step theta + alpha d (one more forward pass without gradients) and
compares it with the loss at theta; where the step raised the loss of the very batch it was computed on, alpha
becomes the minimiser of the quadratic through L(theta), the slope along alpha d and L(theta + alpha d) (the
classical interpolation of a line search, no constant; then below alpha / 2). The loss is computed from the
model's output without labels: the closure's backward leaves dL/d(output), which fixes the targets
(:func:`vsgd.curvature.output_loss_change`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from vsgd.curvature import output_loss_change, output_quadratic
from vsgd.frontend import _rng_state, _set_rng_state


class InputRecorder:
    """A forward hook on the model keeping the inputs and output of its last forward pass with gradients
    enabled (the closure's), for the cap's second pass. ``paused`` turns it off (per-sample passes). Holds no
    reference to the optimizer (the optimizer's finalizer removes the hook)."""

    def __init__(self, model: nn.Module, *, keep_grad: bool = False):
        self.model = model
        self.keep_grad = keep_grad  # also keep dL/d(output) (the check of cap_step="checked" needs it)
        self.paused = False
        self.last: tuple[tuple, dict, Tensor] | None = None
        self.grad: Tensor | None = None  # dL/d(output) of that pass, from the closure's backward
        self._handles = [model.register_forward_hook(self._hook, with_kwargs=True)]

    def _hook(self, module, args, kwargs, out) -> None:
        if not self.paused and torch.is_grad_enabled() and isinstance(out, Tensor):
            self.last, self.grad = (args, kwargs, out.detach()), None
            if self.keep_grad and out.requires_grad:
                out.register_hook(self._grad_hook)

    def _grad_hook(self, grad: Tensor) -> None:
        self.grad = grad.detach()

    def reset(self) -> None:
        self.last, self.grad = None, None

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self.last, self.grad = None, None


def _output_at(model: nn.Module, recorder: InputRecorder, shifted: list[tuple[Tensor, Tensor]], rng: Any) -> Tensor:
    """The model's output on the closure's inputs at the parameters plus ``shifted`` ((parameter, shift)), without
    gradients. The parameters are shifted in place and restored by copy (bit for bit: (theta + s) - s is not
    theta), the buffers restored (BatchNorm's running statistics move once per step), the closure's random state
    replayed (its dropout masks) and the caller's left as it was."""
    args, kwargs, _ = recorder.last
    saved = [(p, p.detach().clone()) for p, _ in shifted]
    buffers = [(b, b.clone()) for b in model.buffers()]
    after = _rng_state() if rng is not None else None
    recorder.paused = True
    try:
        if rng is not None:
            _set_rng_state(rng)
        with torch.no_grad():
            for p, s in shifted:
                p.add_(s)  # theta + s, the same sum as a new tensor p + s
            return model(*args, **kwargs).detach()
    finally:
        with torch.no_grad():
            for x, copy in (*saved, *buffers):
                x.copy_(copy)
        recorder.paused = False
        if after is not None:
            _set_rng_state(after)


def step_scale(model: nn.Module, recorder: InputRecorder, moves: Sequence[tuple[Tensor, Tensor]], *, loss: str,
               reduction: str, l2: float, rng: Any = None, own: set[int] | None = None,
               check: bool = False) -> tuple[Tensor, dict[str, float]] | None:
    """alpha = min(1, -g.d / d^T G d) for the step ``moves`` ((parameter, its update d), the updates the rule
    proposes), or None where it cannot be measured (no forward pass recorded, a zero step); with the slope and
    the curvature it came from. ``check``: then the batch loss at the capped step, and alpha cut back where it
    rose (module docstring, "The check"; needs a recorder with ``keep_grad``). ``rng``: the random state before
    the closure's forward pass (replayed); ``own``: the ids of the model's parameters (the caller's; found here
    if None).

    Cost (docs/vsgd.md, "Speed of a step against Adam"): one forward pass without gradients at the shifted
    parameters (two with ``check``), run on the model itself with its parameters shifted in place and restored by
    copy (bit for bit) rather than through ``torch.func.functional_call``, whose re-binding of every parameter
    cost as much as the small models' forward; and one read from the device for the reductions (each per-tensor
    sum is read as a float64 and summed in Python in the parameters' order, the arithmetic of one read per tensor)."""
    if recorder.last is None or not moves:
        return None
    out = recorder.last[2]
    terms = [(p.grad.detach().to(u.dtype) * u).sum().double() for p, u in moves if p.grad is not None]
    n_slope = len(terms)
    terms += [(u.double() ** 2).sum() for _, u in moves]
    terms += [(p.detach().double() ** 2).sum() for p, _ in moves]
    m = len(moves)
    if check and l2:
        terms += [(p.detach().double() * u.double()).sum() for p, u in moves]  # theta . d, for the L2 term's change
    sums = torch.stack(terms).tolist()  # float64 sums read once
    slope = -sum(sums[:n_slope])
    d2 = sum(sums[n_slope:n_slope + m])
    if not (slope > 0 and d2 > 0 and math.isfinite(slope) and math.isfinite(d2)):
        return None
    theta = math.sqrt(sum(sums[n_slope + m:n_slope + 2 * m]))
    dtype = moves[0][0].dtype
    e = math.sqrt(torch.finfo(dtype if dtype.is_floating_point else torch.float32).eps) * (1 + theta) / math.sqrt(d2)
    if own is None:
        own = {id(p) for p in model.parameters()}
    mine = [(p, u) for p, u in moves if id(p) in own]
    out2 = _output_at(model, recorder, [(p, (e * u).to(p.dtype)) for p, u in mine], rng)
    jd = (out2.to(out.dtype) - out) / e
    curv = float(output_quadratic(loss, out, jd, reduction)) + l2 * d2
    alpha = min(1.0, slope / curv) if curv > 0 and math.isfinite(curv) else 1.0
    info = {"slope": slope, "curvature": curv, "alpha": alpha}
    if check and recorder.grad is not None:
        # the batch loss at the capped step theta + alpha d, against the loss at theta: a step that makes the loss
        # of the very batch it was computed on worse is cut to the minimum of the quadratic through L(theta), its
        # slope along the step and L(theta + alpha d) (which is then below alpha / 2)
        out3 = _output_at(model, recorder, [(p, (alpha * u).to(p.dtype)) for p, u in mine], rng)
        change = float(output_loss_change(loss, out, recorder.grad, out3, reduction))
        if l2:
            change += l2 * (alpha * sum(sums[n_slope + 2 * m:]) + 0.5 * alpha * alpha * d2)
        info["loss_change"] = change
        if not change <= 0:  # a rise, or not finite
            s_a = alpha * slope  # the slope along alpha d
            c_a = 2.0 * (change + s_a)
            alpha = alpha * s_a / c_a if math.isfinite(c_a) else 0.0
            info["alpha"] = alpha
    ref = moves[0][1]
    return torch.tensor(alpha, dtype=ref.dtype, device=ref.device), info
