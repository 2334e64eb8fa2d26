"""The lock-step ensemble trainer: K independent members of one benchmark and one rule at once.

Each member has its own Glorot init (seeded by its seed), its own sample order each epoch (a
generator seeded by its seed), its own hyper-parameters and its own optimizer state; one step feeds
one sample to every member (paper 1 Sec. 7: one update per sample) and is a handful of batched
matmuls. A member's trajectory does not depend on which other members share its ensemble.

A member whose parameters become non-finite is recorded as diverged (error 100%, loss inf, the
step at which the check found it) and dropped from the ensemble; the others go on.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from experiments.data import Dataset
from experiments.mlp import EnsembleMLP, FusedSGD, MLPSpec, glorot_init
from vsgd.core import Rule

CHECK_EVERY = 1000  # steps between divergence checks (the recorded step is the check that found it)
# Set (by the runner's SIGTERM handler: a deadline) to stop every running chunk at its next divergence check,
# after it saves its snapshot there; at a check the run is synced, so the resumed run is bit-identical.
STOP = threading.Event()


class Stopped(Exception):
    """A chunk stopped at a divergence check because ``STOP`` was set (its snapshot, if any, saved there)."""
ORDER_SEED_OFFSET = 7919  # member k's sample order is drawn from a generator seeded with seed_k + 7919


@dataclass(frozen=True)
class Member:
    """One independent run: a seed and the rule's hyper-parameters (in config units)."""

    seed: int
    hp: dict[str, float] = field(default_factory=dict)


@dataclass
class MemberResult:
    member: Member
    train_error: float
    test_error: float
    train_loss: float
    test_loss: float
    diverged: bool
    diverged_step: int | None
    curve: list[dict[str, float]]  # one dict per checkpoint (epoch, train/test error, rate min/median/max)
    seconds: float  # wall time of the chunk divided by its number of members
    chunk_seconds: float
    chunk_members: int
    steps: int


@dataclass
class Snapshot:
    """Where a chunk of lock-step members saves itself (at a checkpoint, at most every ``every_s`` seconds),
    so that a long run killed by the end of a session resumes from its last save when started again.

    The file holds the whole run: step, sample orders (the generators' states and the epoch's permutation),
    curves so far, diverged members, and the trainer's tensors (``capture()``: parameters, rule state,
    hyper-parameters, synced); the resumed run is bit-identical to an uninterrupted one
    (tests/test_snapshot.py). The file is written atomically (temp file + rename) and removed by the
    runner once the chunk's records are written. One that cannot be read, or that belongs to other members,
    is moved aside to ``<name>.unusable`` (never deleted) and the run starts from step 0.
    """

    path: Path
    every_s: float = 600.0
    capture: Callable[[], Any] | None = None  # set by the trainer
    restore: Callable[[Any], None] | None = None
    listing: str | None = None  # written beside the file (``<name>.json``) at the first save: who the chunk is

    def load(self, ident: list, total_steps: int) -> dict[str, Any] | None:
        path = Path(self.path)
        if not path.is_file():
            return None
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            ok = saved["members"] == ident and saved["total_steps"] == total_steps
            why = "it belongs to other members or another length of run"
        except Exception as exc:  # noqa: BLE001 (a torn or damaged file: torch.load raises many kinds)
            ok, why = False, f"it cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
        if not ok:
            aside = path.with_name(path.name + ".unusable")
            os.replace(path, aside)
            print(f"[snapshot] {path}: {why}; moved to {aside}, the run starts from step 0.", file=sys.stderr)
            return None
        print(f"[snapshot] resuming from {path} at step {saved['t']:,} of {total_steps:,}.", file=sys.stderr)
        return saved

    def save(self, snap: dict[str, Any]) -> None:
        path = Path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        if self.listing is not None and not path.with_suffix(".json").is_file():
            tmp.write_text(self.listing)
            os.replace(tmp, path.with_suffix(".json"))
        torch.save(snap, tmp)
        os.replace(tmp, path)

    def discard(self) -> None:
        Path(self.path).unlink(missing_ok=True)


