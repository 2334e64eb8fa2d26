"""``vsgd.VSGDfd``: vSGD-fd (paper 2, Algorithm 1) as a ``torch.optim.Optimizer`` for any PyTorch model.

Two ways to call ``step``:

* ``opt.step(closure)`` with the usual closure (zero grads, loss on the current samples, backward,
  return the loss). The optimizer calls it twice per step (the second time at parameters shifted by
  g_bar, for the finite-difference curvature, eq. 6). Nothing else about the model is needed. The
  minibatch gradient is then treated as one sample (n = 1 in eq. 3): its statistics are those of
  minibatch means, which gives the same optimal rate as eq. 3 in the idealised case
  (g^2 / (g^2 + sigma^2 / n)).
* ``opt.step(vsgd.PerSampleClosure(model, loss_fn, inputs, targets))``: minibatch-aware (eq. 3, and
  eq. 4 / eq. 5 when asked): per-sample gradients by ``torch.func`` (``vmap(grad(...))`` over
  ``functional_call``), at theta and at theta + delta. Any ``nn.Module`` whose output for one sample
  does not depend on the other samples of the batch (so: no BatchNorm in training mode).

Example::

    opt = vsgd.VSGDfd(model.parameters())            # no learning rate
    for x, y in loader:
        opt.step(vsgd.PerSampleClosure(model, F.cross_entropy, x, y))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from vsgd.fd import RULE, SPARSE_MODES, orthogonal_reweighting
from vsgd.frontend import RuleOptimizer, _rng_state, _set_rng_state, state_dtype
from vsgd.vsgd import check_n0


class PerSampleClosure:
    """A closure that can also give per-sample gradients (``torch.func``), for minibatch-aware vSGD-fd.

    Called with no argument it behaves like the usual closure (zero grads, mean loss, backward,
    return loss). :meth:`per_sample_grads` returns the mean loss and ``{param: [n, *shape]}``, the
    gradient of each sample's loss, optionally at parameters shifted by ``shifts`` ({param: shift}).

    ``loss_fn(outputs, targets)`` must return the mean loss of its batch (as ``F.cross_entropy`` does
    by default); it is called on batches of one sample for the per-sample gradients.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], inputs: Tensor, targets: Tensor):
        if inputs.shape[0] != targets.shape[0]:
            raise ValueError(f"inputs and targets must have the same batch size; got {inputs.shape[0]} and {targets.shape[0]}")
        self.model, self.loss_fn, self.inputs, self.targets = model, loss_fn, inputs, targets
        self.batch_size = int(inputs.shape[0])

    def __call__(self) -> Tensor:
        self.model.zero_grad(set_to_none=False)
        loss = self.loss_fn(self.model(self.inputs), self.targets)
        loss.backward()
        return loss

    def per_sample_grads(self, shifts: dict[Tensor, Tensor] | None = None) -> tuple[Tensor, dict[Tensor, Tensor]]:
        from torch.func import functional_call, grad_and_value, vmap

        names = {p: name for name, p in self.model.named_parameters() if p.requires_grad}
        params = {name: p.detach() for p, name in names.items()}
        if shifts:
            for p, s in shifts.items():
                params[names[p]] = params[names[p]] + s
        buffers = {name: b.detach() for name, b in self.model.named_buffers()}

        def sample_loss(ps, x, y):
            out = functional_call(self.model, (ps, buffers), (x.unsqueeze(0),))
            return self.loss_fn(out, y.unsqueeze(0))

        with torch.enable_grad():
            grads, losses = vmap(grad_and_value(sample_loss), in_dims=(None, 0, 0))(params, self.inputs, self.targets)
        return losses.mean().detach(), {p: grads[name] for p, name in names.items()}


