"""Today's tuning-free optimizers (PyPI ``torch.optim.Optimizer`` classes) on the paper's MLP benchmarks.

Issue 9 ("beyond the paper") puts Adam, D-Adaptation, Prodigy, Schedule-Free, DoG and COCOB on the
paper's own table, at their published defaults and through their own implementations (no rewrite of
their math). They are ``torch.optim.Optimizer`` objects, not pure rules, so they get their own
trainer path here, :func:`train_torch_members`, which returns the same
:class:`experiments.trainer.MemberResult` objects as :func:`experiments.trainer.train_ensemble` and
shares everything else with it: the Glorot init (:func:`experiments.mlp.glorot_init`, one generator
per member), the per-member sample order (a generator seeded ``seed + 7919``, a fresh
``torch.randperm(N)`` every epoch), the loss and its hand-written gradient
(:meth:`EnsembleMLP.loss_and_grads`: cross-entropy or 1/2 ||x - y||^2, plus lambda/2 ||W||^2 on the
weights only), the evaluation (:meth:`EnsembleMLP.evaluate`) and the checkpoints
(:func:`experiments.trainer.checkpoint_steps`).

How K members share one computation depends on the optimizer (see ``docs/beyond.md``):

* **stacked** (``needs_per_member=False``): the optimizer is element-wise, so one instance over the
  K-stacked parameters ``[K, ...]`` is exactly K independent instances (Adam, SGD/AdamW
  Schedule-Free, COCOB; ``tests/test_beyond.py`` checks it against K separate runs). Members with
  different hyper-parameters get one instance per distinct setting, over contiguous slices.
* **per member** (``needs_per_member=True``): the optimizer pools statistics over all its parameters
  (D-Adaptation's and Prodigy's distance estimate ``d``, DoG's ``max ||x - x0|| / sqrt(sum ||g||^2)``),
  so each member gets its own instance over *views* ``P[k]`` of the stacked parameters. The forward and
  backward pass stay one batched computation; only ``optimizer.step()`` is a Python loop over members.

Schedule-Free's parameters are the interpolation point ``y`` during training: ``optimizer.eval()``
switches them to the averaged ``x`` before every evaluation and ``optimizer.train()`` back after it,
as its authors require.

The fast path (``fast=True``, the default; measured in ``benchmarks/beyond_throughput.py``, see
``docs/beyond.md``) changes how the tensors are laid out and computed, never the packages' code or
math, so its results equal the plain path's to float rounding (``tests/test_beyond.py``):

* per member, on the smaller benchmarks (up to ``FLAT_MAX`` parameters per member: M0, M1, C0), every
  member's parameters are one row of a flat ``[K, n]`` tensor (the per-layer ``params`` are views of
  it) and its instance sees that one tensor ``flat[k]``: its Python loop runs over one tensor instead of
  ``2 x layers``; the pooled sums (``d``, DoG's norms) are the same sums in another order. Stacked
  instances, and per-member ones on M2, C1, CR, keep the per-layer tensors (one stacked instance either
  way; the gradient write into contiguous layers is faster).
* with ``compile=True`` the gradients are computed by one compiled function
  (:func:`experiments.trainer.compiled`) straight into persistent buffers that are the parameters'
  ``.grad`` (set once). Without it, stacked instances get the fresh gradients (as on the plain path)
  and the flat rows a copy of them.
* constructor options that only choose a kernel (``TorchOptimizer.options``: Adam's ``fused=True``)
  and, with ``compile=True``, ``torch.compile`` of ``step`` where it compiles once and for all
  (``TorchOptimizer.compile_step``: COCOB, whose state is all tensors; the others keep Python floats
  that change every step, ``d``, ``k``, the averaging weight, and would recompile every step).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from experiments.data import Dataset
from experiments.mlp import EnsembleMLP, MLPSpec, glorot_init
from experiments.trainer import Member, MemberResult, all_finite, compiled, evaluate_sets, lockstep

# Per-member instances see one flat tensor per member up to this many parameters per member: there it cuts
# their Python loop (M0, M1, C0: 1.1-1.5x); above it the compiled gradient write into the members' strided
# rows costs more than that saves (M2, C1, CR: 0.85-1.0x). Measured in benchmarks/beyond_throughput.py.
# On an accelerator every per-member instance is flat: there a step costs its kernel launches and host
# syncs, not memory traffic, and the flat instance has fewer of both (M2, one member: 81-88 ops and 2
# syncs against 131-204 ops and 7-12 syncs per step; counted with `benchmarks/beyond_throughput.py --ops`).
FLAT_MAX = 1 << 18


def use_flat(params: Sequence[Tensor]) -> bool:
    """Whether per-member instances over these K-stacked parameters get one flat tensor per member."""
    return params[0].device.type != "cpu" or sum(p[0].numel() for p in params) <= FLAT_MAX


class TorchOptimizer(NamedTuple):
    """A PyPI optimizer as the harness sees it: ``factory(params, **hp)`` and how members share it."""

    factory: Callable[..., torch.optim.Optimizer]
    needs_per_member: bool  # True: statistics pooled over all parameters, one instance per member
    schedule_free: bool = False  # True: call .train() before stepping and .eval() before evaluating
    package: str = "torch"  # the pip package that provides it (the `beyond` extra)
    cls: str = ""  # "module:Class"
    doc: str = ""
    options: dict[str, Any] | None = None  # fast path: constructor options that pick a kernel, not the math
    compile_step: bool = False  # fast path with compile=True: torch.compile(optimizer.step) (one graph, no recompiles)


def _lazy(spec: str) -> Callable[..., torch.optim.Optimizer]:
    """A factory that imports ``module:Class`` on first use (the packages are an optional extra)."""
    name = spec.split(":")[1]

    def factory(params, **hp):
        return _resolve(spec)(params, **hp)

    factory.__qualname__ = factory.__name__ = f"make_{name}"
    return factory


def _resolve(spec: str) -> type:
    module, name = spec.split(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise ValueError(
            f"optimizer class {spec} needs the package {module.split('.')[0]!r}, which is not installed ({exc}). "
            "Install the optional extra: pip install -e '.[beyond]'."
        ) from None


def _entry(cls: str, package: str, needs_per_member: bool, doc: str, schedule_free: bool = False,
           options: dict[str, Any] | None = None, compile_step: bool = False) -> TorchOptimizer:
    return TorchOptimizer(_lazy(cls), needs_per_member, schedule_free, package, cls, doc, options, compile_step)


# name -> (factory, needs_per_member, ...). Every optimizer at its package's defaults (hp = {}).
REGISTRY: dict[str, TorchOptimizer] = {
    "adam": _entry("torch.optim:Adam", "torch", False,
                   "Adam (Kingma & Ba 2015), lr 1e-3: element-wise moments, stacked.",
                   options={"fused": True}),  # torch's one-kernel Adam: the same update to rounding
    "dadapt_sgd": _entry("dadaptation:DAdaptSGD", "dadaptation", True,
                         "D-Adaptation SGD (Defazio & Mishchenko 2023), lr 1.0: one global d per instance."),
    "dadapt_adam": _entry("dadaptation:DAdaptAdam", "dadaptation", True,
                          "D-Adaptation Adam, lr 1.0: one global d per instance."),
    "prodigy": _entry("prodigyopt:Prodigy", "prodigyopt", True,
                      "Prodigy (Mishchenko & Defazio 2024), lr 1.0: one global d per instance."),
    "sgd_schedulefree": _entry("schedulefree:SGDScheduleFree", "schedulefree", False,
                               "Schedule-Free SGD (Defazio et al. 2024), lr 1.0, momentum 0.9: element-wise "
                               "(its averaging weights depend on the step and lr only), stacked.", True),
    "adamw_schedulefree": _entry("schedulefree:AdamWScheduleFree", "schedulefree", False,
                                 "Schedule-Free AdamW, lr 0.0025: element-wise, stacked.", True),
    "dog": _entry("dog:DoG", "dog-optimizer", True,
                  "DoG (Ivgi, Hinder & Carmon 2023): one global step size per parameter group."),
    "cocob": _entry("parameterfree:COCOB", "parameterfree", False,
                    "COCOB-Backprop (Orabona & Tommasi 2017), alpha 100: per-coordinate betting, stacked.",
                    compile_step=True),
}


def get_optimizer(name: str) -> TorchOptimizer:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown torch optimizer {name!r}. Available: {', '.join(sorted(REGISTRY))}.") from None


def check_hp(name: str, hp: Mapping[str, Any]) -> dict[str, Any]:
    """Check hyper-parameter names against the optimizer's constructor (ValueError naming the fix)."""
    opt = get_optimizer(name)
    sig = inspect.signature(_resolve(opt.cls).__init__)
    allowed = [p for p in sig.parameters if p not in ("self", "params")]
    unknown = sorted(set(hp) - set(allowed))
    if unknown:
        raise ValueError(
            f"Unknown hyper-parameter(s) {unknown} for optimizer {name} ({opt.cls}); it accepts: {', '.join(allowed)}. "
            "The issue-9 runs use the published defaults: leave optimizer.hp empty."
        )
    return dict(hp)