def checkpoint_steps(n_train: int, epochs: float) -> list[int]:
    """Log-spaced checkpoints (every power of two of an epoch from 1/64) plus every epoch end."""
    total = round(n_train * epochs)
    steps = {round(n_train * 2.0**-j) for j in range(1, 7)}
    steps |= {n_train * e for e in range(1, math.ceil(epochs) + 1)}
    steps.add(total)
    return sorted(s for s in steps if 0 < s <= total)


def _rate_stats(rule: Rule, state, hp, params) -> tuple[Tensor, Tensor, Tensor] | None:
    if rule.rates is None:
        return None
    rates = rule.rates(state, hp, params)
    K = params[0].shape[0]
    flat = torch.cat([r.expand_as(p).reshape(K, -1) for r, p in zip(rates, params)], dim=1).float()
    return flat.amin(dim=1), flat.median(dim=1).values, flat.amax(dim=1)


def _map_tensors(tree: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    if isinstance(tree, Tensor):
        return fn(tree)
    if isinstance(tree, dict):
        return {k: _map_tensors(v, fn) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_map_tensors(v, fn) for v in tree)
    return tree


def _leaves(tree: Any) -> list[Tensor]:
    """Every tensor in a tree of dicts, lists and tuples."""
    if isinstance(tree, Tensor):
        return [tree]
    if isinstance(tree, dict):
        tree = list(tree.values())
    if isinstance(tree, (list, tuple)):
        return [t for v in tree for t in _leaves(v)]
    return []


# extras that are parameter-sized tensors (batch_size is a number; the optional minibatch statistics of
# vsgd.fd_optim are never computed by the ensemble trainer)
TENSOR_EXTRAS = ("curvature", "hvp", "grad_at", "sq_grad_mean", "nonzero_count")


def state_elements(rule: Rule, spec: MLPSpec) -> int:
    """Elements of one member's optimizer state (every tensor in ``rule.init``'s tree), at K = 1."""
    params = glorot_init(spec, [0])
    return sum(t.numel() for t in _leaves(rule.init(params, rule.hp_tensors([{}], dtype=torch.float32, device="cpu"))))


def _select(tree: Any, keep: Tensor) -> Any:
    """Index the leading (ensemble) axis of every tensor in a state tree."""
    if isinstance(tree, Tensor):
        return tree.index_select(0, keep) if tree.dim() > 0 else tree
    if isinstance(tree, dict):
        return {k: _select(v, keep) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_select(v, keep) for v in tree)
    return tree


def compiled(fn: Callable, *, cuda_graphs: bool = False) -> Callable:
    """``torch.compile(fn)``, the project's one way to compile a training step (``compile: auto`` in
    experiments/run.py decides whether). One graph per (rule, ensemble size, slow-start phase), or per
    optimizer instance in experiments.torch_members: allow many in one process (a sweep).

    ``cuda_graphs``: ``mode="reduce-overhead"``, inductor's CUDA graphs: the step's kernels are recorded once
    and replayed with one launch, which removes the per-kernel launch and Python cost that bound the lock-step
    step on an H200 (docs/architecture.md, "On CUDA"). A graph with a Python int among its inputs (vSGD's step
    counter) would be recorded again for every value of it: such graphs run compiled without CUDA graphs
    (``cudagraph_skip_dynamic_graphs``); the baselines count steps in tensors and are recorded once."""
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 256)
    if not cuda_graphs:
        return torch.compile(fn)
    torch._inductor.config.triton.cudagraph_skip_dynamic_graphs = True
    return torch.compile(fn, mode="reduce-overhead")


