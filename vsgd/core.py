"""The update-rule interface shared by every optimizer in this project.

An update rule is written once, as pure functions over lists of tensors, in the spirit of optax:

    state            = rule.init(params, hp)
    updates, state   = rule.update(grads, state, params, hp, extras)
    params[i]       += updates[i]

Conventions (they are what lets one formula serve both front-ends):

* Every tensor carries a leading **ensemble axis K**: ``params[i]`` has shape ``[K, *shape_i]``.
  The ensemble trainer runs K independent members (seeds x settings) in lock step; the
  ``torch.optim`` front-end uses K = 1 views of the user's parameters.
* Every hyper-parameter in ``hp`` is a float tensor of shape ``[K]`` (one value per member), so a
  whole grid of settings is one batched computation. Use :func:`per_member` to broadcast it
  against a parameter tensor.
* ``state`` is a dict. Values are either a list of tensors shaped like ``params`` (per-element
  statistics such as ``g_bar``), or a tensor of shape ``[K]`` / ``[K, n_blocks]`` (pooled
  statistics such as the global ``l_bar``, and the step counter ``step``).
  State keys use the papers' symbols: ``g_bar``, ``v_bar``, ``h_bar``, ``tau``, ``l_bar``.
* ``extras`` carries what a rule needs beyond the gradient. A rule declares the names it needs in
  ``Rule.extras``; the caller computes only those. Known names:

  ``curvature``      list like params: per-sample diagonal curvature estimate (bbprop, eq. in
                     paper 1 Sec. 4.3), including the L2 term.
  ``hvp``            callable ``hvp(vectors) -> list``: exact Hessian-vector product at ``params``
                     on the current sample(s) (SMD, paper 1 App. C).
  ``grad_at``        callable ``grad_at(shifts) -> list``: gradient at ``params + shifts`` on the
                     same sample(s) (finite differences, paper 2 eq. 6).
  ``sq_grad_mean``   list like params: minibatch mean of squared per-sample gradients (paper 2).
  ``nonzero_count``  list like params: per-dimension count of non-zero per-sample gradients.
  ``batch_size``     int n, the number of samples behind ``grads`` (default 1).
  ``fd_per_sample``, ``reweighted``  optional minibatch statistics for vSGD-fd (``vsgd.fd_optim``):
                     per-sample finite-difference curvatures, and the orthogonally reweighted gradient
                     of paper 2 eq. 5; read when present, never required.

Rules never modify their inputs in place; the caller applies the updates.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

State = dict[str, Any]
HP = Mapping[str, Tensor]
Extras = Mapping[str, Any]

KNOWN_EXTRAS = ("curvature", "hvp", "grad_at", "sq_grad_mean", "nonzero_count", "batch_size",
                "fd_per_sample", "reweighted")


def per_member(value: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-member tensor ``[K]`` so that it broadcasts against ``like`` (``[K, ...]``)."""
    return value.reshape(value.shape[0], *([1] * (like.dim() - 1)))


def _member_axes(x: Tensor) -> tuple[int, ...]:
    return tuple(range(1, x.dim()))


# Reduced over the axes themselves, not over ``x.reshape(K, -1)``: compiled, a reshape of a tensor that is
# never materialised became a scalar loop with an integer division per element, and vSGD-b's M2 step ran
# half as fast (benchmarks/member_reduce.py). The order of summation differs, so sums differ in rounding.
def member_sum(x: Tensor) -> Tensor:
    """Sum over every axis but the ensemble axis: ``[K, ...] -> [K]``."""
    return x.sum(dim=_member_axes(x)) if x.dim() > 1 else x.clone()


def member_max(x: Tensor) -> Tensor:
    """Max over every axis but the ensemble axis: ``[K, ...] -> [K]``."""
    return x.amax(dim=_member_axes(x)) if x.dim() > 1 else x.clone()


@dataclass(frozen=True)
class HyperParam:
    """A hyper-parameter's default and the range it must lie in (checked before any work starts)."""

    default: float
    low: float = float("-inf")  # smallest allowed value
    high: float = float("inf")  # largest allowed value
    low_inclusive: bool = True
    doc: str = ""
    # Benchmark configs give some values in units tied to the training-set size N (the paper's
    # gamma is "per 1/#traindata"; vSGD's n0 is "0.001 x #traindata"). The ensemble trainer passes
    # value * N**ntrain_power to the rule; the torch.optim front-ends take the rule's own units.
    ntrain_power: int = 0
    # An option that selects a reading of a formula (a per-member flag, so one ensemble can run several):
    # the only values allowed; None = any value in [low, high].
    choices: tuple[float, ...] | None = None

    def check(self, name: str, value: float, rule: str, *, hint: str | None = None) -> None:
        """Raise ``ValueError`` if ``value`` is out of range. ``hint`` is how the fix is spelled, a format string
        with ``{name}`` and ``{value}`` (default: the Hydra override ``optimizer.{name}={value}``; the
        ``torch.optim`` front-ends pass their Python keyword)."""
        hint = hint or "optimizer.{name}={value}"
        if self.choices is not None and value not in self.choices:
            raise ValueError(
                f"Invalid {rule} hyper-parameter {name}={value!r}: it must be one of "
                f"{', '.join(f'{c:g}' for c in self.choices)}" + (f" ({self.doc})" if self.doc else "")
                + ". Fix the value, e.g. " + hint.format(name=name, value=f"{self.default:g}") + "."
            )
        ok_low = value >= self.low if self.low_inclusive else value > self.low
        if not (ok_low and value <= self.high) or math.isnan(value):
            bound = ">=" if self.low_inclusive else ">"
            raise ValueError(
                f"Invalid {rule} hyper-parameter {name}={value!r}: it must be {bound} {self.low}"
                + (f" and <= {self.high}" if self.high != float("inf") else "")
                + (f" ({self.doc})" if self.doc else "")
                + ". Fix the value, e.g. " + hint.format(name=name, value=self.default) + "."
            )


