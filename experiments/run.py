"""The one entry to every run (Hydra).

    python -m experiments.run benchmark=m0 optimizer=sgd tuned=table1 seeds=2
    python -m experiments.run benchmark=m1 optimizer=sgd grid=sgd          # the paper's tuning grid
    python -m experiments.run experiment=table2 benchmark=m1                # a packaged experiment, one benchmark
    python -m experiments.run -m benchmark=m0,m1 optimizer=sgd,adagrad tuned=table1

``main`` is a thin ``@hydra.main`` over :func:`run`, which tests call directly with a composed config.
A job is one (benchmark, optimizer) pair; its members (settings x seeds) train as packed ensembles,
chunk by chunk, and every finished member is written to the results store at once, so a killed run
resumes where it stopped: members already in the store are skipped (and the run says so).
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import importlib.util
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from experiments import results
from experiments.data import PROJECT_ROOT, DataError, load
from experiments.mlp import EVAL_BATCH, FusedSGD, MLPSpec
from experiments.trainer import TENSOR_EXTRAS, Member, Snapshot, Stopped, state_elements, train_ensemble
from vsgd import __version__ as code_version
from vsgd.core import Rule, get_rule

CONF = PROJECT_ROOT / "conf"
TABLE1 = PROJECT_ROOT / "reference" / "paper_table1.csv"
TABLE1_COLUMNS = {"eta0": "eta0", "gamma_times_ntrain": "gamma", "mu": "mu", "tau": "tau"}


class UserError(Exception):
    """A mistake in the command line or config: printed as one message, no traceback (exit status 2)."""


class StoreError(Exception):
    """The store or the records could not be written (a full disk, say): one message, exit status 4."""


FAILED: list = []  # members whose chunk failed in this process (reported at the end; exit status 3)


# -- configs ------------------------------------------------------------------------------------
def group_config(group: str, name: str) -> DictConfig:
    """Load ``conf/<group>/<name>.yaml`` (for experiments that list several benchmarks/optimizers)."""
    path = CONF / group / f"{name}.yaml"
    if not path.is_file():
        have = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
        raise UserError(f"Unknown {group} {name!r}. Available: {', '.join(have)}.")
    return OmegaConf.load(path)


def hyperparams_of(opt: DictConfig) -> dict[str, Any]:
    """An optimizer config's hyper-parameters: every key but ``name``."""
    return {k: v for k, v in OmegaConf.to_container(opt, resolve=True).items() if k != "name" and not k.startswith("_")}


def table1_setting(benchmark: str, optimizer: str) -> dict[str, float] | None:
    """Table 1's best hyper-parameters of a baseline on a benchmark (paper 1), or None."""
    with open(TABLE1) as f:
        rows = [r for r in csv.DictReader(f) if r["benchmark"] == benchmark and r["method"] == optimizer]
    if not rows:
        return None
    return {TABLE1_COLUMNS[c]: float(v) for c, v in rows[0].items() if c in TABLE1_COLUMNS and v}


def table1_methods(benchmark: str) -> list[str]:
    with open(TABLE1) as f:
        return sorted({r["method"] for r in csv.DictReader(f) if r["benchmark"] == benchmark})


def tunable(rule: Rule) -> bool:
    """Whether a rule has hyper-parameters that Table 1 tunes (vSGD has none: that is the claim)."""
    return any(h in TABLE1_COLUMNS.values() for h in rule.hyperparams)


@dataclass
class Job:
    bench: DictConfig
    opt: DictConfig
    grid: dict[str, list] | None


def jobs_from(cfg: DictConfig) -> list[Job]:
    """The (benchmark, optimizer) pairs a config asks for, with their grids."""
    benches = [group_config("benchmark", b) for b in cfg.benchmarks] if cfg.get("benchmarks") else [cfg.benchmark]
    opts = [group_config("optimizer", o) for o in cfg.optimizers] if cfg.get("optimizers") else [cfg.optimizer]
    jobs = []
    for bench, opt in itertools.product(benches, opts):
        grid = None
        if cfg.get("grid_per_optimizer"):
            path = CONF / "grid" / f"{opt.name}.yaml"
            grid = dict(OmegaConf.to_container(OmegaConf.load(path), resolve=True)) if path.is_file() else None
        elif cfg.get("grid"):
            grid = dict(OmegaConf.to_container(cfg.grid, resolve=True))
        jobs.append(Job(bench, opt, grid))
    return jobs