class Step:
    """``step(params, state, hp, x, target) -> state``: one update of every member, in place.

    Rules with ``scalar_rate`` (plain SGD) and no extras take the fused path
    (:class:`experiments.mlp.FusedSGD`); every other rule gets its gradients and declared extras, then
    ``p += update``. ``compile=True`` runs that generic step through ``torch.compile`` (one fused
    kernel per state tensor instead of a dozen element-wise passes; measured in
    ``benchmarks/compile_step.py``). Call :meth:`sync` before reading ``params`` (the fused path holds
    the L2 decay apart from the weights between syncs).
    """

    def __init__(self, model: EnsembleMLP, rule: Rule, *, compile: bool = False, cuda_graphs: bool = False):
        self.model, self.rule = model, rule
        self.need = set(rule.extras)
        self.fused = FusedSGD(model.spec) if rule.scalar_rate is not None and not self.need else None
        self.graphs = cuda_graphs and compile and self.fused is None
        if self.graphs:  # graphs of static shapes: a chunk of another K (or network) would make K a symbolic
            torch._dynamo.reset()  # size, and such graphs are not recorded (see compiled); each chunk compiles anew
        self._generic = (compiled(_generic_step, cuda_graphs=self.graphs) if compile and self.fused is None
                         else _generic_step)

    def __call__(self, params: list[Tensor], state, hp, x: Tensor, target: Tensor,
                 ahead: Callable[[int], Tensor] | None = None):
        """``ahead(j)``: the inputs of this step and the next ones (see :class:`FusedSGD`), optional."""
        if self.fused is not None:
            rate, state = self.rule.scalar_rate(state, hp)
            self.fused(params, x, target, rate, ahead)
            return state
        if self.graphs:
            return self._graphed(params, state, hp, x, target)
        return self._generic(self.model, self.rule, params, state, hp, x, target, self.need)

    def _graphed(self, params: list[Tensor], state, hp, x: Tensor, target: Tensor):
        """The CUDA-graph step. The tensors that persist from step to step (parameters, rule state,
        hyper-parameters) are marked static, so the recorded graph reads and writes them where they are, with
        no copy in or out (new ones, after a member is dropped or a snapshot restored, are marked when they
        come; the graph is then recorded again); only the sample (``x``, ``target``) is copied in. The step
        returns the state as the same tensors (``_into``): an output left in the graph's own memory would be
        overwritten by the next replay."""
        for t in _leaves((params, state, hp)):
            if getattr(t, "_dynamo_static_input_type", None) is None:
                torch._dynamo.mark_static_address(t)
        torch.compiler.cudagraph_mark_step_begin()
        return _into(state, self._generic(self.model, self.rule, params, state, hp, x, target, self.need))

    def sync(self, params: list[Tensor]) -> None:
        if self.fused is not None:
            self.fused.sync(params)


def make_step(model: EnsembleMLP, rule: Rule, *, compile: bool = False, cuda_graphs: bool = False) -> Step:
    return Step(model, rule, compile=compile, cuda_graphs=cuda_graphs)


def _generic_step(model: EnsembleMLP, rule: Rule, params: list[Tensor], state, hp, x: Tensor, target: Tensor,
                  need: set[str]):
    """One step of any rule: gradients (and the extras it declared), then ``p += update``."""
    extras: dict[str, Any] = {"batch_size": 1}
    if "hvp" in need and rule.hvp_vectors is not None and "curvature" not in need:
        # the gradient and H v in one forward-over-reverse pass (the jvp's primal is the gradient); bit-identical
        # to the two passes (tests/test_baselines.py); compiled 1-5 % faster (M2 K = 4: 20 %; C1 K = 4: 6 % slower),
        # eager 13 % (M1): benchmarks/smd_one_pass.csv
        vectors = rule.hvp_vectors(state)
        _, grads, products = model.grads_and_hvp(params, x, target, vectors)
        curv = None

        def hvp(vs):
            if len(vs) == len(vectors) and all(a is b for a, b in zip(vs, vectors)):
                return products
            return model.hvp(params, x, target, vs)  # other vectors than the rule declared: their own pass

        extras["hvp"] = hvp
    else:
        _, grads, curv = model.loss_and_grads(params, x, target, curvature="curvature" in need)
        if "hvp" in need:
            extras["hvp"] = lambda vs: model.hvp(params, x, target, vs)
    if curv is not None:
        extras["curvature"] = curv
    if "grad_at" in need:
        extras["grad_at"] = lambda shifts: model.loss_and_grads([p + s for p, s in zip(params, shifts)], x, target)[1]
    if "sq_grad_mean" in need:  # minibatch of one: the mean of squared per-sample gradients is g^2
        extras["sq_grad_mean"] = [g * g for g in grads]
    if "nonzero_count" in need:
        extras["nonzero_count"] = [(g != 0).to(g.dtype) for g in grads]
    updates, new_state = rule.update(grads, state, params, hp, extras)
    for p, u in zip(params, updates):
        p.add_(u)
    return _into(state, new_state) if IN_PLACE and torch.compiler.is_compiling() else new_state


