"""The second benchmark family (issue 34, Table 4): today's small workloads, any ``nn.Module``, minibatches.

The paper's family (``conf/benchmark/``, :mod:`experiments.trainer`) trains lock-step ensembles of tanh MLPs,
one sample per step. This family trains one ``nn.Module`` per member with minibatches, through each
optimizer's own ``torch.optim`` front-end, exactly as a user would:

* vSGD-l/-b/-g: ``vsgd.VSGD(model.parameters(), mode=..., model=model, loss="cross_entropy")`` at the
  front-end's defaults (the curvature comes from the library, `curvature="auto"`: bbprop on an ``nn.Sequential`` of
  Linear/Tanh/ReLU, the general estimator for other modules where the library has one);
* vSGD-fd: ``vsgd.VSGDfd(model.parameters())`` at its defaults with a :class:`vsgd.PerSampleClosure`, so its
  rates are paper 2's minibatch rates (eq. 3; eq. 4, ``sparse="minibatch"``, on a workload whose inputs are
  sparse: a property of the data, stated in its config);
* Adam (``torch.optim.Adam``, lr 1e-3) and the other PyPI tuning-free optimizers of
  :data:`experiments.torch_members.REGISTRY`, at their packages' defaults;
* ``sgdm``: ``torch.optim.SGD(lr, momentum=0.9)`` over the experiment's small learning-rate grid (every
  setting is a member; the analysis picks the best setting and counts the grid as its tuning cost).

Run:  python -m experiments.run experiment=table4                       # every workload and method
      python -m experiments.run experiment=table4 'workloads=[mnist_cnn]' 'optimizers=[adam]' seeds=1

Store and records: ``<store>/workloads/<workload>/<optimizer>/<config_hash>.json`` and its committed copy
``results/records/workloads/<workload>/<optimizer>.jsonl`` (experiments/results.py's formats and sync; the
paper's tools do not look into ``workloads/``, so Tables 1-3 never see these members). Workloads are
``conf/workload/<name>.yaml``; every one states its fixed data subset, minibatch and budget in epochs.
"""

from __future__ import annotations

import hashlib
import math
import sysconfig
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

import vsgd
from experiments import results, torch_members
from experiments.data import DataError, load
from experiments.trainer import Member, MemberResult
from vsgd import PerSampleClosure

FAMILY = "workloads"  # the folder of this family in the store and the records
VSGD_MODES = {"vsgd_l": "l", "vsgd_b": "b", "vsgd_g": "g"}
METHODS = (*VSGD_MODES, "vsgd_fd", "sgdm", *torch_members.REGISTRY)
EVAL_BATCH = 1000
CURVE_POINTS = 4  # checkpoints per run (plus the start)


class WorkloadError(ValueError):
    """A workload config or its data is unusable; the message names the problem and the fix."""


class Unsupported(WorkloadError):
    """The optimizer's front-end refuses this model (e.g. VSGD's curvature does not cover its layers yet)."""


# -- data ---------------------------------------------------------------------------------------------------
@dataclass
class Data:
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    n_classes: int
    checksum: str  # identifies the exact data (md5 of the source files, or sha256 of the corpus / arrays)
    original: bool  # False where the inputs are an approximation (the CIFAR JPEG copy)
    note: str = ""


def _images(wl: Mapping[str, Any], root: str | None, shape: tuple[int, ...]) -> Data:
    try:
        d = load(wl["dataset"], root)
    except DataError as exc:
        raise WorkloadError(str(exc)) from None
    n, m = int(wl["n_train"]), int(wl["n_test"])
    return Data(d.x_train[:n].reshape(-1, *shape).contiguous(), d.y_train[:n].clone(),
                d.x_test[:m].reshape(-1, *shape).contiguous(), d.y_test[:m].clone(), 10, d.md5, d.original,
                "" if d.original else "approximate pixels (JPEG re-encodes; see ../shared/data/cifar-10-approx/README)")


def corpus_path() -> Path:
    """The character-level corpus: the CPython licence text shipped in the standard library's folder."""
    return Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt"


