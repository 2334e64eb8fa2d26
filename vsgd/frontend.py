"""The ``torch.optim.Optimizer`` front-end: any :class:`~vsgd.core.Rule` on a user's own model.

The front-end gives the rule K = 1 views of the parameters (``p.unsqueeze(0)``), so the very same
formula that trains an ensemble of 476 members in the benchmark trainer steps a user's model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from vsgd.core import Rule

_GROUP_PREFIX = "group."  # pooled (per-group) state lives on the group's first parameter under this prefix


class RuleOptimizer(torch.optim.Optimizer):
    """Wraps an update rule as a ``torch.optim.Optimizer``.

    Each param group is one independent application of the rule (its pooled statistics, e.g. the
    global ``l_bar`` of vSGD-g, are pooled within the group). Parameters whose ``grad`` is ``None``
    are left untouched and their statistics are not updated.

    Subclasses provide extras the rule needs by overriding :meth:`_extras`. The base class provides
    the model-free ones: ``grad_at`` (re-evaluates the closure at shifted parameters) and
    ``batch_size`` (1, unless the subclass knows better).
    """

    rule: Rule

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], rule: Rule, **hyperparams: Any) -> None:
        self.rule = rule
        defaults = rule.check_hp(hyperparams)
        super().__init__(params, defaults)
        for group in self.param_groups:  # groups given with their own values are checked too
            rule.check_hp({k: group[k] for k in rule.hyperparams})

    # -- state layout -------------------------------------------------------------------------
    def _group_state(self, group: dict) -> dict[str, Any]:
        """Rebuild the rule's state dict for a group from ``self.state`` (initialising it if new)."""
        params = group["params"]
        first = self.state[params[0]]
        if not first:
            hp = self._hp(group, params[0])
            state = self.rule.init([p.detach().unsqueeze(0) for p in params], hp)
            self._store(group, state)
        per_param: dict[str, list[Tensor]] = {}
        pooled: dict[str, Tensor] = {}
        for key, value in self.state[params[0]].items():
            if key.startswith(_GROUP_PREFIX):
                pooled[key[len(_GROUP_PREFIX) :]] = value
        keys = [k for k in self.state[params[0]] if not k.startswith(_GROUP_PREFIX)]
        for key in keys:
            per_param[key] = [self.state[p][key] for p in params]
        return {**per_param, **pooled}

    def _store(self, group: dict, state: dict[str, Any]) -> None:
        params = group["params"]
        for key, value in state.items():
            if isinstance(value, (list, tuple)):
                for p, v in zip(params, value):
                    self.state[p][key] = v
            else:
                self.state[params[0]][_GROUP_PREFIX + key] = value

    def _hp(self, group: dict, like: Tensor) -> dict[str, Tensor]:
        dtype = like.dtype if like.is_floating_point() else torch.get_default_dtype()
        return {k: torch.tensor([float(group[k])], dtype=dtype, device=like.device) for k in self.rule.hyperparams}

    # -- extras -------------------------------------------------------------------------------
    def _extras(self, group: dict, params: list[Tensor], closure: Callable | None) -> dict[str, Any]:
        extras: dict[str, Any] = {"batch_size": 1}
        if "grad_at" in self.rule.extras:
            if closure is None:
                raise RuntimeError(
                    f"{type(self).__name__}.step needs a closure (zero grads, recompute the loss on the "
                    "current samples, backward, return the loss): it evaluates the gradient twice per step."
                )
            extras["grad_at"] = lambda shifts: _grad_at(params, shifts, closure)
        return extras

    # -- step ---------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            all_params = group["params"]
            state = self._group_state(group)
            live = [i for i, p in enumerate(all_params) if p.grad is not None]
            if not live:
                continue
            params = [all_params[i].unsqueeze(0) for i in live]
            grads = [all_params[i].grad.unsqueeze(0) for i in live]
            sub_state = {k: ([v[i] for i in live] if isinstance(v, list) else v) for k, v in state.items()}
            extras = self._extras(group, [all_params[i] for i in live], closure)
            missing = [e for e in self.rule.extras if e not in extras]
            if missing:
                raise RuntimeError(f"{type(self).__name__} does not provide {missing}, which rule {self.rule.name} needs")
            updates, new_state = self.rule.update(grads, sub_state, params, self._hp(group, params[0]), extras)
            for p, u in zip(params, updates):
                p.add_(u)
            merged = {}
            for k, v in new_state.items():
                if isinstance(v, list):
                    full = list(state[k]) if k in state else [None] * len(all_params)
                    for j, i in enumerate(live):
                        full[i] = v[j]
                    merged[k] = full
                else:
                    merged[k] = v
            self._store(group, merged)
        return loss

    def learning_rates(self) -> list[Tensor]:
        """Current per-element learning rates, one tensor shaped like each parameter (all groups)."""
        if self.rule.rates is None:
            raise NotImplementedError(f"rule {self.rule.name} does not expose its learning rates")
        out = []
        for group in self.param_groups:
            state = self._group_state(group)
            params = [p.detach().unsqueeze(0) for p in group["params"]]
            rates = self.rule.rates(state, self._hp(group, params[0]), params)
            out.extend(r.expand_as(p).squeeze(0) for r, p in zip(rates, params))
        return out


def _grad_at(params: list[Tensor], shifts: list[Tensor], closure: Callable) -> list[Tensor]:
    """Gradient at ``params + shifts`` on the closure's samples; params and ``.grad`` are restored.

    ``shifts`` carry the K = 1 ensemble axis; ``params`` are the user's tensors.
    """
    saved = [p.grad.detach().clone() for p in params]
    for p, s in zip(params, shifts):
        p.add_(s.squeeze(0))
    with torch.enable_grad():
        closure()
    shifted = [p.grad.detach().clone().unsqueeze(0) for p in params]
    for p, s, g in zip(params, shifts, saved):
        p.sub_(s.squeeze(0))
        p.grad.copy_(g)
    return shifted