# Compiled, the new state is stored into the old state's tensors (``_into``): bit-identical, but no fresh
# parameter-sized state tensors every step (written cold, and the old and new copies doubled the working set,
# which on M2 and C1 no longer fit the cache at K = 1). ``benchmarks/state_in_place.py`` flips it off to compare.
IN_PLACE = True


def _into(old: Any, new: Any) -> Any:
    """``new``'s values written into ``old``'s tensors where shapes match (compiled: the fused kernel stores
    the new state straight into the old buffers: no fresh state tensors a step, half the working set)."""
    if isinstance(new, Tensor):
        if isinstance(old, Tensor) and old.shape == new.shape and old.dtype == new.dtype and old is not new:
            # outside a compiled graph (after a CUDA-graph step): an output that is a view of the old tensor,
            # written in place by the graph, needs no copy
            if not torch.compiler.is_compiling() and new.data_ptr() == old.data_ptr():
                return old
            return old.copy_(new)
        return new
    if isinstance(new, dict) and isinstance(old, dict):
        return {k: _into(old.get(k), v) for k, v in new.items()}
    if isinstance(new, (list, tuple)) and isinstance(old, (list, tuple)) and len(old) == len(new):
        return type(new)(_into(o, v) for o, v in zip(old, new))
    return new


EvalOut = tuple[Tensor, Tensor, Tensor, Tensor, list]  # train error, train loss, test error, test loss, rates


def all_finite(params: Sequence[Tensor]) -> Tensor:
    """Per member [K]: whether all its parameters are finite."""
    return torch.stack([torch.isfinite(p.reshape(p.shape[0], -1)).all(dim=1) for p in params]).all(dim=0)


def evaluate_sets(model: EnsembleMLP, params: Sequence[Tensor], data: Dataset, tr: slice, te: slice):
    """(train error, train loss, test error, test loss) per member on slices of the two sets."""
    return (*model.evaluate(params, data.x_train[tr], data.y_train[tr]),
            *model.evaluate(params, data.x_test[te], data.y_test[te]))


