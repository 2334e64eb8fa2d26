"""The ``torch.optim.Optimizer`` front-end: any :class:`~vsgd.core.Rule` on a user's own model.

The front-end gives the rule K = 1 views of the parameters (``p.unsqueeze(0)``), so the very same
formula that trains an ensemble of 476 members in the benchmark trainer steps a user's model.

What the front-end adds around the rule (none of it changes a rule's arithmetic):

* **Lazy state.** A parameter gets its state the first time it has a gradient; one that never does
  (frozen, unused) never gets any (``rule.init`` per parameter depends only on that parameter).
* **Half precision.** float16 / bfloat16 parameters are handed to the rule as float32 copies, and their
  state is float32: the rules' epsilons (1e-16) underflow in float16, and a bfloat16 ``tau`` stops
  growing at 256 (256 + 1 rounds to 256). The update is added to the parameter in its own dtype.
* **One shifted evaluation per step** for rules that need ``grad_at`` (finite differences, paper 2
  eq. 6), whatever the number of param groups: every group's update is first run until it asks for its
  shifts (the rule computes them from its state alone), then all groups are shifted at once, the closure
  runs once with the random state of the first evaluation (same dropout masks), the parameters are
  restored bit for bit (a saved copy, not ``(theta + delta) - delta``), and only then does any group move.
* **Library conventions** (``lr_multiplier`` / ``strict_closure``, on for ``VSGD`` and ``VSGDfd``): an
  ``lr`` entry in every param group, a multiplier on the rates the rule sets itself (1.0, the default,
  applies the rule's update unchanged: no multiplication is done); a closure must return the loss and
  call ``backward()``.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from vsgd.core import Rule

_GROUP_PREFIX = "group."  # pooled (per-group) state lives on the group's first parameter under this prefix
HALF_DTYPES = (torch.float16, torch.bfloat16)


def state_dtype(p: Tensor) -> torch.dtype:
    """The dtype the rule computes and keeps state in for parameter ``p``: float32 for half precision."""
    return torch.float32 if p.dtype in HALF_DTYPES else p.dtype


def check_lr(lr: Any) -> float:
    """``lr`` is a multiplier >= 0 on the optimizer's own rates (1.0 = the rates as estimated)."""
    try:
        value = float(lr)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(lr, bool) or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"Invalid lr={lr!r}: a finite multiplier >= 0 on the learning rates the optimizer sets "
                         "itself (1.0, the default, uses them as estimated).")
    return value


def _rng_state() -> tuple[Tensor, list[Tensor] | None]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[Tensor, list[Tensor] | None]) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


class _ShiftRequest(Exception):
    """Raised by ``grad_at`` while the step collects every group's shifts (no evaluation has run yet)."""


class _ShiftedEvaluation:
    """The step's evaluation at shifted parameters: one closure call for all param groups.

    First pass: ``__call__`` records a group's shifts and raises :class:`_ShiftRequest`. Then
    :meth:`evaluate` runs the closure once at all shifts. Second pass: ``__call__`` returns the results.
    """

    def __init__(self, opt: RuleOptimizer, closure: Callable | None, rng):
        self.opt, self.closure, self.rng = opt, closure, rng
        self.requests: dict[Tensor, tuple[list[Tensor], list[Tensor]]] = {}
        self.result: dict[Tensor, Tensor] | None = None

    def __call__(self, params: list[Tensor], shifts: list[Tensor]) -> list[Tensor]:
        if self.closure is None:
            raise RuntimeError(f"{type(self.opt).__name__}.step needs a closure (zero grads, recompute the loss on the "
                               "current samples, backward, return the loss): it evaluates the gradient twice per step.")
        if self.result is None:
            self.requests[params[0]] = (params, shifts)
            raise _ShiftRequest
        asked = self.requests.get(params[0])
        if asked is None or any(not torch.equal(a, b) for a, b in zip(asked[1], shifts)):
            # not what the first pass asked (a rule asking twice): evaluate these shifts on their own
            res = self.opt._grads_at(dict(zip(params, shifts)), self.closure, self.rng)
            return [res[p] for p in params]
        return [self.result[p] for p in params]

    def evaluate(self) -> None:
        shifts = {p: s for params, ss in self.requests.values() for p, s in zip(params, ss)}
        self.result = self.opt._grads_at(shifts, self.closure, self.rng)