def make_optimizers(
    name: str, params: Sequence[Tensor], hps: Sequence[Mapping[str, Any]], *, per_member: bool | None = None,
    fast: bool = False,
) -> list[tuple[list[int], torch.optim.Optimizer]]:
    """Optimizers over K-stacked ``params``: a list of (member indices, optimizer).

    Per-member optimizers get views ``p[k]``; element-wise ones one instance per run of equal settings
    over the slice ``p[a:b]`` (a view, so the stacked tensors are updated in place). ``per_member=True``
    forces one instance per member for any optimizer (to measure what stacking saves); ``False`` for an
    optimizer that needs per-member instances is refused (it would pool statistics across members).
    ``fast=True`` adds the registry's kernel ``options`` (a setting in ``hps`` wins).
    """
    opt = get_optimizer(name)
    if per_member is False and opt.needs_per_member:
        raise ValueError(f"{name} pools statistics over all its parameters: it cannot be stacked across members; "
                         "use per_member=None or True.")
    per_member = opt.needs_per_member if per_member is None else per_member
    K = params[0].shape[0]
    if len(hps) != K:
        raise ValueError(f"{len(hps)} hyper-parameter settings for {K} members")
    hps = [check_hp(name, h) for h in hps]
    options = (opt.options or {}) if fast else {}
    out: list[tuple[list[int], torch.optim.Optimizer]] = []
    if per_member:
        for k in range(K):
            out.append(([k], opt.factory([p[k] for p in params], **{**options, **hps[k]})))
    else:
        a = 0
        while a < K:
            b = a + 1
            while b < K and hps[b] == hps[a]:
                b += 1
            out.append((list(range(a, b)), opt.factory([p[a:b] for p in params], **{**options, **hps[a]})))
            a = b
    if opt.schedule_free:
        for _, o in out:
            o.train()
    return out