def lockstep(
    members: Sequence[Member],
    data: Dataset,
    *,
    epochs: float,
    device: str | torch.device,
    eval_subset: int,
    mse: bool,
    step: Callable[[Tensor, Tensor, set[int], Callable[[int], Tensor]], Sequence[int]],
    finite: Callable[[], Tensor],
    evaluate: Callable[[slice, slice], EvalOut],
    drop: Callable[[Tensor], None] | None = None,
    progress: Callable[[int], None] | None = None,
    curve_start: bool = False,
    snapshot: Snapshot | None = None,
) -> list[MemberResult]:
    """The schedule every trainer of K lock-step members shares; returns one result per member.

    It owns each member's sample order (a generator seeded with seed + 7919, a new permutation every
    epoch), the divergence checks, the checkpoint evaluations and the records. The trainer supplies:

    ``mse``: the target is the input (the autoencoder) and a diverged member's error is inf, not 100 %.
    ``curve_start``: also a checkpoint at step 0, before any update (the initial loss; Supp. Fig. 9's
    instability test compares the losses of the run with it, analysis/c_sensitivity.py).

    * ``step(x, target, dead, ahead)``: one update of every row on its sample; returns the original indices
      of members found diverged during it (an optimizer that refused a non-finite step), usually none.
      ``ahead(j)`` gives the inputs [K, w, D] of this step and the next ``w - 1`` (``w <= j``), up to the
      end of the epoch or the next divergence check, whichever comes first (a step may use or ignore it).
    * ``finite()``: per row, whether its parameters are all finite (every ``CHECK_EVERY`` steps).
    * ``evaluate(train_slice, test_slice)``: per row train/test error and loss, and per row
      ``(rate_min, rate_median, rate_max)`` or None.
    * ``drop(keep)``: keep only these rows of the trainer's tensors. Without it, a diverged member's
      row stays (``step`` gets the set of dead members and must not update them).
    * ``snapshot``: where and how to save the whole run at checkpoints (:class:`Snapshot`), so that a run
      killed after a save resumes from it, bit-identically, when started again with the same members.
    """
    start = time.perf_counter()
    K = len(members)
    N = data.n_train
    order_gens = [torch.Generator().manual_seed(int(m.seed) + ORDER_SEED_OFFSET) for m in members]
    rows = list(range(K))  # the original index of each row still in the trainer's tensors
    dead: set[int] = set()
    total_steps = round(N * epochs)
    checkpoints = set(checkpoint_steps(N, epochs))
    curves: list[list[dict[str, float]]] = [[] for _ in range(K)]
    final: dict[int, tuple[float, float, float, float, bool, int | None]] = {}
    fail = float("inf") if mse else 100.0
    sub_tr = slice(0, min(eval_subset, N))
    sub_te = slice(0, min(eval_subset, data.x_test.shape[0]))

    def record(at: int, last: bool) -> None:
        tr_err, tr_loss, te_err, te_loss, rates = evaluate(slice(None) if last else sub_tr, slice(None) if last else sub_te)
        # one host read per quantity, not one per member (on CUDA each read waits for the device)
        tr_err, tr_loss, te_err, te_loss = (v.tolist() if isinstance(v, Tensor) else v
                                            for v in (tr_err, tr_loss, te_err, te_loss))
        for j, k in enumerate(rows):
            if k in dead:
                continue
            point = {"step": at, "epoch": at / N, "train_error": float(tr_err[j]), "test_error": float(te_err[j]),
                     "train_loss": float(tr_loss[j]), "test_loss": float(te_loss[j])}
            if rates[j] is not None:
                point.update(rate_min=float(rates[j][0]), rate_median=float(rates[j][1]), rate_max=float(rates[j][2]))
            curves[k].append(point)
            if last:
                final[k] = (float(tr_err[j]), float(te_err[j]), float(tr_loss[j]), float(te_loss[j]), False, None)

    def kill(k: int, at: int) -> None:
        dead.add(k)
        final[k] = (fail, fail, float("inf"), float("inf"), True, at)

    t = 0
    perm = None
    before = 0.0  # seconds spent by earlier processes on this run (a resumed snapshot)
    ident = [(int(m.seed), sorted(m.hp.items())) for m in members]
    saved = snapshot.load(ident, total_steps) if snapshot is not None else None
    if saved is not None:
        t, rows, dead, curves, final, perm, before = (saved["t"], saved["rows"], set(saved["dead"]), saved["curves"],
                                                      {int(k): tuple(v) for k, v in saved["final"].items()},
                                                      saved["perm"], saved["seconds"])
        perm = None if perm is None else perm.to(device)
        for g, st in zip(order_gens, saved["order_gens"]):
            g.set_state(st)
        snapshot.restore(saved["trainer"])
    elif curve_start:
        record(0, last=False)
    def save() -> None:
        snapshot.save({"members": ident, "total_steps": total_steps, "t": t, "rows": rows, "dead": sorted(dead),
                       "curves": curves, "final": final, "perm": perm, "order_gens": [g.get_state() for g in order_gens],
                       "seconds": before + time.perf_counter() - start, "trainer": snapshot.capture()})

    last_save = time.perf_counter()
    while t < total_steps:
        if t % N == 0:  # a new epoch: every member draws its own order
            perm = torch.stack([torch.randperm(N, generator=order_gens[k]) for k in rows]).to(device)
        pos = t % N
        idx = perm[:, pos]
        x = data.x_train[idx]
        until = pos + min(N - pos, CHECK_EVERY - t % CHECK_EVERY, total_steps - t)
        ahead = lambda j, pos=pos, until=until, perm=perm: data.x_train[perm[:, pos : min(until, pos + j)]]
        for k in step(x, x if mse else data.y_train[idx], dead, ahead):
            kill(k, t + 1)
        t += 1

        if t % CHECK_EVERY == 0 or t == total_steps:
            ok = finite().tolist()
            for j, k in enumerate(rows):
                if not ok[j] and k not in dead:
                    kill(k, t)
            if drop is not None and any(k in dead for k in rows):
                keep = torch.tensor([j for j, k in enumerate(rows) if k not in dead], dtype=torch.long, device=device)
                drop(keep)
                perm = perm[keep]
                rows = [rows[j] for j in keep.tolist()]
            if len(dead) == K:
                break
        if t in checkpoints:
            record(t, last=t == total_steps)
            if (snapshot is not None and t < total_steps and len(dead) < K
                    and time.perf_counter() - last_save >= snapshot.every_s):
                save()
                last_save = time.perf_counter()
        if t % CHECK_EVERY == 0 and STOP.is_set() and t < total_steps:  # the cheap test first: every step
            if snapshot is not None and len(dead) < K:
                save()
            raise Stopped(f"stopped at step {t:,} of {total_steps:,}"
                          + (f", saved to {snapshot.path}" if snapshot is not None and len(dead) < K else ""))
        if progress is not None and t % 1000 == 0:
            progress(1000 * (K - len(dead)))

    wall = before + time.perf_counter() - start
    return [MemberResult(m, *final[k], curves[k], wall / K, wall, K, total_steps) for k, m in enumerate(members)]