class RuleOptimizer(torch.optim.Optimizer):
    """Wraps an update rule as a ``torch.optim.Optimizer``.

    Each param group is one independent application of the rule (its pooled statistics, e.g. the
    global ``l_bar`` of vSGD-g, are pooled within the group). Parameters whose ``grad`` is ``None``
    are left untouched, their statistics are not updated, and no state is allocated for them until
    they first get a gradient.

    Subclasses provide extras the rule needs by overriding :meth:`_extras`. The base class provides
    the model-free ones: ``grad_at`` (re-evaluates the closure at shifted parameters, once per step for
    all groups) and ``batch_size`` (1, unless the subclass knows better).
    """

    rule: Rule
    lr_multiplier: bool = False  # an ``lr`` entry in every group, multiplying the rule's update (1.0: unchanged)
    strict_closure: bool = False  # the closure must return the loss and call backward()
    replay_rng: bool = False  # keep the random state before the closure's forward pass for _step_scale

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], rule: Rule, **hyperparams: Any) -> None:
        self.rule = rule
        self._hint = type(self).__name__ + "(..., {name}={value})"  # error messages spell the Python keyword
        self._keys: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        self._shifted_eval: _ShiftedEvaluation | None = None
        lr = hyperparams.pop("lr", 1.0) if self.lr_multiplier else None
        defaults: dict[str, Any] = rule.check_hp(hyperparams, hint=self._hint)
        if self.lr_multiplier:
            defaults["lr"] = check_lr(lr)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """As ``torch.optim``; the group's own hyper-parameters (and ``lr``) are validated first."""
        merged = {**self.defaults, **param_group}
        self.rule.check_hp({k: merged[k] for k in self.rule.hyperparams}, hint=self._hint)
        if self.lr_multiplier:
            param_group = {**param_group, "lr": check_lr(merged["lr"])}
        super().add_param_group(param_group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        # torch.optim casts floating state to the parameter's dtype: half-precision parameters keep float32 state
        saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        for pid, p in zip(saved_ids, params):
            if p.dtype in HALF_DTYPES and pid in state_dict["state"]:
                for key, value in state_dict["state"][pid].items():
                    if isinstance(value, Tensor) and value.is_floating_point():
                        self.state[p][key] = value.to(device=p.device, dtype=torch.float32, copy=True)

    # -- state layout -------------------------------------------------------------------------
    def _view(self, p: Tensor) -> Tensor:
        """The K = 1 view the rule sees: the parameter itself, or a float32 copy of a half-precision one."""
        x = p.detach()
        return (x.float() if p.dtype in HALF_DTYPES else x).unsqueeze(0)

    def _grad_view(self, p: Tensor) -> Tensor:
        g = p.grad
        return (g.float() if g.dtype in HALF_DTYPES else g).unsqueeze(0)

    def _hp(self, group: dict, like: Tensor) -> dict[str, Tensor]:
        dtype = like.dtype if like.is_floating_point() else torch.get_default_dtype()
        return {k: torch.tensor([float(group[k])], dtype=dtype, device=like.device) for k in self.rule.hyperparams}

    def _layout(self, group: dict, like: Tensor) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(per-parameter state keys, pooled state keys) of the rule, from one tiny ``init``."""
        if self._keys is None:
            probe = self.rule.init([like.new_zeros(1, 1)], self._hp(group, like))
            per = tuple(k for k, v in probe.items() if isinstance(v, (list, tuple)))
            self._keys = per, tuple(k for k in probe if k not in per)
        return self._keys

    def _ensure_state(self, group: dict, params: list[Tensor], views: list[Tensor]) -> None:
        """Allocate the rule's state for those of ``params`` (parameters with a gradient) that have none yet."""
        per_keys, pooled_keys = self._layout(group, views[0])
        first = group["params"][0]
        group_new = bool(pooled_keys) and (_GROUP_PREFIX + pooled_keys[0]) not in self.state.get(first, {})
        new = [i for i, p in enumerate(params) if per_keys and per_keys[0] not in self.state.get(p, {})]
        if not new and not group_new:
            return
        init = self.rule.init([views[i] for i in new] or views, self._hp(group, views[0]))
        for key in per_keys:
            for i, v in zip(new, init[key]):
                self.state[params[i]][key] = v
        if group_new:
            for key in pooled_keys:
                self.state[first][_GROUP_PREFIX + key] = init[key]

    def _gather(self, group: dict, params: list[Tensor]) -> dict[str, Any]:
        per_keys, pooled_keys = self._keys
        out: dict[str, Any] = {k: [self.state[p][k] for p in params] for k in per_keys}
        if pooled_keys:
            first = self.state[group["params"][0]]
            out.update({k: first[_GROUP_PREFIX + k] for k in pooled_keys})
        return out

    def _scatter(self, group: dict, params: list[Tensor], state: dict[str, Any]) -> None:
        for key, value in state.items():
            if isinstance(value, (list, tuple)):
                for p, v in zip(params, value):
                    self.state[p][key] = v
            else:
                self.state[group["params"][0]][_GROUP_PREFIX + key] = value

    def _check_grads(self, gi: int, group: dict, params: list[Tensor]) -> None:
        for p in params:
            if p.grad.is_sparse:
                names = group.get("param_names")
                idx = next(i for i, q in enumerate(group["params"]) if q is p)
                what = repr(names[idx]) if names else f"#{idx}"
                raise RuntimeError(
                    f"{type(self).__name__} does not support sparse gradients: parameter {what} (shape "
                    f"{list(p.shape)}) of param group {gi} has a sparse .grad, e.g. from nn.Embedding(sparse=True). "
                    "Create the module with sparse=False (the default), or train that parameter with "
                    "torch.optim.SparseAdam in a second optimizer.")

    # -- closures -----------------------------------------------------------------------------
    def _call_closure(self, closure: Callable) -> Any:
        """Run the closure with gradients enabled; with ``strict_closure``, check it returned the loss and
        that some parameter's ``.grad`` changed (it called ``backward()``)."""
        watched = []
        if self.strict_closure:
            for group in self.param_groups:
                for p in group["params"]:
                    g = p.grad
                    watched.append((p, None if g is None else weakref.ref(g), -1 if g is None else g._version))
        with torch.enable_grad():
            loss = closure()
        if self.strict_closure:
            name = type(self).__name__
            if loss is None:
                raise TypeError(f"{name}.step: the closure returned None. It must return the loss: zero the grads, "
                                "compute the loss, call loss.backward(), return loss.")
            changed = any(p.grad is not None and (ref is None or ref() is not p.grad or p.grad._version != v)
                          for p, ref, v in watched)
            if watched and not changed:
                raise RuntimeError(f"{name}.step: the closure did not call backward() (no parameter's .grad changed). "
                                   "It must zero the grads, compute the loss, call loss.backward() and return the loss.")
        return loss

    def _grads_at(self, shifts: dict[Tensor, Tensor], closure: Callable, rng) -> dict[Tensor, Tensor]:
        """Gradients at ``params + shifts`` on the closure's samples (``shifts`` carry the K = 1 axis), one
        closure call for all of them. The closure sees the random state of the step's first evaluation (the
        same dropout masks); afterwards the random state is where the first evaluation left it, and the
        parameters and every ``.grad`` are what they were, bit for bit."""
        everything = [p for g in self.param_groups for p in g["params"]]
        grads = [p.grad for p in everything]
        saved = [(p, p.detach().clone()) for p in shifts]  # restore by copy: (theta + delta) - delta != theta
        after_first = _rng_state()
        try:
            for p, s in shifts.items():
                p.add_(s.squeeze(0))
            for p in everything:
                p.grad = None  # the closure's backward fills fresh tensors; the step's gradients stay intact
            if rng is not None:
                _set_rng_state(rng)
            self._call_closure(closure)
            out = {}
            for p in shifts:
                g = p.grad if p.grad is not None else torch.zeros_like(p)
                out[p] = g.detach().to(state_dtype(p)).unsqueeze(0)
        finally:
            for p, x in saved:
                p.copy_(x)
            for p, g in zip(everything, grads):
                p.grad = g
            _set_rng_state(after_first)
        return out

    # -- extras -------------------------------------------------------------------------------
    def _extras(self, group: dict, params: list[Tensor], closure: Callable | None) -> dict[str, Any]:
        extras: dict[str, Any] = {"batch_size": 1}
        if "grad_at" in self.rule.extras:
            if closure is None:
                raise RuntimeError(
                    f"{type(self).__name__}.step needs a closure (zero grads, recompute the loss on the "
                    "current samples, backward, return the loss): it evaluates the gradient twice per step."
                )
            shifted = self._shifted_eval
            extras["grad_at"] = lambda shifts: shifted(params, shifts)
        return extras

    # -- step ---------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        return self._step(closure)

    def _step(self, closure: Callable | None, *, first: tuple[Any, Any] | None = None) -> Any:
        """One step. ``first``: (loss, random state before it) when the caller already made the first evaluation."""
        shift = "grad_at" in self.rule.extras
        loss, rng = first if first is not None else (None, None)
        if first is None and closure is not None:
            rng = _rng_state() if shift or self.replay_rng else None
            loss = self._call_closure(closure)
        self._shifted_eval = _ShiftedEvaluation(self, closure, rng)
        try:
            jobs = []
            for gi, group in enumerate(self.param_groups):
                params = [p for p in group["params"] if p.grad is not None]
                if not params:
                    continue
                self._check_grads(gi, group, params)
                views = [self._view(p) for p in params]
                self._ensure_state(group, params, views)
                extras = self._extras(group, params, closure)
                missing = [e for e in self.rule.extras if e not in extras]
                if missing:
                    raise RuntimeError(f"{type(self).__name__} does not provide {missing}, which rule {self.rule.name} needs")
                args = ([self._grad_view(p) for p in params], self._gather(group, params), views,
                        self._hp(group, views[0]), extras)
                jobs.append((group, params, args))
            results: dict[int, tuple[list[Tensor], dict[str, Any]]] = {}
            for j, (_, _, args) in enumerate(jobs):
                try:
                    results[j] = self.rule.update(*args)
                except _ShiftRequest:
                    pass
            if len(results) < len(jobs):  # the groups' shifts are known: one evaluation for all of them
                self._shifted_eval.evaluate()
                for j, (_, _, args) in enumerate(jobs):
                    if j not in results:
                        results[j] = self.rule.update(*args)
        finally:
            self._shifted_eval = None
        # no group moves before every evaluation of the step is done
        moves = []
        for j, (group, params, _) in enumerate(jobs):
            updates, new_state = results[j]
            lr = group["lr"] if self.lr_multiplier else 1.0
            moves.append((group, params, [u.squeeze(0) if lr == 1.0 else u.squeeze(0) * lr for u in updates], new_state))
        scale = self._step_scale([(p, u) for _, params, us, _ in moves for p, u in zip(params, us)], rng)
        for group, params, us, new_state in moves:
            for p, u in zip(params, us):
                p.add_(u if scale is None else u * scale)
            self._scatter(group, params, new_state)
        return loss

    def _step_scale(self, moves: list[tuple[Tensor, Tensor]], rng) -> Tensor | None:
        """A factor on the whole step (every group's updates, ``moves``: (parameter, update)), or None (the updates
        as the rule made them). ``rng``: the random state before the step's first evaluation, where known."""
        return None

    def learning_rates(self) -> list[Tensor]:
        """Current per-element learning rates, one tensor shaped like each parameter (all groups), times the
        group's ``lr`` where the optimizer has one. Parameters without state show the rates of a fresh state."""
        if self.rule.rates is None:
            raise NotImplementedError(f"rule {self.rule.name} does not expose its learning rates")
        out = []
        for group in self.param_groups:
            params = group["params"]
            views = [self._view(p) for p in params]
            hp = self._hp(group, views[0])
            per_keys, pooled_keys = self._layout(group, views[0])
            fresh = self.rule.init(views, hp)  # temporary, for parameters (or a group) without state yet
            first = self.state.get(params[0], {})
            state = {k: [self.state[p][k] if k in self.state.get(p, {}) else f for p, f in zip(params, fresh[k])]
                     for k in per_keys}
            state.update({k: first.get(_GROUP_PREFIX + k, fresh[k]) for k in pooled_keys})
            rates = self.rule.rates(state, hp, views)
            lr = group["lr"] if self.lr_multiplier else 1.0
            out.extend((r.expand_as(v) if lr == 1.0 else r.expand_as(v) * lr).squeeze(0) for r, v in zip(rates, views))
        return out