class VSGDfd(RuleOptimizer):
    """vSGD-fd: tuning-free SGD with finite-difference curvature (paper 2, Algorithm 1); see :mod:`vsgd.fd`.

    Args:
        params: parameters or param groups (each group is one independent application of the rule).
        lr: a multiplier >= 0 on the rates (default 1.0: exactly the rule's rates); each param group has
            its own ``group["lr"]``, which learning-rate schedulers change.
        n0: bootstrap samples before the first update (an int >= 1; 10, Sec. 5.4).
        slow_start: C, v_bar is multiplied by C after the bootstrap (2).
        slow_start_curvature: also divide 1/h by C after the bootstrap (True).
        tau0: memory size at the first update (0: bootstrap minibatches + 1, continuing their mean).
        outlier_sigma: outlier threshold in standard deviations (2, Sec. 5.3); 0 turns detection off.
        eps: guards the 0/0 divisions (1e-5, Sec. 5.4).
        fd_sign: +1: FD pair (theta, theta + g_bar) as eq. 6; -1: (theta, theta - g_bar). Nothing else.
        fd_step: 0: delta = g_bar (eq. 6); 1: delta = eta g_bar (the last update's length). Nothing else.
        sparse: "none" (eq. 3), "minibatch" (eq. 4, current non-zero counts) or "average"
            (eq. 4 with the long-term average non-zero fraction). Needs a :class:`PerSampleClosure`
            to count per-sample non-zeros for n > 1.
        reweight: None or "orthogonal" (eq. 5; O(n^2 d) per step; needs a :class:`PerSampleClosure`).

    The closure is evaluated twice per step whatever the number of param groups: at theta, then once at
    theta + delta for all groups, with the random state of the first evaluation restored (the same dropout
    masks; CPU and CUDA generators, not user-made ``torch.Generator`` objects), and the parameters restored
    bit for bit afterwards. State is allocated for a parameter when it first has a gradient; float16 and
    bfloat16 parameters keep float32 state. Sparse gradients are refused.

    There is no learning rate to tune: ``learning_rates()`` shows the ones it chose (times ``lr``).
    """

    lr_multiplier = True
    strict_closure = True

    def __init__(self, params, *, lr: float = 1.0, n0: int = 10, slow_start: float = 2.0,
                 slow_start_curvature: bool = True, tau0: float = 0.0, outlier_sigma: float = 2.0, eps: float = 1e-5,
                 fd_sign: float = 1.0, fd_step: float = 0.0, sparse: str = "none", reweight: str | None = None):
        check_n0(n0)
        if sparse not in SPARSE_MODES:
            raise ValueError(f"Invalid sparse={sparse!r}: use one of {sorted(SPARSE_MODES)} (eq. 3, eq. 4, eq. 4 with averages).")
        if reweight not in (None, "orthogonal"):
            raise ValueError(f"Invalid reweight={reweight!r}: use None or 'orthogonal' (eq. 5).")
        self.reweight = reweight
        super().__init__(params, RULE, lr=lr, n0=n0, slow_start=slow_start,
                         slow_start_curvature=float(slow_start_curvature), tau0=tau0, outlier_sigma=outlier_sigma,
                         eps=eps, fd_sign=fd_sign, fd_step=fd_step, sparse=SPARSE_MODES[sparse])
        self._batch: tuple[int, dict[Tensor, Tensor], PerSampleClosure] | None = None

    def state_dict(self) -> dict[str, Any]:
        out = super().state_dict()
        out["reweight"] = self.reweight
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        self.reweight = state_dict.pop("reweight", self.reweight)
        super().load_state_dict(state_dict)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        if closure is None:
            raise RuntimeError("VSGDfd.step needs a closure (zero grads, recompute the loss on the current samples, "
                               "backward, return the loss), or a vsgd.PerSampleClosure: it evaluates gradients twice per step.")
        if not hasattr(closure, "per_sample_grads"):
            if self.reweight is not None:
                raise RuntimeError("reweight='orthogonal' needs per-sample gradients: pass a vsgd.PerSampleClosure to step().")
            return super().step(closure)
        rng = _rng_state()
        loss, per_sample = closure.per_sample_grads()
        for group in self.param_groups:
            for p in group["params"]:
                if p in per_sample:
                    p.grad = per_sample[p].mean(dim=0)
        self._batch = (closure.batch_size, per_sample, closure)
        try:
            self._step(closure, first=(loss, rng))
        finally:
            self._batch = None
        return loss

    def _grads_at(self, shifts: dict[Tensor, Tensor], closure: Callable, rng) -> dict[Tensor, Tensor]:
        if self._batch is None:
            return super()._grads_at(shifts, closure, rng)
        # per-sample gradients at the shifted parameters ([n, *shape] each), functionally: nothing is modified
        after_first = _rng_state()
        try:
            _set_rng_state(rng)
            _, shifted = self._batch[2].per_sample_grads({p: s.squeeze(0).to(p.dtype) for p, s in shifts.items()})
        finally:
            _set_rng_state(after_first)
        return {p: shifted[p].to(state_dtype(p)) for p in shifts}

    def _extras(self, group: dict, params: list[Tensor], closure: Callable | None) -> dict[str, Any]:
        extras = super()._extras(group, params, closure)
        if self._batch is None:  # the minibatch gradient as one sample (n = 1)
            grads = [self._grad_view(p) for p in params]
            extras["sq_grad_mean"] = [g * g for g in grads]
            extras["nonzero_count"] = [(g != 0).to(g.dtype) for g in grads]
            return extras
        n, per_sample, _ = self._batch
        psg = [per_sample[p].to(state_dtype(p)) for p in params]  # [n, *shape]
        extras["batch_size"] = n
        extras["sq_grad_mean"] = [(g * g).mean(dim=0).unsqueeze(0) for g in psg]
        extras["nonzero_count"] = [(g != 0).sum(dim=0).to(g.dtype).unsqueeze(0) for g in psg]
        shifted_eval = self._shifted_eval

        def fd_per_sample(shifts: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
            shifted = shifted_eval(params, shifts)  # one evaluation for all groups (frontend._ShiftedEvaluation)
            diffs = [g - s for g, s in zip(psg, shifted)]
            return [d.abs().mean(dim=0).unsqueeze(0) for d in diffs], [(d * d).mean(dim=0).unsqueeze(0) for d in diffs]

        extras["fd_per_sample"] = fd_per_sample
        extras["grad_at"] = lambda shifts: [s.mean(dim=0).unsqueeze(0) for s in shifted_eval(params, shifts)]
        if self.reweight == "orthogonal":
            direction, n_eff = orthogonal_reweighting([g.unsqueeze(0) for g in psg])
            extras["reweighted"] = (direction, n_eff)
        return extras