def train_ensemble(
    spec: MLPSpec,
    rule: Rule,
    members: Sequence[Member],
    data: Dataset,
    *,
    epochs: float = 6,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    eval_subset: int = 10_000,
    progress: Callable[[int], None] | None = None,
    compile: bool = False,
    curve_start: bool = False,
    snapshot: Snapshot | None = None,
    cuda_graphs: bool | None = None,
) -> list[MemberResult]:
    """Train ``members`` together for ``epochs`` and return one result per member (input order);
    ``curve_start``: a checkpoint at step 0 too; ``snapshot``: save and resume the run (:func:`lockstep`);
    ``cuda_graphs``: replay the compiled step as a CUDA graph (:meth:`Step._graphed`); default: when compiled
    on CUDA."""
    K = len(members)
    model = EnsembleMLP(spec)
    data = data.to(device, dtype)
    N = data.n_train

    # hyper-parameters as [K] tensors, converted from config units (see HyperParam.ntrain_power)
    settings = [rule.check_hp(m.hp) for m in members]
    hp = {
        name: torch.tensor([s[name] * N**p.ntrain_power for s in settings], dtype=dtype, device=device)
        for name, p in rule.hyperparams.items()
    }
    params = glorot_init(spec, [m.seed for m in members], dtype=dtype, device=device)
    state = rule.init(params, hp)
    if cuda_graphs is None:
        cuda_graphs = torch.device(device).type == "cuda"
    step_fn = make_step(model, rule, compile=compile, cuda_graphs=cuda_graphs)

    def step(x: Tensor, target: Tensor, dead: set[int], ahead: Callable[[int], Tensor]) -> tuple[()]:
        nonlocal state
        state = step_fn(params, state, hp, x, target, ahead)
        return ()

    def finite() -> Tensor:
        step_fn.sync(params)
        return all_finite(params)

    def evaluate(tr: slice, te: slice) -> EvalOut:
        step_fn.sync(params)
        tr_err, tr_loss, te_err, te_loss = evaluate_sets(model, params, data, tr, te)
        stats = _rate_stats(rule, state, hp, params)
        rates = [None] * len(tr_err) if stats is None else list(zip(*(r.tolist() for r in stats)))
        return tr_err, tr_loss, te_err, te_loss, rates

    def drop(keep: Tensor) -> None:  # a diverged member leaves the ensemble: the others go on faster
        nonlocal params, state, hp
        params, state, hp = _select(params, keep), _select(state, keep), _select(hp, keep)

    def capture() -> dict[str, Any]:
        step_fn.sync(params)
        return {"params": params, "state": state, "hp": hp}

    def restore(saved: dict[str, Any]) -> None:
        nonlocal params, state, hp
        to = lambda tree: _map_tensors(tree, lambda x: x.to(device))
        params, state, hp = to(saved["params"]), to(saved["state"]), to(saved["hp"])

    if snapshot is not None:
        snapshot.capture, snapshot.restore = capture, restore

    return lockstep(members, data, epochs=epochs, device=device, eval_subset=eval_subset, mse=spec.loss == "mse", step=step,
                    finite=finite, evaluate=evaluate, drop=drop, progress=progress, curve_start=curve_start,
                    snapshot=snapshot) if K else []