def settings_of(cfg: DictConfig, job: Job, name: str, is_tunable: bool) -> list[dict[str, Any]] | None:
    """The job's settings; None when the job is to be skipped (the paper did not run that pair)."""
    base = hyperparams_of(job.opt)
    in_table1 = table1_setting(job.bench.name, name)
    if cfg.get("skip_missing_table1") and is_tunable and in_table1 is None:
        return None
    if job.grid:
        names = [k for k in job.grid if not k.startswith("_")]
        return [{**base, **dict(zip(names, values))} for values in itertools.product(*(job.grid[n] for n in names))]
    if cfg.get("tuned"):
        if cfg.tuned != "table1":
            raise UserError(f"Unknown tuned={cfg.tuned!r}; the only published tuning is tuned=table1.")
        if is_tunable:
            if in_table1 is None:
                raise UserError(
                    f"Table 1 of the paper has no setting of {name} for {job.bench.name} (it has: "
                    f"{', '.join(table1_methods(job.bench.name))}). Drop tuned=table1 and give the "
                    "hyper-parameters, or run its grid (grid=...)."
                )
            return [{**base, **in_table1}]
    return [base]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"device={name!r} is not a device; use auto, cpu, cuda or cuda:N.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={name} was asked for but CUDA is not available here; use device=auto or device=cpu.")
    return dev


CPU_CACHE_BYTES = 24e6  # keep a chunk's working set within this CPU's 32 MB L3 where the model allows
GPU_MEMORY_FRACTION = 0.9  # of the device's free memory a chunk may fill (the rest: allocator slack, workspaces)