def _text(wl: Mapping[str, Any]) -> Data:
    path = corpus_path()
    if not path.is_file():
        raise WorkloadError(f"workload {wl['name']}: the corpus {path} is missing (it ships with CPython's standard "
                            "library); use a Python whose stdlib has LICENSE.txt.")
    raw = path.read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    if wl.get("sha256") and sha != wl["sha256"]:
        raise WorkloadError(f"workload {wl['name']}: {path} has sha256 {sha}, the workload was defined on "
                            f"{wl['sha256']} (another Python release's licence text). Run with "
                            f"workload sha256={sha} (new records, not comparable) or Python 3.11.7.")
    text = np.frombuffer(raw, dtype=np.uint8)
    vocab, ids = np.unique(text, return_inverse=True)
    ids = torch.from_numpy(ids.astype(np.int64))
    T = int(wl["context"])
    split = int(len(ids) * float(wl["train_fraction"]))
    def windows(a: int, b: int) -> tuple[Tensor, Tensor]:  # context ids[i:i+T] -> next character ids[i+T]
        starts = torch.arange(a, b - T)
        return ids[starts[:, None] + torch.arange(T)], ids[starts + T]
    xtr, ytr = windows(0, split)
    xte, yte = windows(split, len(ids))
    return Data(xtr, ytr, xte, yte, len(vocab), sha, True, f"{path.name}, {len(raw)} bytes, {len(vocab)} symbols")


def _sparse(wl: Mapping[str, Any]) -> Data:
    """Synthetic bag of words: Zipf-distributed word ids, a fixed random linear teacher, Bernoulli labels."""
    g = torch.Generator().manual_seed(int(wl["data_seed"]))
    d, k = int(wl["features"]), int(wl["words_per_doc"])
    n = int(wl["n_train"]) + int(wl["n_test"])
    p = 1.0 / torch.arange(1, d + 1, dtype=torch.float64)
    words = torch.multinomial(p / p.sum(), n * k, replacement=True, generator=g).view(n, k)
    x = torch.zeros(n, d, dtype=torch.float64)
    x.scatter_add_(1, words, torch.ones(n, k, dtype=torch.float64))
    x = torch.log1p(x)
    teacher = torch.randn(d, generator=g, dtype=torch.float64) * float(wl["teacher_scale"])
    y = (torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(x @ teacher)).long()
    x = x.float()
    sha = hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest()
    nt = int(wl["n_train"])
    nnz = float((x != 0).float().sum(1).mean())
    return Data(x[:nt], y[:nt], x[nt:], y[nt:], 2, sha, True, f"synthetic, {nnz:.1f} non-zeros of {d} per sample")


def build_data(wl: Mapping[str, Any], root: str | None = None) -> Data:
    kind = wl["dataset"]
    if kind == "mnist":
        return _images(wl, root, (1, 28, 28))
    if kind == "cifar10_batch1":
        return _images(wl, root, (3, 32, 32))
    if kind == "stdlib_license":
        return _text(wl)
    if kind == "sparse_bow":
        return _sparse(wl)
    raise WorkloadError(f"workload {wl.get('name')}: unknown dataset {kind!r}; use mnist, cifar10_batch1, "
                        "stdlib_license or sparse_bow.")


# -- models -------------------------------------------------------------------------------------------------
class Residual(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.c1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.c2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.c2(F.relu(self.c1(x))))


class LSTMNet(nn.Module):
    def __init__(self, vocab: int, emb: int, hidden: int):
        super().__init__()
        self.emb = nn.Embedding(vocab, emb)
        self.lstm = nn.LSTM(emb, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, x: Tensor) -> Tensor:
        h, _ = self.lstm(self.emb(x))
        return self.out(h[:, -1])


class TransformerNet(nn.Module):
    def __init__(self, vocab: int, context: int, dim: int, heads: int, ff: int, layers: int):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(context, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, ff, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(dim, vocab)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.enc(self.emb(x) + self.pos)[:, -1])


