"""The one entry to every run (Hydra).

    python -m experiments.run benchmark=m0 optimizer=sgd tuned=table1 seeds=2
    python -m experiments.run benchmark=m1 optimizer=sgd grid=sgd          # the paper's tuning grid
    python -m experiments.run -m benchmark=m0,m1 optimizer=sgd,adagrad tuned=table1

``main`` is a thin ``@hydra.main`` over :func:`run`, which tests call directly with a composed config.
"""

from __future__ import annotations

import csv
import itertools
import math
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from experiments import results
from experiments.data import PROJECT_ROOT, DataError, load
from experiments.mlp import MLPSpec
from experiments.trainer import Member, train_ensemble
from vsgd import __version__ as code_version
from vsgd.core import Rule, get_rule

TABLE1 = PROJECT_ROOT / "reference" / "paper_table1.csv"
TABLE1_COLUMNS = {"eta0": "eta0", "gamma_times_ntrain": "gamma", "mu": "mu", "tau": "tau"}


class UserError(Exception):
    """A mistake in the command line or config: printed as one message, no traceback."""


# -- settings -----------------------------------------------------------------------------------
def table1_setting(benchmark: str, optimizer: str) -> dict[str, float]:
    """Table 1's best hyper-parameters of a baseline on a benchmark (paper 1)."""
    with open(TABLE1) as f:
        rows = [r for r in csv.DictReader(f) if r["benchmark"] == benchmark and r["method"] == optimizer]
    if not rows:
        with open(TABLE1) as f:
            have = sorted({r["method"] for r in csv.DictReader(f) if r["benchmark"] == benchmark})
        raise UserError(
            f"Table 1 of the paper has no setting of {optimizer} for {benchmark} (it has: {', '.join(have)}). "
            "Drop tuned=table1 and give the hyper-parameters, or run its grid (grid=...)."
        )
    return {TABLE1_COLUMNS[c]: float(v) for c, v in rows[0].items() if c in TABLE1_COLUMNS and v}


def settings_from(cfg: DictConfig, rule: Rule) -> list[dict[str, float]]:
    base = dict(OmegaConf.to_container(cfg.optimizer.get("hp") or {}, resolve=True))
    if cfg.get("grid"):
        grid = OmegaConf.to_container(cfg.grid, resolve=True)
        grid = {k: v for k, v in grid.items() if not k.startswith("_")}
        names = list(grid)
        return [{**base, **dict(zip(names, values))} for values in itertools.product(*(grid[n] for n in names))]
    if cfg.get("tuned"):
        if cfg.tuned != "table1":
            raise UserError(f"Unknown tuned={cfg.tuned!r}; the only published tuning is tuned=table1.")
        if rule.hyperparams and any(h for h in rule.hyperparams if h in TABLE1_COLUMNS.values()):
            return [{**base, **table1_setting(cfg.benchmark.name, rule.name)}]
    return [base]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={name} was asked for but CUDA is not available here; use device=auto or device=cpu.")
    return dev