def auto_chunk_size(spec: MLPSpec, fused: bool, dtype: torch.dtype, device: torch.device, n_members: int, *,
                    rule: Rule | None = None, reserve_bytes: float = 0.0) -> int:
    """Members per chunk from the parameter and state sizes.

    On the CPU a step is bound by memory traffic: a chunk whose tensors stay in the last-level
    cache runs several times faster per member than one that streams from DRAM, so the chunk is
    sized to the cache (at least one member). On CUDA a chunk is as large as the free memory holds
    (:func:`chunk_for_memory`, :func:`member_bytes` of the ``rule``; ``reserve_bytes``: what the chunk puts on
    the device besides its members, the data): a whole grid in one chunk where it fits, so that each launch
    does as much work as it can.
    """
    if device.type == "cuda":
        per_member = (member_bytes(spec, rule, dtype) if rule is not None
                      else spec.n_params * 14 * torch.finfo(dtype).bits // 8)  # a torch.optim member: a bound
        free, _ = torch.cuda.mem_get_info(device)
        return chunk_for_memory(free, per_member, n_members, reserve_bytes=reserve_bytes)
    if fused:  # weights the fused step touches per step: 3 passes (in place: read, read-write; deferred:
        # read forward, read backward, the pending term), or 3 per window of ``rank`` steps for a first
        # layer computed a window ahead (FusedSGD). Measured best or within 2% (benchmarks/fused_defer.py).
        step = FusedSGD(spec)
        elements = sum(a * b * (3 / step.rank if k == 0 and step.deferred(a, b, first=True) else 3) + 3 * b
                       for k, (a, b) in enumerate(zip(spec.layers[:-1], spec.layers[1:])))
    else:
        elements = spec.n_params * 14  # params, grads, extras, state, temps
    per_member = elements * torch.finfo(dtype).bits // 8
    return max(1, min(n_members, int(CPU_CACHE_BYTES // per_member)))


def member_bytes(spec: MLPSpec, rule: Rule, dtype: torch.dtype) -> int:
    """Device memory one lock-step member of ``rule`` holds at most, in bytes: its parameters and the rule's
    state (counted from ``rule.init``, as benchmarks/roofline.py counts them), the step's parameter-sized
    temporaries (the gradient, each tensor extra the rule declares, the new state before it is stored into
    the old), and the evaluation's: activations (``EVAL_BATCH`` samples through the widest layer, three
    arrays at a time: pre-activation, activation, log-probabilities) and, for a rule with per-parameter rates,
    their min/median/max (``trainer._rate_stats``: each rate spread to its parameter's shape, then
    concatenated, then the median's copy: 3 P)."""
    P, S = spec.n_params, state_elements(rule, spec)
    extras = sum(e in TENSOR_EXTRAS for e in rule.extras)
    evaluation = 3 * EVAL_BATCH * max(spec.layers[1:]) + (3 * P if rule.rates is not None else 0)
    return (P + S + P + extras * P + S + evaluation) * torch.finfo(dtype).bits // 8


def chunk_for_memory(free_bytes: float, per_member: float, n_members: int, *, reserve_bytes: float = 0.0,
                     fraction: float = GPU_MEMORY_FRACTION) -> int:
    """Members per chunk on a device with ``free_bytes`` free, ``per_member`` bytes each: all ``n_members`` in
    one chunk where ``fraction`` of the free memory less ``reserve_bytes`` holds them, else the fewest chunks
    that fit, of equal size (no small last chunk), and at least one member a chunk."""
    if per_member <= 0 or n_members < 1:
        raise ValueError(f"chunk_for_memory: per_member={per_member} and n_members={n_members} must be positive.")
    most = max(1, int((free_bytes * fraction - reserve_bytes) // per_member))
    chunks = -(-n_members // most)
    return -(-n_members // chunks)


@dataclass
class Trainer:
    """How a job's members are trained: a pure rule in the ensemble trainer, or a PyPI optimizer."""

    name: str
    train: Any  # train(members, data, *, epochs, device, dtype, progress) -> list[MemberResult]
    check_hp: Any  # check_hp(settings) -> validated settings (raises ValueError)
    tunable: bool  # whether Table 1 tunes it
    fused: bool  # whether the step is the fused SGD step (drives the chunk size)
    snapshots: bool = False  # whether ``train`` takes ``snapshot=`` (the lock-step rules' trainer)
    rule: Rule | None = None  # the lock-step rule (sizes the chunk on CUDA)


def trainer_for(name: str, spec: MLPSpec, *, compile: bool = False) -> Trainer:
    """Rules (vsgd.core registry) go through the lock-step ensemble trainer; today's tuning-free PyPI
    optimizers (experiments.torch_members, issue 9) through their own ``torch.optim`` objects."""
    from experiments import torch_members

    if name in torch_members.REGISTRY:
        def train_torch(members, data, **kw):
            return torch_members.train_torch_members(spec, name, members, data, compile=compile, **kw)

        return Trainer(name, train_torch, lambda s: torch_members.check_hp(name, s), False, False)
    try:
        rule = get_rule(name)
    except ValueError as exc:
        raise UserError(str(exc).replace(".", f" (or one of {', '.join(sorted(torch_members.REGISTRY))}).", 1)) from None

    def train_rule(members, data, **kw):
        return train_ensemble(spec, rule, members, data, compile=compile, **kw)

    return Trainer(name, train_rule, rule.check_hp, tunable(rule), rule.scalar_rate is not None and not rule.extras,
                   snapshots=True, rule=rule)


def compile_step(cfg: DictConfig) -> bool:
    """Whether to ``torch.compile`` the generic (non-SGD) step.

    ``auto``: yes where the compiler's toolchain is present (a C++ compiler for the CPU, Triton for
    CUDA). Measured on this CPU (benchmarks/compile_step.csv): 1.8-15x for vSGD-l, SMD and Almeida on
    M0 M1 M2 C1, for 2-35 s of compilation per graph. ``true`` / ``false`` force it.
    """
    value = cfg.get("compile", "auto")
    if isinstance(value, bool):
        return value
    if value != "auto":
        raise UserError(f"compile={value!r}: expected auto, true or false.")
    if torch.cuda.is_available() and str(cfg.get("device", "auto")) != "cpu":
        return importlib.util.find_spec("triton") is not None
    return any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "clang++"))


# -- one job ------------------------------------------------------------------------------------
def spec_of(bench: DictConfig) -> MLPSpec:
    """The network of a ``conf/benchmark/<name>.yaml`` config (raises ValueError on a bad one)."""
    return MLPSpec(tuple(bench.layers), bench.loss, float(bench.l2), bool(bench.get("l2_biases", False)))


def member_settings(cfg: DictConfig, job: Job, trainer: Trainer) -> list[dict[str, float]] | None:
    """The job's hyper-parameter settings as its members carry them (key and record): those the config names
    (conf/optimizer/*.yaml, the grid, the command line), validated; one it leaves out runs at the rule's default,
    unkeyed, so that a rule that gains a hyper-parameter (vSGD's h_rel and h_var, session 24) keeps its records'
    hashes (tests/test_committed_results.py). None: the paper did not run the method there."""
    settings = settings_of(cfg, job, trainer.name, trainer.tunable)
    if settings is None:
        return None
    try:
        checked = [trainer.check_hp(s) for s in settings]
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return [{k: v for k, v in c.items() if k in s} for c, s in zip(checked, settings)]


def run_job(cfg: DictConfig, job: Job, logger: Any = None) -> list[str]:
    """Train the job's members missing from the store; return the config hashes of all its members."""
    bench = job.bench
    try:
        spec = spec_of(bench)
    except ValueError as exc:
        raise UserError(f"benchmark {bench.name}: {exc}") from None
    trainer = trainer_for(job.opt.name, spec, compile=compile_step(cfg))
    name = trainer.name
    epochs = float(cfg.epochs if cfg.get("epochs") is not None else bench.epochs)
    settings = member_settings(cfg, job, trainer)
    if settings is None:
        print(f"[{bench.name} {name}] skipped: the paper did not run it (no Table 1 row).", flush=True)
        return []
    dtype = {"float32": torch.float32, "float64": torch.float64}[cfg.dtype]
    device = resolve_device(cfg.device)
    seeds = range(int(cfg.seed_offset), int(cfg.seed_offset) + int(cfg.seeds))
    members = [Member(seed, s) for s in settings for seed in seeds]

    try:
        data = load(bench.dataset, cfg.data.root)
    except DataError as exc:
        raise UserError(str(exc)) from None
    store = store_path(cfg)
    records = records_path(cfg)

    network = results.network_of(bench)

    def key(m: Member) -> dict[str, Any]:
        return results.member_key(bench.name, network, epochs=epochs, optimizer=name, hp=m.hp, seed=m.seed,
                                  data_md5=data.md5, dtype=cfg.dtype)

    hashes = [results.config_hash(key(m)) for m in members]
    # a record counts only if sound (it parses, has the fields, its hash is its content's); a damaged one is
    # moved aside and reported, and its member trained again
    todo = [(m, h) for m, h in zip(members, hashes) if not results.finished(store, bench.name, name, h, network)]
    failed = [(m, h) for m, h in todo if results.failure_path(store, bench.name, name, h).is_file()]
    if failed and not cfg.get("retry_failed"):
        todo = [(m, h) for m, h in todo if (m, h) not in failed]
    print(f"[{bench.name} {name}] {len(members)} members ({len(settings)} settings x {len(seeds)} seeds): "
          f"{len(members) - len(todo) - (0 if cfg.get('retry_failed') else len(failed))} already in the store "
          f"{store}, skipped; {len(todo)} to train on {device}."
          + (f" {len(failed)} failed before and are skipped (retry_failed=true reruns them)."
             if failed and not cfg.get("retry_failed") else ""), flush=True)
    if not todo:
        return hashes

    data_bytes = (data.x_train.numel() + data.x_test.numel()) * torch.finfo(dtype).bits // 8  # on the device too
    chunk = int(cfg.chunk_size) if cfg.get("chunk_size") else auto_chunk_size(
        spec, trainer.fused, dtype, device, len(todo), rule=trainer.rule, reserve_bytes=data_bytes)
    parts = saved_chunks(store, bench.name, name, todo) if cfg.get("snapshot_minutes") else []
    rest = [mh for mh in todo if not any(mh in p for p in parts)]
    parts += [rest[i : i + chunk] for i in range(0, len(rest), chunk)]
    n_chunks = len(parts)
    steps = round(data.n_train * epochs)
    bar = _progress_bar(cfg, f"{bench.name} {name}", steps * len(todo))
    job_start = time.perf_counter()
    failures: list = []
    for c, part in enumerate(parts):
        t0 = time.perf_counter()
        estimate = {"printed": c > 0}

        def progress(n: int, part=part, estimate=estimate) -> None:
            """Called every 1000 steps with the member-updates done; the first chunk prints an estimate
            measured over its steps 1000-4000 (after compilation and the slow start)."""
            if bar is not None:
                bar.update(n)
            estimate["done"] = estimate.get("done", 0) + n
            if "t1" not in estimate:
                estimate["t1"], estimate["done1"] = time.perf_counter(), estimate["done"]
            elif not estimate["printed"] and estimate["done"] - estimate["done1"] >= 3000 * len(part):
                rate = (estimate["done"] - estimate["done1"]) / (time.perf_counter() - estimate["t1"])
                total = steps * len(todo)
                estimate["printed"] = True
                _write(bar, f"[{bench.name} {name}] measured {rate:,.0f} member-updates/s: "
                            f"estimated wall time for this job {total / rate / 60:.1f} min")

        snapshot = None
        if cfg.get("snapshot_minutes") and trainer.snapshots:
            snapshot = Snapshot(chunk_snapshot(store, bench.name, name, [h for _, h in part]),
                                every_s=60.0 * float(cfg.snapshot_minutes), listing=json.dumps([h for _, h in part]))
        try:
            out = trainer.train([m for m, _ in part], data, epochs=epochs, device=device, dtype=dtype,
                                progress=progress,  # curve_at_start: Supp. Fig. 9 (a point at step 0)
                                **({"curve_start": True} if cfg.get("curve_at_start") else {}),
                                **({"snapshot": snapshot} if snapshot is not None else {}))
        except Stopped as exc:  # SIGTERM (a deadline): the chunks before are in the store; this one saved or lost
            _write(bar, f"[{bench.name} {name}] chunk {c + 1}/{n_chunks} {exc}"
                        + ("; the same command resumes it." if snapshot is not None else
                           "; its members are trained again by the same command (snapshot_minutes=N saves it)."))
            raise
        except (RuntimeError, MemoryError) as exc:  # out of memory, a CUDA error...: record, report, move on
            for m, chash in part:
                results.write_failure(store, bench.name, name, chash,
                                      {"error": f"{type(exc).__name__}: {exc}", "seed": m.seed, "hp": m.hp,
                                       "chunk_members": len(part), "device": device_name(device)})
            _write(bar, f"[{bench.name} {name}] chunk {c + 1}/{n_chunks} FAILED ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200]}); its {len(part)} members (seeds/settings: "
                        f"{[(m.seed, m.hp) for m, _ in part][:4]}{' ...' if len(part) > 4 else ''}) are recorded "
                        f"under {store / 'failed'}; moving on. Rerun with retry_failed=true (and a smaller "
                        "chunk_size) to train them.")
            failures.extend(part)
            continue
        for r, (_, chash) in zip(out, part):
            rec = {"benchmark": bench.name, "optimizer": name, "seed": r.member.seed, "hp": r.member.hp,
                   "train_error": r.train_error, "test_error": r.test_error, "train_loss": r.train_loss,
                   "test_loss": r.test_loss, "diverged": r.diverged, "diverged_step": r.diverged_step,
                   "seconds": r.seconds, "chunk_seconds": r.chunk_seconds, "chunk_members": r.chunk_members,
                   "device": device_name(device), "data_md5": data.md5, "data_original": data.original,
                   "config_hash": chash, "epochs": epochs, "steps": r.steps,
                   "experiment": str(cfg.get("experiment_name") or "adhoc"), "code_version": code_version,
                   "dtype": cfg.dtype, "curve": r.curve}
            try:  # a second writer of the member (two runs of one job) keeps the first's record
                results.write_record(store, rec, replace=False)
            except OSError as exc:
                raise StoreError(f"[{bench.name} {name}] the record of seed {r.member.seed} could not be written "
                                 f"to the store {store} ({exc.strerror or exc}); the members finished before it "
                                 "are kept. Free the space (or fix the folder) and run the same command again: "
                                 "it trains only what is missing.") from None
            if logger is not None:
                logger.log_member(rec)
        if snapshot is not None:  # every member of the chunk is in the store now
            snapshot.discard()
            snapshot.path.with_suffix(".json").unlink(missing_ok=True)
        if records is not None:  # git add results/records keeps them
            try:
                results.sync(store, records, only=(bench.name, name))
            except OSError as exc:
                raise StoreError(f"[{bench.name} {name}] the records {records} could not be synced with the store "
                                 f"({exc.strerror or exc}); the store keeps every finished member. Fix the cause "
                                 "and run the same command again (or: python -m experiments.results).") from None
        elapsed = time.perf_counter() - t0
        rate = steps * len(part) / max(elapsed, 1e-9)
        left = steps * sum(len(p) for p in parts[c + 1 :])
        diverged = sum(r.diverged for r in out)
        msg = (f"[{bench.name} {name}] chunk {c + 1}/{n_chunks}: {len(part)} members in {elapsed:.1f}s "
               f"({rate:,.0f} member-updates/s){f', {diverged} diverged' if diverged else ''}")
        if left > 0:
            msg += f"; about {max(left, 0) / rate / 60:.1f} min left for this job"
        _write(bar, msg)
    if bar is not None:
        bar.close()
    print(f"[{bench.name} {name}] done in {time.perf_counter() - job_start:.1f}s"
          + (f"; {len(failures)} members FAILED" if failures else ""), flush=True)
    if failures:
        FAILED.extend(failures)
    return hashes


def chunk_snapshot(store: Path, benchmark: str, optimizer: str, hashes: list[str]) -> Path:
    """The snapshot file of a chunk of members (their config hashes); at its first save a ``.json`` beside it
    lists them, so that a later run of the job finds the chunk again whatever its chunk size (:func:`saved_chunks`)."""
    digest = hashlib.sha256(" ".join(hashes).encode()).hexdigest()[:16]
    return Path(store) / "partial" / benchmark / optimizer / f"{digest}.pt"


def saved_chunks(store: Path, benchmark: str, optimizer: str, todo: list) -> list[list]:
    """The chunks of ``todo`` ((member, hash) pairs) that have a snapshot from an earlier, killed run: they are
    trained first, as the same chunks, so that they resume where they stopped."""
    by_hash = {h: (m, h) for m, h in todo}
    parts = []
    for listing in sorted((Path(store) / "partial" / benchmark / optimizer).glob("*.json")):
        try:
            hashes = json.loads(listing.read_text())
        except (OSError, ValueError):
            continue
        if listing.with_suffix(".pt").is_file() and hashes and all(h in by_hash for h in hashes) \
                and not any(h in {x for _, x in p} for p in parts for h in hashes):
            parts.append([by_hash[h] for h in hashes])
    return parts


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def store_path(cfg: DictConfig) -> Path:
    return Path(cfg.store).expanduser() if cfg.get("store") else results.DEFAULT_STORE


def records_path(cfg: DictConfig) -> Path | None:
    """The committed copy of the store the run keeps in sync (experiments/results.py: sync), or None.
    ``records: auto`` means results/records for the project's own store and nothing for a store=PATH."""
    return results.records_for(store_path(cfg), cfg.get("records", "auto"))


def _progress_bar(cfg: DictConfig, desc: str, total: int):
    if not cfg.get("progress"):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="upd", unit_scale=True, dynamic_ncols=True, mininterval=2.0, file=sys.stderr)


def _write(bar, msg: str) -> None:
    if bar is not None:
        bar.write(msg)
    else:
        print(msg, flush=True)


# -- the run ------------------------------------------------------------------------------------
def call_entry(cfg: DictConfig):
    module, _, fn = str(cfg.entry).partition(":")
    try:
        target = getattr(importlib.import_module(module), fn)
    except (ImportError, AttributeError):
        raise UserError(f"entry={cfg.entry!r} does not name a function (expected 'package.module:function').") from None
    return target(cfg)


def check_cfg(cfg: DictConfig) -> None:
    """Checks of the run-level settings, before any work starts."""
    if number(cfg, "seeds", int, "the number of seeds per setting, e.g. seeds=2") < 1:
        raise UserError(f"seeds={cfg.seeds} must be >= 1 (the number of seeds per setting).")
    number(cfg, "seed_offset", int, "the first seed, e.g. seed_offset=0")
    if cfg.get("epochs") is not None and not number(cfg, "epochs", float, "e.g. epochs=6, or null for the "
                                                     "benchmark's") > 0:
        raise UserError(f"epochs={cfg.epochs} must be > 0.")
    if cfg.dtype not in ("float32", "float64"):
        raise UserError(f"dtype={cfg.dtype!r} is not supported; use float32 or float64.")
    if cfg.get("chunk_size") is not None and number(cfg, "chunk_size", int, "members per chunk, or null") < 1:
        raise UserError(f"chunk_size={cfg.chunk_size} must be >= 1 (or null for automatic).")
    if cfg.get("threads") is not None:
        number(cfg, "threads", int, "torch CPU threads, e.g. threads=1, or null")
    compile_step(cfg)  # a bad value fails here, before any training
    resolve_device(str(cfg.device))
    check_store_writable(store_path(cfg))


def check_store_writable(store: Path) -> None:
    """Create the store if needed, prove it writable, stamp or check its version; else one UserError."""
    try:
        store.mkdir(parents=True, exist_ok=True)
        # A probe of this process's own: two runners may start on one store at once, and with one shared probe
        # name the second's unlink would find the file gone (and stop a good run with "not writable").
        fd, probe = tempfile.mkstemp(dir=store, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
        results.check_store(store)
    except OSError as exc:
        raise UserError(f"The results store {store} is not writable ({exc.strerror}); choose another with store=PATH.") from None
    except results.StoreVersionError as exc:
        raise UserError(str(exc)) from None


def number(cfg: DictConfig, key: str, kind: type, fix: str) -> int | float:
    """``cfg[key]`` as an int or a float, or a UserError naming the key and the fix (``seeds=abc``)."""
    value = cfg.get(key)
    try:
        if isinstance(value, bool) or (kind is int and float(value) != int(float(value))):
            raise ValueError
        return kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError, OverflowError):
        what = "a whole number" if kind is int else "a number"
        raise UserError(f"{key}={value!r} is not {what}; give {fix}.") from None


GROUPS = ("benchmark", "optimizer", "grid", "logger", "experiment")  # conf/<group>/<name>.yaml


def check_overrides(argv: list[str]) -> None:
    """A config-group choice on the command line that names no file (``grid=nosuch``, ``experiment=tabel1``)
    is one clear error before Hydra composes (whose own report ends in a hint about HYDRA_FULL_ERROR)."""
    for arg in argv:
        key, eq, value = arg.partition("=")
        key = key.lstrip("+~")
        if arg.startswith("-") or not eq or key not in GROUPS or value in ("", "null") or set(value) & set("()${}[]*"):
            continue  # options, other keys, and sweeps Hydra expands itself
        have = sorted(p.stem for p in (CONF / key).glob("*.yaml"))
        for choice in value.split(","):
            if choice not in have:
                raise UserError(f"{key}={choice}: there is no conf/{key}/{choice}.yaml; choose one of "
                                f"{', '.join(have)}.")


def sync_records(cfg: DictConfig) -> None:
    """Restore the committed records into the store and add the store's new members to them."""
    store, records = store_path(cfg), records_path(cfg)
    if records is None:
        return
    try:
        added, restored = results.sync(store, records)
    except OSError as exc:
        raise UserError(f"The committed records {records} could not be synced with the store ({exc}); "
                        "fix the folder's permissions, or run with records=null.") from None
    except results.StoreVersionError as exc:
        raise UserError(f"{exc} (records={records})") from None
    if added or restored:
        print(f"[records] {restored} members restored from {records} into the store {store}, {added} added to "
              f"{records} from it", flush=True)


def run(cfg: DictConfig) -> pd.DataFrame | Any:
    """Run what the config asks for; return the store's rows for its members (or the entry's result)."""
    check_cfg(cfg)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    from experiments.malloc import keep_freed_memory

    keep_freed_memory()  # large temporaries reused without page faults (see experiments/malloc.py)
    if cfg.get("entry"):
        return call_entry(cfg)
    sync_records(cfg)
    from experiments.logging import make_logger

    logger = make_logger(cfg)
    hashes: list[str] = []
    try:
        for job in jobs_from(cfg):
            hashes += run_job(cfg, job, logger)
    finally:
        if logger is not None:
            logger.finish()
    df = results.load(store_path(cfg))
    return df[df.config_hash.isin(set(hashes))].copy()


def summary_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "(no members)"
    hp_cols = sorted(c for c in df.columns if c.startswith("hp_") and df[c].notna().any())
    cols = ["benchmark", "optimizer", *hp_cols, "seed", "train_error", "test_error", "diverged", "seconds"]
    df = df.sort_values(["benchmark", "optimizer", *hp_cols, "seed"])
    return df.to_string(index=False, columns=cols, float_format=lambda v: f"{v:.4g}", na_rep="")


def apply_cli_selection(cfg: DictConfig) -> None:
    """`experiment=table2 benchmark=m1`: an explicit benchmark/optimizer narrows the experiment's lists."""
    from hydra.core.hydra_config import HydraConfig

    task = HydraConfig.get().overrides.task
    for group, key in (("benchmark", "benchmarks"), ("optimizer", "optimizers")):
        chosen = [o.split("=", 1)[1] for o in task if o.split("=", 1)[0] == group]
        if chosen and cfg.get(key):
            OmegaConf.update(cfg, key, chosen, force_add=True)


SIGTERM_REPEAT_S = 2.0  # a SIGTERM sooner after the first is the same request (stop_on_sigterm)


def stop_on_sigterm() -> None:
    """SIGTERM (``timeout``'s deadline, benchmarks/cuda_queue.sh) stops the running chunk at its next divergence
    check (at most ``CHECK_EVERY`` steps), after it saves its snapshot (``snapshot_minutes=N``); the members
    finished before are in the store already. Exit status 5. A second SIGTERM ends the process at once, if it
    comes at least ``SIGTERM_REPEAT_S`` after the first: GNU ``timeout`` sends its signal to the command and
    then to its own process group, which holds the command too, so one deadline arrives as two SIGTERMs
    microseconds apart (on a lent H100 the runner took them as "stop now" and died mid-chunk, exit 143)."""
    import signal

    from experiments import trainer  # by module, not the Event itself: a launcher pickles main() by value with
    # the globals it uses, and an Event (a lock) cannot be pickled (tests/test_launchers.py)
    first: list[float] = []

    def handler(signum, frame):
        if trainer.STOP.is_set() and first and time.monotonic() - first[0] >= SIGTERM_REPEAT_S:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        if first:  # the same request again (timeout's process-group copy): already stopping
            return
        first.append(time.monotonic())
        trainer.STOP.set()
        print("[run] SIGTERM: stopping at the next divergence check.", file=sys.stderr, flush=True)

    signal.signal(signal.SIGTERM, handler)


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    stop_on_sigterm()
    try:
        apply_cli_selection(cfg)
        out = run(cfg)
    except Stopped:
        print("error: stopped by SIGTERM; run the same command again to go on.", file=sys.stderr)
        sys.exit(5)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(4)
    if isinstance(out, pd.DataFrame) and not cfg.get("entry"):
        print(summary_table(out))
    if FAILED:
        print(f"error: {len(FAILED)} members failed (see the messages above); rerun with retry_failed=true.",
              file=sys.stderr)
        sys.exit(3)


def cli() -> None:
    """``python -m experiments.run``: the command line checked, then Hydra."""
    try:
        check_overrides(sys.argv[1:])
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    main()


if __name__ == "__main__":
    cli()