@dataclass(frozen=True)
class Rule:
    """An update rule: ``init`` and ``update`` plus what it needs to know about itself.

    Attributes:
        name: registry name, also the Hydra ``optimizer=`` name.
        init: ``init(params, hp) -> state``.
        update: ``update(grads, state, params, hp, extras) -> (updates, state)``.
        hyperparams: name -> :class:`HyperParam` (defaults and valid ranges).
        extras: names of the extras the rule needs (see module docstring).
        rates: optional ``rates(state, hp, params) -> list`` giving the current learning rates, one
            tensor per parameter broadcastable to its shape ``[K, ...]`` (a global rate is ``[K, 1, ..]``),
            for logging and for people who want to see them.
        hvp_vectors: optional, for rules with the ``hvp`` extra: ``hvp_vectors(state) -> list``, the vectors the
            update will pass to ``extras["hvp"]``, known before the gradient (SMD: its v). The ensemble trainer
            then takes the gradient and the products from one forward-over-reverse pass
            (``EnsembleMLP.grads_and_hvp``) instead of a gradient pass and a product pass.
        scalar_rate: only for rules whose update is exactly ``-rate * grad`` with one rate per
            member (plain SGD): ``scalar_rate(state, hp) -> (rate [K], new_state)``. ``update`` must
            be written in terms of it; the ensemble trainer then fuses the update into the backward
            pass (no gradient tensor is materialised), which is what makes large SGD grids fast.
    """

    name: str
    init: Callable[[Sequence[Tensor], HP], State]
    update: Callable[[Sequence[Tensor], State, Sequence[Tensor], HP, Extras], tuple[list[Tensor], State]]
    hyperparams: Mapping[str, HyperParam] = field(default_factory=dict)
    extras: tuple[str, ...] = ()
    rates: Callable[[State, HP, Sequence[Tensor]], list[Tensor]] | None = None
    hvp_vectors: Callable[[State], Sequence[Tensor]] | None = None
    scalar_rate: Callable[[State, HP], tuple[Tensor, State]] | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.extras) - set(KNOWN_EXTRAS)
        if unknown:
            raise ValueError(f"rule {self.name} declares unknown extras {sorted(unknown)}; known: {KNOWN_EXTRAS}")

    def check_hp(self, values: Mapping[str, Any], *, hint: str | None = None) -> dict[str, float]:
        """Validate user-supplied hyper-parameters and fill in defaults. Raises ``ValueError``.

        ``hint``: how an error message spells the fix (see :meth:`HyperParam.check`)."""
        unknown = set(values) - set(self.hyperparams)
        if unknown:
            known = ", ".join(sorted(self.hyperparams)) or "none"
            raise ValueError(
                f"Unknown hyper-parameter(s) {sorted(unknown)} for optimizer {self.name}; its hyper-parameters are: {known}."
            )
        out = {}
        for name, spec in self.hyperparams.items():
            raw = values.get(name, spec.default)
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise ValueError(
                    f"Invalid {self.name} hyper-parameter {name}={raw!r}: expected a number, e.g. "
                    + (hint or "optimizer.{name}={value}").format(name=name, value=spec.default) + "."
                ) from None
            spec.check(name, value, self.name, hint=hint)
            out[name] = value
        return out

    def hp_tensors(self, settings: Sequence[Mapping[str, float]], *, dtype, device) -> dict[str, Tensor]:
        """Stack K validated settings into ``{name: tensor[K]}``."""
        checked = [self.check_hp(s) for s in settings]
        return {
            name: torch.tensor([c[name] for c in checked], dtype=dtype, device=device) for name in self.hyperparams
        }


REGISTRY: dict[str, Rule] = {}


def register(rule: Rule) -> Rule:
    """Add a rule to the registry that drives configs, generic tests and the trainer."""
    if rule.name in REGISTRY and REGISTRY[rule.name] is not rule:
        raise ValueError(f"a rule named {rule.name!r} is already registered")
    REGISTRY[rule.name] = rule
    return rule


def get_rule(name: str) -> Rule:
    """Look a rule up by name, with one clear error for an unknown name.

    The registry holds the rules of the packages imported so far: ``vsgd``'s own (vsgd_l, vsgd_b, vsgd_g,
    vsgd_fd) always; the paper's baselines (sgd, adagrad, almeida, amari, smd) once ``baselines`` is imported,
    which the reproduction harness (``experiments``) does. The library never imports the harness."""
    import vsgd  # noqa: F401  (registers vsgd's own rules when only vsgd.core was imported)

    try:
        return REGISTRY[name]
    except KeyError:
        hint = ("" if "baselines" in sys.modules else " The paper's baselines (sgd, adagrad, almeida, amari, smd) register "
                "when their package is imported: `import baselines` from the repository root, where the "
                "reproduction harness lives (they are not part of the installed library).")
        raise ValueError(f"Unknown optimizer {name!r}. Available: {', '.join(sorted(REGISTRY))}.{hint}") from None