def set_grads(groups, params: Sequence[Tensor], grads: Sequence[Tensor]) -> None:
    """Point every optimizer's parameters' ``.grad`` at the matching slices of the stacked gradients."""
    for idx, o in groups:
        a, b = idx[0], idx[-1] + 1
        for p, g in zip(o.param_groups[0]["params"], grads):
            p.grad = g[a] if p.dim() == g.dim() - 1 else g[a:b]


def flat_views(flat: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Views of a flat ``[K, n]`` tensor shaped like the K-stacked tensors ``like`` (in order)."""
    sizes = [p[0].numel() for p in like]
    return [v.view(p.shape) for v, p in zip(flat.split(sizes, dim=1), like)]


def write_grads(model: EnsembleMLP, params: Sequence[Tensor], x: Tensor, target: Tensor, out: Sequence[Tensor]) -> None:
    """The gradients of :meth:`EnsembleMLP.loss_and_grads` written into ``out`` (compiled: computed there)."""
    for buf, g in zip(out, model.loss_and_grads(params, x, target)[1]):
        buf.copy_(g)


def guarded_step(o: torch.optim.Optimizer, *, any_error: bool = False, step: Callable[[], Any] | None = None) -> bool:
    """``o.step()`` (or ``step()``, e.g. its compiled form); False (and no step) when it raises on a member
    whose parameters or gradients are no longer finite (DoG asserts ``G > 0``, which fails on NaN), else
    the error propagates.

    ``any_error=True`` also turns an error on finite values into False (the unit suite counts it as a
    failure of that run: DAdaptSGD divides by the first gradient's norm and raises ZeroDivisionError
    when that gradient is exactly 0, e.g. under mask-out noise)."""
    try:
        (step or o.step)()
        return True
    except (AssertionError, RuntimeError, ValueError, ZeroDivisionError):
        ps = o.param_groups[0]["params"]
        finite = all(bool(torch.isfinite(p).all()) and (p.grad is None or bool(torch.isfinite(p.grad).all())) for p in ps)
        if finite and not any_error:
            raise
        return False


def effective_rate(o: torch.optim.Optimizer) -> float | None:
    """The global step size a per-member optimizer uses now, where it has one (for the curves)."""
    g = o.param_groups[0]
    if "d" in g:  # D-Adaptation, Prodigy: step size d * lr
        return float(g["d"]) * float(g["lr"])
    if "eta" in g:  # DoG: eta_t = max||x - x0|| / sqrt(sum ||g||^2)
        eta = g["eta"]
        return float(eta[0] if isinstance(eta, (list, tuple)) else eta)
    return None


def member_step(
    model: EnsembleMLP, optimizer_name: str, params: Sequence[Tensor], hps: Sequence[Mapping[str, Any]], *,
    per_member: bool | None = None, fast: bool = True, compile: bool = False,
) -> tuple[list[Tensor], list[tuple[list[int], torch.optim.Optimizer]], Callable[[Tensor, Tensor, set[int]], list[int]]]:
    """The training step of :func:`train_torch_members` (also timed by ``benchmarks/beyond_throughput.py``).

    Returns ``(params, groups, step)``: the K-stacked parameters the model reads (for per-member
    instances on the fast path, views of one flat ``[K, n]`` tensor holding the values of ``params``),
    the optimizers from :func:`make_optimizers`, and ``step(x, target, dead)``: one update of every
    member not in ``dead``, returning the members an optimizer refused (non-finite, see
    :func:`guarded_step`), as :func:`experiments.trainer.lockstep` calls it.
    """
    K = params[0].shape[0]
    opt_info = get_optimizer(optimizer_name)
    compile = compile and fast
    params, grads = list(params), None  # grads: persistent buffers written in place, or fresh every step
    opt_params = opt_grads = params
    per_instance = opt_info.needs_per_member if per_member is None else per_member
    if fast and per_instance and use_flat(params):  # one flat tensor per instance
        flat = torch.cat([p.reshape(K, -1) for p in params], dim=1)
        params, grad_flat = flat_views(flat, params), torch.zeros_like(flat)
        grads, opt_params, opt_grads = flat_views(grad_flat, params), [flat], [grad_flat]
    elif compile:  # contiguous layers: the compiled write into them is faster
        grads = opt_grads = [torch.zeros_like(p) for p in params]
    groups = make_optimizers(optimizer_name, opt_params, hps, per_member=per_member, fast=fast)
    if grads is not None:
        set_grads(groups, opt_params, opt_grads)  # once: the buffers are rewritten in place every step
    write = compiled(write_grads) if compile else write_grads
    steps = [compiled(o.step) if compile and opt_info.compile_step else o.step for _, o in groups]

    def step(x: Tensor, target: Tensor, dead: set[int], ahead=None) -> list[int]:  # ahead: unused here
        if grads is None:
            set_grads(groups, params, model.loss_and_grads(params, x, target)[1])
        else:
            write(model, params, x, target, grads)
        refused = []
        for (members_idx, o), o_step in zip(groups, steps):
            if len(members_idx) > 1:
                o_step()
            elif members_idx[0] not in dead and not guarded_step(o, step=o_step):  # it refused a non-finite member
                refused.append(members_idx[0])
        return refused

    return params, groups, step


def train_torch_members(
    spec: MLPSpec,
    optimizer_name: str,
    members: Sequence[Member],
    data: Dataset,
    *,
    epochs: float = 6,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    eval_subset: int = 10_000,
    per_member: bool | None = None,
    fast: bool = True,
    compile: bool = False,
    progress: Callable[[int], None] | None = None,
) -> list[MemberResult]:
    """Train ``members`` with a PyPI optimizer; one :class:`MemberResult` per member (input order).

    ``Member.hp`` holds constructor keyword arguments (empty = the package's defaults). A member whose
    parameters become non-finite is recorded as diverged at the check that found it (every
    ``CHECK_EVERY`` steps, as in the trainer) and is not stepped again. ``per_member`` as in
    :func:`make_optimizers` (None: the registry's choice). ``fast``: the flat layout, in-place gradients
    and kernel options of the module docstring (False: the plain path, for comparison); ``compile``:
    also compile the gradient write and the steps marked ``compile_step`` (ignored without ``fast``);
    ``progress(n)``: called with the member-updates done, as in :func:`experiments.trainer.lockstep`.
    """
    opt_info = get_optimizer(optimizer_name)
    K = len(members)
    if K == 0:
        return []
    model = EnsembleMLP(spec)
    data = data.to(device, dtype)
    params = glorot_init(spec, [m.seed for m in members], dtype=dtype, device=device)
    params, groups, step = member_step(model, optimizer_name, params, [m.hp for m in members],
                                       per_member=per_member, fast=fast, compile=compile)

    def evaluate(tr: slice, te: slice):
        if opt_info.schedule_free:
            for _, o in groups:
                o.eval()  # parameters <- the averaged point x
        tr_err, tr_loss, te_err, te_loss = evaluate_sets(model, params, data, tr, te)
        if opt_info.schedule_free:
            for _, o in groups:
                o.train()  # parameters <- the gradient point y
        rates: list = [None] * K
        for idx, o in groups:
            if len(idx) == 1 and (r := effective_rate(o)) is not None:
                rates[idx[0]] = (r, r, r)
        return tr_err, tr_loss, te_err, te_loss, rates

    # diverged members keep their rows (their optimizers are not stepped again): no drop
    return lockstep(members, data, epochs=epochs, device=device, eval_subset=eval_subset, mse=spec.loss == "mse",
                    step=step, finite=lambda: all_finite(params), evaluate=evaluate, progress=progress)
