"""Diagonal Gauss-Newton curvature for any ``nn.Module`` whose output feeds cross-entropy or MSE.

vSGD needs a non-negative estimate of the diagonal curvature (paper 1 Sec. 4.3). bbprop
(:mod:`vsgd.bbprop`, the paper's own choice) covers ``nn.Sequential`` MLPs of Linear / Tanh / ReLU
only. The estimators here cover every layer autograd can differentiate (Conv, normalisation,
embeddings, recurrent and attention blocks), through the generalised Gauss-Newton (GGN) matrix

    G = J^T H J,   J = d out / d theta  (all outputs of the batch),  H = d^2 L / d out^2,

where L is the loss the closure returns (a mean or a sum over the batch) as a function of the model's
output ``out``. For both losses H is block-diagonal over output positions and positive semi-definite,
so diag(G) >= 0 and G is the curvature vSGD's rates assume (bbprop is Becker & LeCun's
diagonal approximation of the same G).

**The sampled-output estimator** (``gnb``; Sophia's "Gauss-Newton-Bartlett", Liu et al. 2023,
and the Monte-Carlo GGN of Martens 2012 / BackPACK's DiagGGN-MC). Draw a random vector u in output space
with E[u u^T] = H and backpropagate it: s = J^T u (one backward pass, no second forward). Then

    E[s * s] = diag(J^T E[u u^T] J) = diag(J^T H J) = diag(G)          (elementwise, unbiased)

Choices of u with E[u u^T] = H, N the number of output positions the loss averages over:

* cross-entropy (classes on the last axis, ``F.cross_entropy`` on ``out.reshape(-1, C)``): per
  position n, p_n = softmax(out_n), label y~_n drawn from p_n (the model's own predictive
  distribution), u_n = (p_n - e_{y~_n}) / sqrt(N) for a mean (/1 for a sum). E[e_y~] = p_n gives
  E[u_n u_n^T] = (diag(p_n) - p_n p_n^T) / N = H_n, and the draws are independent, so cross-position
  terms vanish. In Sophia's words: with g~ the gradient of the *mean* loss at the sampled labels
  (u_n = (p_n - e_{y~_n}) / B for one position per sample), B * g~ * g~ is unbiased for diag(G) of the
  mean loss: B g~^2 = B (J^T u')^2 with u' = u / sqrt(B).
* MSE (``F.mse_loss``, a mean over all N = out.numel() elements): H = 2/N I, and u = sqrt(2/N) z,
  z ~ N(0, I), has E[u u^T] = 2/N I (a sum: H = 2 I, u = sqrt(2) z). This is the gradient of the loss
  at targets t~ = out + sqrt(N/2) z drawn from the Gaussian the loss is the log-likelihood of.
* ``reduction="sum"`` (VSGD's and bbprop's convention): a sum over the batch of per-sample losses, each the
  mean over its own terms; N is then the number of terms per sample (1 for [B, C] logits).

**Per-sample squares** (``gnb_per_sample``): s_b = J_b^T u_b for each sample b separately
(``torch.func`` vmap), estimate sum_b s_b * s_b: E is again diag(G) (E[u_b] = 0 and independent
draws), without the zero-mean cross terms 2 s_b s_c that the batch estimator carries, so its variance
is lower; but it re-runs the forward pass per sample, and needs a model whose samples do not interact
(no BatchNorm in training mode).

**Hutchinson on the GGN** (``hutchinson_ggn``): v Rademacher over parameters, estimate v * J^T H J v
(forward-mode jvp for J v, then a vjp). Unbiased for diag(G) too, but not non-negative elementwise,
and it needs forward-mode AD, which PyTorch's fused attention kernels (flash / memory-efficient
``scaled_dot_product_attention``) do not provide (nor double backward, so Hutchinson on the Hessian
has the same limit). The sampled-output estimators need only first-order backward, which every
layer has.

:class:`SampledGaussNewton` is what ``VSGD(model=..., curvature="gnb")`` uses: it taps the model's
output on every forward pass with gradients enabled, and when the user's own ``backward()`` reaches
that output it backpropagates u through the same graph (``torch.autograd.grad`` with
``retain_graph=True``, inside the user's backward), so the closure's forward pass is reused, nothing is
written to ``.grad``, the global random state is not touched (draws come from a ``torch.Generator``
owned by the estimator, seeded, saved with the optimizer's ``state_dict``) and dropout masks are the
closure's own. :func:`exact_ggn_diagonal` (``torch.func.jacrev``) is the reference the tests and
``benchmarks/curvature_cost.py`` measure the estimators against.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import torch
from torch import Tensor, nn

from vsgd.bbprop import ACTIVATIONS, LOSSES, REDUCTIONS

CURVATURES = ("auto", "bbprop", "gnb")


def is_bbprop_model(model: nn.Module) -> bool:
    """True for an ``nn.Sequential`` of Linear / Tanh / ReLU layers (the paper's MLPs), where bbprop applies."""
    return isinstance(model, nn.Sequential) and len(model) > 0 and all(
        isinstance(m, (nn.Linear, *ACTIVATIONS)) for m in model)


def _positions(loss: str, out: Tensor, reduction: str) -> int:
    """N: the number of terms the loss averages over. "mean": all of them (``F.cross_entropy`` / ``F.mse_loss``
    defaults); "sum": a sum over the batch (first axis) of per-sample losses, each the mean over its own terms
    (bbprop's convention, :func:`vsgd.bbprop.output_curvature`; for [B, C] logits the per-sample sum)."""
    terms = out.numel() // out.shape[-1] if loss == "cross_entropy" else out.numel()
    return terms if reduction == "mean" else max(1, terms // out.shape[0])


def sample_output_gradient(loss: str, out: Tensor, reduction: str = "mean",
                           generator: torch.Generator | None = None) -> Tensor:
    """A random u shaped like ``out`` with E[u u^T] = H, the loss's Hessian w.r.t. ``out`` (module docstring).

    ``cross_entropy``: classes on the last axis, labels drawn from softmax(out); ``mse``: a Gaussian.
    ``reduction`` "mean" (``F.cross_entropy`` / ``F.mse_loss`` defaults) or "sum".
    """
    if loss not in LOSSES:
        raise ValueError(f"Unknown loss {loss!r}; the curvature estimators know {LOSSES}.")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}.")
    out = out.detach()
    scale = 1.0 / math.sqrt(_positions(loss, out, reduction))
    if loss == "cross_entropy":
        work = out.float() if out.dtype in (torch.float16, torch.bfloat16) else out
        p = torch.softmax(work.reshape(-1, out.shape[-1]), dim=-1)
        drawn = torch.multinomial(p, 1, generator=generator)  # y~ ~ p, one per position
        u = p.scatter_add(1, drawn, torch.full_like(p[:, :1], -1.0))  # p - e_y~
        return (u * scale).reshape(out.shape).to(out.dtype)
    z = torch.randn(out.shape, dtype=out.dtype, device=out.device, generator=generator)
    return z * (math.sqrt(2.0) * scale)  # E[u u^T] = 2/N I


def output_quadratic(loss: str, out: Tensor, v: Tensor, reduction: str = "mean") -> Tensor:
    """v^T H v for the loss's Hessian H w.r.t. ``out`` at ``out`` (the matrix :func:`sample_output_gradient` draws
    from), for a direction v shaped like ``out``: with v = J d it is d^T G d, the Gauss-Newton curvature along d.
    Cross-entropy: per position sum_c p_c v_c^2 - (sum_c p_c v_c)^2, p = softmax(out); MSE: 2 sum v^2; each
    divided by N, the terms the loss averages over (:func:`_positions`)."""
    n = _positions(loss, out, reduction)
    if loss == "cross_entropy":
        work = out.detach().float() if out.dtype in (torch.float16, torch.bfloat16) else out.detach()
        p = torch.softmax(work.reshape(-1, out.shape[-1]), dim=-1)
        w = v.reshape(-1, out.shape[-1]).to(p.dtype)
        return ((w * w * p).sum() - ((w * p).sum(-1) ** 2).sum()) / n
    return 2.0 * (v * v).sum() / n


def output_loss_change(loss: str, out: Tensor, grad: Tensor, new: Tensor, reduction: str = "mean") -> Tensor:
    """L(new) - L(out) on the batch of ``out``, for the loss whose gradient w.r.t. the output at ``out`` is ``grad``
    (captured in the closure's backward). The targets are those that gradient implies, so no labels are needed:
    cross-entropy, dL/dout_n = (p_n - q_n) / N gives the target distribution q = p - N grad (one-hot labels, or
    smoothed ones), and L(new) - L(out) = -sum_n q_n . (log_softmax(new_n) - log_softmax(out_n)) / N; MSE,
    dL/dout = 2 (out - t) / N gives L(new) - L(out) = sum (new - out)^2 / N + sum (new - out) grad. N: the terms
    the loss averages over (:func:`_positions`)."""
    n = _positions(loss, out, reduction)
    if loss == "cross_entropy":
        work = out.detach().float() if out.dtype in (torch.float16, torch.bfloat16) else out.detach()
        c = out.shape[-1]
        logp = torch.log_softmax(work.reshape(-1, c), dim=-1)
        q = logp.exp() - n * grad.detach().reshape(-1, c).to(logp.dtype)
        new_logp = torch.log_softmax(new.detach().reshape(-1, c).to(logp.dtype), dim=-1)
        return -(q * (new_logp - logp)).sum() / n
    delta = new.detach().to(out.dtype) - out.detach()
    return (delta * delta).sum() / n + (delta * grad.detach().to(delta.dtype)).sum()


def _squared_backprop(out: Tensor, params: list[Tensor], u: Tensor, retain_graph: bool) -> list[Tensor | None]:
    """(J^T u)^2 for each parameter: one backward pass from ``out`` along u; None where out does not depend on it."""
    with torch.enable_grad():
        grads = torch.autograd.grad(out, params, u, retain_graph=retain_graph, allow_unused=True)
    return [None if g is None else g * g for g in grads]


# -- the optimizer's estimator: taps the model's output, runs inside the user's backward ---------------
class _Tap(torch.autograd.Function):
    """Identity on the model's output; its backward backpropagates the estimator's u from the output first."""

    @staticmethod
    def forward(ctx, out, estimator):
        ctx.save_for_backward(out)
        ctx.estimator = estimator
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        ctx.estimator._estimate(out)
        return grad, None


class SampledGaussNewton:
    """Sampled-output Gauss-Newton diagonal (``gnb``) for any ``model``, from the forward pass of the loss.

    A forward hook wraps the model's output (a tensor: the logits, or the prediction for MSE) in an
    identity autograd node. When a backward pass reaches it (the user's ``loss.backward()``), the node
    first backpropagates u (:func:`sample_output_gradient`) through the same graph with
    ``torch.autograd.grad(retain_graph=True)``, keeping (J^T u)^2 per parameter, then passes the user's
    gradient on unchanged. Forward passes without gradients, and those never backpropagated, cost nothing.

    ``backwards`` counts the estimates since :meth:`reset` (``VSGD`` refuses to guess when it is > 1:
    gradient accumulation over several backward passes). ``paused`` turns the hook off (per-sample
    gradient passes of ``torch.func``). The hooks stay until :meth:`remove`.
    """

    def __init__(self, model: nn.Module, loss: str, *, reduction: str = "mean", seed: int = 0):
        if loss not in LOSSES:
            raise ValueError(f"Invalid loss {loss!r}: one of {LOSSES}.")
        self.model, self.loss, self.reduction, self.seed = model, loss, reduction, int(seed)
        self.generators: dict[str, torch.Generator] = {}
        self._pending: dict[str, Tensor] = {}
        self.estimate: dict[Tensor, Tensor] | None = None
        self.backwards = 0
        self.paused = False
        self._handles = [model.register_forward_hook(self._forward_hook)]

    def generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self.generators:
            gen = torch.Generator(device=device)
            gen.manual_seed(self.seed)
            if key in self._pending:
                gen.set_state(self._pending.pop(key))
            self.generators[key] = gen
        return self.generators[key]

    def get_state(self) -> dict:
        return {"seed": self.seed, "generators": {k: g.get_state() for k, g in self.generators.items()} | self._pending}

    def set_state(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self.generators, self._pending = {}, dict(state["generators"])

    def _forward_hook(self, module, args, out):
        if self.paused or not torch.is_grad_enabled():
            return None
        if not isinstance(out, Tensor):
            raise TypeError(f"VSGD(model=..., curvature='gnb') needs a model whose output is one tensor (the "
                            f"{'logits' if self.loss == 'cross_entropy' else 'prediction'} fed to the loss); "
                            f"{type(module).__name__} returned {type(out).__name__}. Wrap it in a module that returns "
                            "the tensor the loss uses.")
        if not out.requires_grad:
            return None
        return _Tap.apply(out, self)

    def _estimate(self, out: Tensor) -> None:
        params = [p for p in self.model.parameters() if p.requires_grad]
        u = sample_output_gradient(self.loss, out, self.reduction, self.generator(out.device))
        squares = _squared_backprop(out, params, u, retain_graph=True)
        self.estimate = {p: s for p, s in zip(params, squares) if s is not None}
        self.backwards += 1

    def reset(self) -> None:
        self.estimate, self.backwards = None, 0

    def curvature(self, *, l2: float = 0.0, only: Collection[Tensor] | None = None) -> dict[Tensor, Tensor]:
        if self.estimate is None:
            raise RuntimeError("no backward pass through the model's output was seen since the last step: the "
                               "closure must run the model with gradients enabled and call backward() on the loss "
                               "(or call the model and backward() before optimizer.step()).")
        wanted = None if only is None else {id(p) for p in only}
        return {p: c + l2 if l2 else c for p, c in self.estimate.items() if wanted is None or id(p) in wanted}

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self.reset()


# -- stand-alone estimators on a batch (tests, benchmarks/curvature_cost.py) ----------------------------
def _named(model: nn.Module) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}  # clones: BatchNorm's updates stay here
    return params, buffers


def gnb(model: nn.Module, x: Tensor, loss: str, *, reduction: str = "mean",
        generator: torch.Generator | None = None) -> list[Tensor]:
    """One sampled-output estimate (J^T u)^2 of diag(G) on the batch ``x``, per ``model.parameters()`` that
    require grad (zeros where the output does not depend on one). A forward and one backward pass."""
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.enable_grad():
        out = model(x)
    squares = _squared_backprop(out, params, sample_output_gradient(loss, out, reduction, generator), False)
    return [torch.zeros_like(p) if s is None else s for p, s in zip(params, squares)]


def gnb_per_sample(model: nn.Module, x: Tensor, loss: str, *, reduction: str = "mean",
                   generator: torch.Generator | None = None) -> list[Tensor]:
    """sum_b (J_b^T u_b)^2 with per-sample backward passes (``torch.func.vmap``): unbiased for diag(G), lower
    variance than :func:`gnb`. Samples must not interact (no BatchNorm in training mode)."""
    from torch.func import functional_call, grad, vmap

    params, buffers = _named(model)
    with torch.no_grad():
        out = functional_call(model, (params, buffers), (x,))
    u = sample_output_gradient(loss, out, reduction, generator)

    def along(ps, xb, ub):
        return (functional_call(model, (ps, buffers), (xb.unsqueeze(0),)) * ub.unsqueeze(0)).sum()

    per = vmap(grad(along), in_dims=(None, 0, 0), randomness="same")(params, x, u)
    return [(per[n] * per[n]).sum(dim=0) for n in params]


def _output_hessian_product(loss: str, out: Tensor, v: Tensor, reduction: str) -> Tensor:
    """H v for the loss's exact output Hessian (block-diagonal over positions)."""
    n = _positions(loss, out, reduction)
    if loss == "mse":
        return v * (2.0 / n)
    p = torch.softmax(out, dim=-1)
    return (p * v - p * (p * v).sum(dim=-1, keepdim=True)) / n  # (diag(p) - p p^T) v / N


def hutchinson_ggn(model: nn.Module, x: Tensor, loss: str, *, reduction: str = "mean",
                   generator: torch.Generator | None = None) -> list[Tensor]:
    """v * (J^T H J v), v Rademacher over the parameters (``torch.func`` jvp + vjp): unbiased for diag(G), not
    non-negative elementwise. Needs forward-mode AD (not available for fused attention kernels)."""
    from torch.func import functional_call, jvp, vjp

    params, buffers = _named(model)
    v = {n: torch.randint(0, 2, p.shape, generator=generator, device=p.device).to(p.dtype) * 2 - 1
         for n, p in params.items()}
    f = lambda ps: functional_call(model, (ps, {k: b.clone() for k, b in buffers.items()}), (x,))
    out, jv = jvp(f, (params,), (v,))
    _, pullback = vjp(f, params)
    (jthjv,) = pullback(_output_hessian_product(loss, out.detach(), jv, reduction))
    return [v[n] * jthjv[n] for n in params]


def exact_ggn_diagonal(model: nn.Module, x: Tensor, loss: str, *, reduction: str = "mean") -> list[Tensor]:
    """The exact diag(J^T H J) (``torch.func.jacrev``: the full Jacobian of every output w.r.t. every parameter),
    per ``model.parameters()`` that require grad. The reference for the estimators; small models only."""
    from torch.func import functional_call, jacrev

    params, buffers = _named(model)
    f = lambda ps: functional_call(model, (ps, {k: b.clone() for k, b in buffers.items()}), (x,))
    with torch.no_grad():
        out = f(params)
    jac = jacrev(f)(params)  # name -> [*out.shape, *param.shape]
    n = _positions(loss, out, reduction)
    diags = []
    for name, p in params.items():
        if loss == "mse":
            J = jac[name].reshape(out.numel(), -1)
            diags.append(((2.0 / n) * (J * J).sum(dim=0)).reshape(p.shape))
            continue
        C = out.shape[-1]
        J = jac[name].reshape(-1, C, p.numel())  # [positions, classes, P]
        prob = torch.softmax(out.reshape(-1, C), dim=-1).unsqueeze(-1)
        # diag(J_n^T (diag(p) - p p^T) J_n) = sum_c p_c J_c^2 - (sum_c p_c J_c)^2, per position n
        d = (prob * J * J).sum(dim=1) - (prob * J).sum(dim=1) ** 2
        diags.append((d.sum(dim=0) / n).reshape(p.shape))
    return diags


ESTIMATORS = {"gnb": gnb, "gnb_per_sample": gnb_per_sample, "hutchinson_ggn": hutchinson_ggn}
