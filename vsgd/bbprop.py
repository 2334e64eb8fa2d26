"""bbprop: per-sample diagonal Gauss-Newton curvature for users' ``nn.Sequential`` MLPs.

Paper 1 Sec. 4.3 and LeCun et al. (1998, "Efficient BackProp" Sec. 9.1). For a layer
a = W h + b followed by an activation h' = f(a), the curvature of the loss L with respect to the
pre-activations is propagated backwards like the gradient, with squared weights and squared
activation derivatives, keeping only the diagonal:

    d2L/da_out^2  = diag of the output loss's Hessian: p (1 - p) for softmax cross-entropy
                    (the diagonal of diag(p) - p p^T), 1 for 1/2 ||y - t||^2
    d2L/dW_ji^2  ~= d2L/da_j^2 h_i^2,     d2L/db_j^2 ~= d2L/da_j^2
    d2L/dh_i^2   ~= sum_j W_ji^2 d2L/da_j^2
    d2L/da_i^2   ~= f'(a_i)^2 d2L/dh_i^2          (tanh: (1 - h^2)^2; ReLU: 1[a > 0])

plus the L2 term's curvature lambda (``l2``) on every parameter the L2 term covers.

Where it equals the exact Gauss-Newton (GGN) diagonal: a single ``Linear`` layer, with MSE or with
cross-entropy (each weight W_ji reaches the loss through the one output y_j only); and, with MSE
(a diagonal output Hessian), a net with one hidden layer (a first-layer weight reaches the outputs
through its one hidden unit). Where it differs: with two or more hidden layers (it drops the cross
terms sum_{j != k} W_ji W_ki d2L/(da_j da_k) of the units a weight reaches) and with cross-entropy
behind a hidden layer (it drops the off-diagonal -p_j p_k of the softmax Hessian); the last layer is
always exact. The paper uses bbprop itself, so this is the faithful choice (tests/test_bbprop.py
checks both statements against torch.func).

This is the same math as the ensemble trainer's batched bbprop
(``experiments.mlp.EnsembleMLP.loss_and_grads(..., curvature=True)``), written here for torch's
``nn.Linear`` layout (weight ``[out, in]``) and a minibatch axis instead of the ensemble axis. The
formulas live in the four small functions below; the batch reduction of the weight curvature is one
matrix product, never a per-sample [B, out, in] tensor.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch
from torch import Tensor, nn

LOSSES = ("cross_entropy", "mse")
REDUCTIONS = ("mean", "sum")
ACTIVATIONS = (nn.Tanh, nn.ReLU)


def output_curvature(loss: str, out: Tensor) -> Tensor:
    """Per-sample diagonal of the loss's Hessian w.r.t. the network output ``out`` [B, n_out].

    ``cross_entropy`` is ``F.cross_entropy`` per sample; ``mse`` is ``F.mse_loss`` per sample,
    the mean over output dimensions of (y - t)^2, whose Hessian is 2 / n_out.
    """
    if loss == "cross_entropy":
        p = torch.softmax(out, dim=-1)
        return p * (1 - p)  # diagonal of diag(p) - p p^T
    if loss == "mse":
        return torch.full_like(out, 2.0 / out.shape[-1])
    raise ValueError(f"Unknown loss {loss!r}; bbprop knows {LOSSES}.")


def activation_curvature_factor(module: nn.Module, output: Tensor) -> Tensor:
    """f'(a)^2 from the activation's output: tanh (1 - h^2)^2, ReLU 1[h > 0]."""
    if isinstance(module, nn.Tanh):
        d = 1 - output * output
        return d * d
    if isinstance(module, nn.ReLU):
        return (output > 0).to(output.dtype)
    raise TypeError(f"bbprop supports activations {[a.__name__ for a in ACTIVATIONS]}, not {type(module).__name__}.")


def linear_bbprop(weight: Tensor, h_in: Tensor, d2a: Tensor, divisor: float) -> tuple[Tensor, Tensor, Tensor]:
    """One ``nn.Linear`` layer: (curvature of weight [out, in] and of bias [out], summed over the batch and
    divided by ``divisor`` (B for a mean, 1 for a sum); per-sample curvature of its input [B, in]).

    ``h_in`` [B, in] is the layer's input, ``d2a`` [B, out] the per-sample curvature at its output. The batch
    reduction is one matrix product, sum_b d2a_bj h_bi^2: the per-sample tensor [B, out, in] is never formed
    (at B = 256 and a 1024 x 1024 layer it was 1 GiB, benchmarks/optim_memory.py).
    """
    w_curv = (d2a.transpose(0, 1) @ (h_in * h_in)) / divisor  # d2L/dW_ji^2 ~ sum_b d2L/da_bj^2 h_bi^2
    b_curv = d2a.sum(dim=0) / divisor  # d2L/db_j^2 ~ sum_b d2L/da_bj^2
    return w_curv, b_curv, linear_input_curvature(weight, d2a)


def linear_input_curvature(weight: Tensor, d2a: Tensor) -> Tensor:
    """Per-sample curvature [B, in] at an ``nn.Linear`` layer's input from the one [B, out] at its output."""
    return d2a @ (weight * weight)  # d2L/dh_i^2 ~ sum_j W_ji^2 d2L/da_j^2