def build_model(wl: Mapping[str, Any], data: Data) -> nn.Module:
    kind, k = wl["model"], data.n_classes
    if kind == "cnn":  # 28x28 -> conv5 24 -> pool 12 -> conv5 8 -> pool 4
        return nn.Sequential(nn.Conv2d(1, 8, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 5), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, k))
    if kind == "resnet":  # 32x32 -> stride-2 stem 16x16 -> block -> stride-2 8x8 -> block -> pool
        return nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(), Residual(16),
                             nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(), Residual(32),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, k))
    if kind == "lstm":
        return LSTMNet(k, int(wl["emb"]), int(wl["hidden"]))
    if kind == "transformer":
        return TransformerNet(k, int(wl["context"]), int(wl["dim"]), int(wl["heads"]), int(wl["ff"]), int(wl["layers"]))
    if kind == "linear":  # softmax (here: logistic) regression, a convex problem
        return nn.Sequential(nn.Linear(data.x_train.shape[1], k))
    raise WorkloadError(f"workload {wl.get('name')}: unknown model {kind!r}; use cnn, resnet, lstm, transformer or linear.")


# -- optimizers ---------------------------------------------------------------------------------------------
def make_optimizer(method: str, hp: Mapping[str, Any], model: nn.Module, wl: Mapping[str, Any]) -> torch.optim.Optimizer:
    if method in VSGD_MODES:
        return vsgd.VSGD(model.parameters(), mode=VSGD_MODES[method], model=model, loss="cross_entropy", **hp)
    if method == "vsgd_fd":
        sparse = "minibatch" if wl.get("sparse_inputs") else "none"  # eq. 4 where the inputs are sparse (data)
        return vsgd.VSGDfd(model.parameters(), sparse=sparse, **hp)
    if method == "sgdm":
        if "lr" not in hp:
            raise WorkloadError("sgdm needs a learning rate: it is run over the experiment's sgdm_lr grid.")
        return torch.optim.SGD(model.parameters(), **hp)
    if method in torch_members.REGISTRY:
        return torch_members.get_optimizer(method).factory(model.parameters(), **torch_members.check_hp(method, hp))
    raise WorkloadError(f"unknown method {method!r} for the workload family; use one of {', '.join(METHODS)}.")


def front_end(method: str, hp: Mapping[str, Any], wl: Mapping[str, Any], data: Data) -> dict[str, Any] | None:
    """The optimizer's resolved constructor settings on this workload's model (``optimizer.defaults``: the
    package's defaults with ``hp`` applied), or None when the front-end refuses the model. Part of the member
    key, so that a library whose defaults change (a new ``VSGD`` default, say) gets new members, not old ones."""
    model = build_model(wl, data)
    try:
        opt = make_optimizer(method, hp, model, wl)
    except (TypeError, NotImplementedError):
        return None
    out = {k: list(v) if isinstance(v, tuple) else v for k, v in opt.defaults.items()
           if isinstance(v, (bool, int, float, str, tuple, type(None)))}
    if isinstance(getattr(opt, "curvature", None), str):  # VSGD: the curvature estimator "auto" chose
        out["curvature"] = opt.curvature
    if isinstance(getattr(opt, "cap_step", None), (bool, str)):  # VSGD's step cap (vsgd/stepcap.py): True, "checked"
        out["cap_step"] = opt.cap_step
    if hasattr(opt, "close"):
        opt.close()
    return out