def auto_chunk_size(spec: MLPSpec, dtype: torch.dtype, device: torch.device, n_members: int) -> int:
    """Members per chunk so that params, grads, updates, curvature and about 6 state tensors fit."""
    per_member = spec.n_params * torch.finfo(dtype).bits // 8 * 12
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = free * 0.5
    else:
        budget = 3e9
    return max(1, min(n_members, int(budget // per_member)))


# -- the run ------------------------------------------------------------------------------------
def run(cfg: DictConfig) -> pd.DataFrame:
    """Train every member the config asks for that the store does not hold yet; return all of them."""
    try:
        rule = get_rule(cfg.optimizer.name)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    bench = cfg.benchmark
    spec = MLPSpec(tuple(bench.layers), bench.loss, float(bench.l2), bool(bench.get("l2_biases", False)))
    epochs = float(cfg.epochs if cfg.get("epochs") is not None else bench.epochs)
    if not epochs > 0:
        raise UserError(f"epochs={epochs} must be > 0.")
    if int(cfg.seeds) < 1:
        raise UserError(f"seeds={cfg.seeds} must be >= 1 (the number of seeds per setting).")
    dtype = {"float32": torch.float32, "float64": torch.float64}.get(cfg.dtype)
    if dtype is None:
        raise UserError(f"dtype={cfg.dtype!r} is not supported; use float32 or float64.")
    device = resolve_device(cfg.device)
    try:
        settings = [rule.check_hp(s) for s in settings_from(cfg, rule)]
    except ValueError as exc:
        raise UserError(str(exc)) from None
    seeds = range(int(cfg.seed_offset), int(cfg.seed_offset) + int(cfg.seeds))
    members = [Member(seed, s) for s in settings for seed in seeds]

    try:
        data = load(bench.dataset, cfg.data.root)
    except DataError as exc:
        raise UserError(str(exc)) from None
    store = Path(cfg.store) if cfg.get("store") else results.DEFAULT_STORE
    experiment = str(cfg.get("experiment_name") or "adhoc")

    def key(m: Member) -> dict[str, Any]:
        return {"benchmark": bench.name, "layers": list(bench.layers), "loss": bench.loss, "l2": float(bench.l2),
                "l2_biases": bool(bench.get("l2_biases", False)), "epochs": epochs, "optimizer": rule.name,
                "hp": m.hp, "seed": m.seed, "data_md5": data.md5, "dtype": cfg.dtype}

    hashes = [results.config_hash(key(m)) for m in members]
    todo = [(m, h) for m, h in zip(members, hashes) if not results.exists(store, bench.name, rule.name, h)]
    done = len(members) - len(todo)
    print(f"[{bench.name} {rule.name}] {len(members)} members ({len(settings)} settings x {len(seeds)} seeds): "
          f"{done} already in {store}, {len(todo)} to train on {device}.", flush=True)

    chunk = int(cfg.chunk_size) if cfg.get("chunk_size") else auto_chunk_size(spec, dtype, device, len(todo) or 1)
    for c0 in range(0, len(todo), chunk):
        part = todo[c0 : c0 + chunk]
        t0 = time.perf_counter()
        out = train_ensemble(spec, rule, [m for m, _ in part], data, epochs=epochs, device=device, dtype=dtype,
                             progress=None)
        for r, (_, chash) in zip(out, part):
            rec = {"benchmark": bench.name, "optimizer": rule.name, "seed": r.member.seed, "hp": r.member.hp,
                   "train_error": r.train_error, "test_error": r.test_error, "train_loss": r.train_loss,
                   "test_loss": r.test_loss, "diverged": r.diverged, "diverged_step": r.diverged_step,
                   "seconds": r.seconds, "chunk_seconds": r.chunk_seconds, "chunk_members": r.chunk_members,
                   "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
                   "data_md5": data.md5, "data_original": data.original, "config_hash": chash,
                   "epochs": epochs, "steps": r.steps, "experiment": experiment, "code_version": code_version,
                   "dtype": cfg.dtype, "curve": r.curve}
            results.write_record(store, rec)
        print(f"[{bench.name} {rule.name}] chunk {c0 // chunk + 1}/{math.ceil(len(todo) / chunk)}: "
              f"{len(part)} members in {time.perf_counter() - t0:.1f}s", flush=True)

    df = results.load(store)
    mine = df[df.config_hash.isin(set(hashes))].copy()
    return mine


def summary_table(df: pd.DataFrame) -> str:
    hp_cols = sorted(c for c in df.columns if c.startswith("hp_") and df[c].notna().any())
    cols = ["benchmark", "optimizer", *hp_cols, "seed", "train_error", "test_error", "diverged", "seconds"]
    return df.sort_values([*hp_cols, "seed"]).to_string(index=False, columns=cols, float_format=lambda v: f"{v:.4g}")


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        df = run(cfg)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(summary_table(df))


if __name__ == "__main__":
    main()