def check_sequential(model: nn.Module) -> None:
    """One clear error when ``model`` is not an ``nn.Sequential`` of Linear / Tanh / ReLU layers."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"bbprop needs an nn.Sequential of Linear, Tanh and ReLU layers, got {type(model).__name__}; "
                        "for other models pass curvature_fn=... to VSGD, or use VSGDfd (no model-specific code).")
    for m in model:
        if not isinstance(m, (nn.Linear, *ACTIVATIONS)):
            raise TypeError(f"bbprop supports nn.Linear, nn.Tanh and nn.ReLU layers; the model has {type(m).__name__}. "
                            "Pass curvature_fn=... to VSGD instead, or use VSGDfd.")


def bbprop_from_activations(model: nn.Sequential, inputs: Sequence[Tensor], loss: str, *, l2: float = 0.0,
                            reduction: str = "mean", only: Collection[Tensor] | None = None) -> dict[nn.Parameter, Tensor]:
    """Curvature of every parameter of ``model`` (or of those in ``only``) given the input of each of its modules.

    ``inputs[k]`` is the input [B, ...] to ``model[k]``; ``inputs[len(model)]`` the model's output.
    Per-sample curvatures are averaged over the batch (``reduction="mean"``, as ``F.cross_entropy``
    and ``F.mse_loss`` do) or summed (``"sum"``), then ``l2`` is added to every parameter. Layers none of
    whose parameters are in ``only`` (frozen ones) only pass the curvature on to the layer below.
    """
    wanted = None if only is None else {id(p) for p in only}
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}.")
    if inputs[0].dim() == 1:  # one unbatched sample
        inputs = [h.unsqueeze(0) for h in inputs]
    divisor = float(inputs[0].shape[0]) if reduction == "mean" else 1.0
    d2 = output_curvature(loss, inputs[-1])
    needed = [k for k, m in enumerate(model) if isinstance(m, nn.Linear)
              and (wanted is None or any(id(p) in wanted for p in m.parameters()))]
    out: dict[nn.Parameter, Tensor] = {}
    for k in reversed(range(needed[0] if needed else len(model), len(model))):  # nothing below the lowest needed layer
        m = model[k]
        if isinstance(m, nn.Linear):
            if k not in needed:
                d2 = linear_input_curvature(m.weight, d2)  # a frozen layer: pass the curvature on
                continue
            w_curv, b_curv, d2 = linear_bbprop(m.weight, inputs[k], d2, divisor)
            out[m.weight] = w_curv
            if m.bias is not None:
                out[m.bias] = b_curv
        else:
            d2 = d2 * activation_curvature_factor(m, inputs[k + 1])
    return {p: c + l2 for p, c in out.items()}


@torch.no_grad()
def bbprop(model: nn.Sequential, x: Tensor, loss: str, *, l2: float = 0.0, reduction: str = "mean") -> list[Tensor]:
    """bbprop curvature of ``model`` on the batch ``x``: one tensor per ``model.parameters()``."""
    check_sequential(model)
    inputs = [x]
    for m in model:
        inputs.append(m(inputs[-1]))
    curv = bbprop_from_activations(model, inputs, loss, l2=l2, reduction=reduction)
    return [curv[p] for p in model.parameters()]


class ActivationRecorder:
    """Records each module's input (and the model's output) on the forward passes of ``model`` that run
    with gradients enabled, so that bbprop can run after a user's closure without a second forward pass.

    Forward passes under ``torch.no_grad()`` / ``torch.inference_mode()`` (evaluation) are not recorded and
    cannot change the curvature. :meth:`curvature` uses the last recorded pass; ``forwards`` counts the
    recorded passes since :meth:`reset`: ``VSGD`` resets it before calling its closure and after each
    step, and refuses to guess when it is more than 1 (a second forward pass with gradients enabled between
    ``backward()`` and ``step()``, or gradient accumulation: which pass the gradient came from cannot be told).

    The hooks stay on the model until :meth:`remove` (``VSGD.close()``, or when the optimizer is garbage
    collected).
    """

    def __init__(self, model: nn.Sequential):
        check_sequential(model)
        self.model = model
        self.inputs: list[Tensor] | None = None
        self.forwards = 0
        self.paused = False  # True: forward passes are not recorded (VSGD's per-sample gradient pass)
        self._current: list[Tensor] = []
        self._handles = [m.register_forward_pre_hook(self._pre_hook(k)) for k, m in enumerate(model)]
        self._handles.append(model.register_forward_hook(self._done))

    def _pre_hook(self, k: int):
        def hook(module, args):
            if self.paused or not torch.is_grad_enabled():
                return
            if k == 0:
                self._current = []
            self._current.append(args[0].detach())

        return hook

    def _done(self, module, args, output):
        if self.paused or not torch.is_grad_enabled():
            return
        self.inputs = [*self._current, output.detach()]
        self._current = []
        self.forwards += 1

    def reset(self) -> None:
        """Forget the recorded pass (and its activations); count forward passes from 0."""
        self.inputs, self._current, self.forwards = None, [], 0

    def curvature(self, loss: str, *, l2: float = 0.0, reduction: str = "mean",
                  only: Collection[Tensor] | None = None) -> dict[nn.Parameter, Tensor]:
        if self.inputs is None:
            raise RuntimeError("no forward pass of the model was recorded: the closure must run the model "
                               "with gradients enabled (or call the model and backward() before optimizer.step()).")
        with torch.no_grad():
            return bbprop_from_activations(self.model, self.inputs, loss, l2=l2, reduction=reduction, only=only)

    def remove(self) -> None:
        """Take the hooks off the model (idempotent)."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self.reset()