def settings_for(method: str, cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The hyper-parameter settings a method runs with: none (defaults) but SGD-momentum's grid."""
    if method == "sgdm":
        return [{"lr": float(lr), "momentum": float(cfg.get("sgdm_momentum", 0.9))} for lr in cfg["sgdm_lr"]]
    if method not in METHODS:
        raise WorkloadError(f"unknown method {method!r} for the workload family; use one of {', '.join(METHODS)}.")
    return [{}]


# -- one member ---------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor) -> tuple[float, float]:
    """(error in percent, mean cross-entropy) over the whole of (x, y)."""
    wrong, loss = 0, 0.0
    for a in range(0, len(x), EVAL_BATCH):
        out = model(x[a : a + EVAL_BATCH])
        loss += float(F.cross_entropy(out, y[a : a + EVAL_BATCH], reduction="sum"))
        wrong += int((out.argmax(1) != y[a : a + EVAL_BATCH]).sum())
    return 100.0 * wrong / len(x), loss / len(x)


def minibatch_order(n: int, batch: int, steps: int, generator: torch.Generator) -> Iterator[Tensor]:
    """The indices of ``steps`` minibatches of ``batch`` rows out of ``n``: a fresh permutation from ``generator``
    whenever fewer than ``batch`` rows of the current one are left (whole minibatches only)."""
    perm, pos = torch.randperm(n, generator=generator), 0
    for _ in range(steps):
        if pos + batch > n:
            perm, pos = torch.randperm(n, generator=generator), 0
        yield perm[pos : pos + batch]
        pos += batch


def train_member(wl: Mapping[str, Any], data: Data, method: str, hp: Mapping[str, Any], seed: int,
                 epochs: float) -> MemberResult:
    """Train one member: init from ``seed``, sample order from a generator seeded ``seed + 7919`` (as the paper's
    family), minibatches of ``wl.batch_size``, ``epochs`` passes over the fixed training subset."""
    torch.manual_seed(seed)
    model = build_model(wl, data)
    try:
        opt = make_optimizer(method, hp, model, wl)
    except (TypeError, NotImplementedError) as exc:
        raise Unsupported(f"{method} on {wl['name']}: {exc}") from None
    schedule_free = method in torch_members.REGISTRY and torch_members.get_optimizer(method).schedule_free
    if schedule_free:
        opt.train()
    order_gen = torch.Generator().manual_seed(seed + 7919)
    n, B = len(data.x_train), int(wl["batch_size"])
    per_epoch = n // B  # whole minibatches only
    steps = max(1, round(per_epoch * epochs))
    checks = sorted({round(steps * i / CURVE_POINTS) for i in range(CURVE_POINTS + 1)})
    n_eval = min(n, int(wl.get("n_train_eval", n)))
    curve: list[dict[str, Any]] = []

    def point(step: int) -> dict[str, Any]:
        if schedule_free:
            opt.eval()
        model.eval()
        tr_err, tr_loss = evaluate(model, data.x_train[:n_eval], data.y_train[:n_eval])
        te_err, te_loss = evaluate(model, data.x_test, data.y_test)
        model.train()
        if schedule_free:
            opt.train()
        return {"step": step, "epoch": step / per_epoch, "train_error": tr_err, "train_loss": tr_loss,
                "test_error": te_err, "test_loss": te_loss}

    t0 = time.perf_counter()
    curve.append(point(0))
    diverged_step = None
    for step, idx in enumerate(minibatch_order(n, B, steps, order_gen), start=1):
        # the usual closure (zero grads, mean loss, backward); vSGD-fd also takes its per-sample gradients from it
        x, y = data.x_train[idx], data.y_train[idx]
        try:
            loss = opt.step(PerSampleClosure(model, F.cross_entropy, x, y))
        except (AssertionError, RuntimeError, ValueError, ZeroDivisionError):
            # an optimizer that raises on non-finite values has diverged (DoG asserts G > 0; VSGD's sampled
            # curvature cannot draw labels from a non-finite output); on finite ones the error is the code's,
            # and it propagates (the runner records the member as failed)
            with torch.no_grad():
                finite = bool(torch.isfinite(F.cross_entropy(model(x), y))) and all(
                    bool(torch.isfinite(p).all()) and (p.grad is None or bool(torch.isfinite(p.grad).all()))
                    for p in model.parameters())
            if finite:
                raise
            loss = None
        if loss is None or not math.isfinite(float(loss.detach())) or (step in checks and not all(
                bool(torch.isfinite(p).all()) for p in model.parameters())):
            diverged_step = step
            break
        if step in checks:
            curve.append(point(step))
    seconds = time.perf_counter() - t0
    if hasattr(opt, "close"):
        opt.close()
    member = Member(seed, dict(hp))
    if diverged_step is not None:
        return MemberResult(member, 100.0, 100.0, math.inf, math.inf, True, diverged_step, curve, seconds, seconds, 1,
                            diverged_step)
    last = curve[-1]
    return MemberResult(member, last["train_error"], last["test_error"], last["train_loss"], last["test_loss"], False,
                        None, curve, seconds, seconds, 1, steps)


# -- the runner's entry -------------------------------------------------------------------------------------
def workload_config(name: str) -> dict[str, Any]:
    from experiments.run import group_config

    return dict(OmegaConf.to_container(group_config("workload", name), resolve=True))


def network_of(wl: Mapping[str, Any]) -> dict[str, Any]:
    """What of a workload the member key covers: everything in its config but the prose."""
    return {"family": FAMILY, "workload": {k: v for k, v in wl.items() if k not in ("epochs", "doc")}}


def family_paths(cfg: DictConfig) -> tuple[Path, Path | None]:
    from experiments.run import records_path, store_path

    records = records_path(cfg)
    return store_path(cfg) / FAMILY, (records / FAMILY if records is not None else None)


def run(cfg: DictConfig):
    """``entry`` of conf/experiment/table4.yaml: every (workload, method) job, member by member, resumable."""
    from experiments.run import UserError

    store, records = family_paths(cfg)
    results.check_store(store)
    if records is not None:
        results.sync(store, records)
    names = list(cfg.workloads)
    methods = list(cfg.optimizers)
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise UserError(f"unknown method(s) {bad} for the workload family; use {', '.join(METHODS)}.")
    seeds = range(int(cfg.seed_offset), int(cfg.seed_offset) + int(cfg.seeds))
    hashes = []
    for name in names:
        try:
            wl = workload_config(name)
            data = build_data(wl, cfg.data.root)
        except WorkloadError as exc:
            raise UserError(str(exc)) from None
        epochs = float(cfg.epochs if cfg.get("epochs") is not None else wl["epochs"])
        network = network_of(wl)
        for method in methods:
            members = [(hp, s) for hp in settings_for(method, cfg) for s in seeds]
            fronts = [front_end(method, hp, wl, data) for hp, _ in members]
            if any(f is None for f in fronts):  # not a result: nothing is recorded, a later run trains it
                print(f"[{wl['name']} {method}] skipped: the front-end refuses the model (see "
                      f"experiments.workloads.make_optimizer)", flush=True)
                continue
            keys = [results.member_key(wl["name"], {**network, "front_end": f}, epochs=epochs, optimizer=method, hp=hp,
                                       seed=s, data_md5=data.checksum, dtype="float32")
                    for (hp, s), f in zip(members, fronts)]
            todo = [(hp, s, results.config_hash(k), f) for (hp, s), k, f in zip(members, keys, fronts)]
            hashes += [t[2] for t in todo]
            todo = [t for t in todo if not results.finished(store, wl["name"], method, t[2], {**network, "front_end": t[3]})]
            print(f"[{wl['name']} {method}] {len(members)} members, {len(members) - len(todo)} already in {store}; "
                  f"{len(todo)} to train", flush=True)
            for hp, seed, chash, front in todo:
                try:
                    out = train_member(wl, data, method, hp, seed, epochs)
                except (RuntimeError, ValueError, AssertionError, ZeroDivisionError) as exc:  # not a result
                    results.write_failure(store, wl["name"], method, chash, {"error": f"{type(exc).__name__}: {exc}",
                                                                              "seed": seed, "hp": hp})
                    print(f"[{wl['name']} {method}] seed {seed} FAILED ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200]}); recorded under {store / 'failed'}, moving on", flush=True)
                    continue
                rec = {"benchmark": wl["name"], "optimizer": method, "seed": seed, "hp": hp, "family": FAMILY,
                       "train_error": out.train_error, "test_error": out.test_error, "train_loss": out.train_loss,
                       "test_loss": out.test_loss, "diverged": out.diverged, "diverged_step": out.diverged_step,
                       "seconds": out.seconds, "steps": out.steps, "epochs": epochs, "device": "cpu",
                       "data_md5": data.checksum, "data_original": data.original, "data_note": data.note,
                       "config_hash": chash, "experiment": str(cfg.get("experiment_name") or "adhoc"),
                       "dtype": "float32", "front_end": front, "curve": out.curve,
                       "threads": torch.get_num_threads()}
                results.write_record(store, rec, replace=False)
                if records is not None:
                    results.sync(store, records, only=(wl["name"], method))
                print(f"[{wl['name']} {method}] seed {seed} {hp or ''}: test {out.test_error:.2f}% "
                      f"train loss {out.train_loss:.4g}{f' DIVERGED at step {out.diverged_step}' if out.diverged else ''}"
                      f" ({out.seconds:.1f}s, {out.steps} steps)", flush=True)
    df = results.load(store)
    return df[df.config_hash.isin(set(hashes))].copy() if len(df) else df
