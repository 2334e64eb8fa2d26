"""Supp. Fig. 9 of paper 1 (critical C) on XOR classification with one-hidden-layer MLPs of varying width.

The paper's Fig. 9 shows, besides the six benchmarks, "the simple XOR-classification task with an MLP of a
single hidden layer, the size of which is varied from 2 to 500000 neurons". It gives no data set, loss or
run length; ours (conf/experiment/supp_fig9_xor.yaml):

* data: the four corners of {-1, +1}^2, label 1 where x1 x2 > 0 (XOR), plus Gaussian noise of std
  ``noise`` on the inputs; ``n_train`` samples (n0 = 0.001 x n_train, as the benchmarks), ``n_test`` more;
* model: the benchmarks' tanh MLP (experiments/mlp.py) with layers [2, H, 2], cross-entropy, L2 1e-4 on
  the weights, Glorot init; d = 5 H + 2 parameters;
* training: the ensemble trainer itself (experiments.trainer.train_ensemble), vSGD-l at each C of the grid,
  ``seeds`` members per C, ``updates`` single-sample updates, with a checkpoint at step 0 (``curve_start``)
  so that the instability test (analysis/c_sensitivity.py) can compare every later loss with the initial one.

Writes one JSON line per member to ``<store>/synthetic/supp_fig9_xor.jsonl`` (the runner's record fields
that the test needs: setup, d, seed, hp, diverged, curve, ...), kept in sync, as the runner's records are, with
its committed copy ``results/records/synthetic/supp_fig9_xor.jsonl`` (``records=`` as for the runner); members
already in either are skipped, so an interrupted run resumes and a fresh clone trains nothing committed.
``python -m experiments.run experiment=supp_fig9_xor``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from experiments.data import Dataset
from experiments.mlp import MLPSpec
from experiments.trainer import Member, train_ensemble
from vsgd.core import get_rule

CPU_CACHE_BYTES = 24e6  # members per chunk: parameters + state within the L3 cache (as experiments/run.py)


def xor_dataset(n_train: int, n_test: int, noise: float, seed: int = 0) -> Dataset:
    """Noisy XOR: corners of {-1, +1}^2 plus N(0, noise^2) per input, label 1 where the corner's x1 x2 > 0."""
    gen = torch.Generator().manual_seed(seed)
    n = n_train + n_test
    corners = torch.randint(0, 2, (n, 2), generator=gen).float() * 2 - 1
    x = corners + noise * torch.randn(n, 2, generator=gen)
    y = (corners[:, 0] * corners[:, 1] > 0).long()
    tag = f"xor-n{n_train}-{n_test}-noise{noise}-seed{seed}"
    return Dataset(tag, x[:n_train], y[:n_train], x[n_train:], y[n_train:], tag, True, ())


def xor_spec(width: int, l2: float) -> MLPSpec:
    return MLPSpec((2, int(width), 2), "cross_entropy", float(l2))


def run_key(r: dict) -> tuple[str, float, int, int]:
    """What makes an XOR run itself: setup, C, seed, length (a rerun of one is skipped, a repeat line ignored)."""
    return r["setup"], float(r["hp"]["c"]), int(r["seed"]), int(r["steps"])


def sync_with_records(path: Path, store: Path, records: Any = "auto") -> None:
    """The XOR runs file and its committed copy, ``<records>/synthetic/<file>``, get the same runs
    (experiments.results.sync_lines): a fresh clone starts from the committed runs, and new ones are committed.
    ``records`` as the runner's setting (``auto``: results/records for the project's own store only)."""
    from experiments import results

    folder = results.records_for(store, records)
    if folder is not None:
        added, restored = results.sync_lines(path, Path(folder) / "synthetic" / path.name, run_key)
        if added or restored:
            print(f"[records] {path.name}: {restored} runs restored from {folder}, {added} added to it", flush=True)


def _done(path: Path) -> set[tuple[str, float, int, int]]:
    if not path.is_file():
        return set()
    return {run_key(json.loads(line)) for line in path.read_text().splitlines() if line.strip()}


def critical_c_xor(cfg) -> Path:
    """Entry of conf/experiment/supp_fig9_xor.yaml: every width x C x seed not yet in the output file."""
    from omegaconf import OmegaConf

    from experiments.results import DEFAULT_STORE

    s: dict[str, Any] = OmegaConf.to_container(cfg.supp_fig9_xor, resolve=True)
    store = Path(cfg.get("store") or DEFAULT_STORE)
    path = store / "synthetic" / str(s.get("file", "supp_fig9_xor.jsonl"))
    path.parent.mkdir(parents=True, exist_ok=True)
    records = cfg.get("records", "auto")
    sync_with_records(path, store, records)
    data = xor_dataset(int(s["n_train"]), int(s["n_test"]), float(s["noise"]), int(s["data_seed"]))
    rule = get_rule(str(s.get("optimizer", "vsgd_l")))
    updates = int(s["updates"])
    epochs = updates / data.n_train
    seeds = range(int(cfg.seed_offset), int(cfg.seed_offset) + int(cfg.seeds))
    done = _done(path)
    for width in s["widths"]:
        spec = xor_spec(width, s["l2"])
        setup = f"XOR-{int(width)}"
        grid = s["c_wide"] if int(width) >= int(s.get("wide_from") or 1 << 62) else s["c"]
        todo = [Member(seed, {"c": float(c)}) for c in grid for seed in seeds
                if (setup, float(c), seed, updates) not in done]
        print(f"[{setup}] d = {spec.n_params}: {len(todo)} members to train ({updates} updates each)", flush=True)
        chunk = max(1, int(CPU_CACHE_BYTES // (spec.n_params * 14 * 4)))
        t_setup = time.perf_counter()
        for i in range(0, len(todo), chunk):
            part = todo[i : i + chunk]
            res = train_ensemble(spec, rule, part, data, epochs=epochs, eval_subset=int(s["eval_subset"]),
                                 curve_start=True, compile=False)
            with open(path, "a") as f:
                f.writelines(json.dumps({
                        "setup": setup, "family": "xor", "width": int(width), "d": spec.n_params,
                        "optimizer": rule.name, "seed": r.member.seed, "hp": r.member.hp, "steps": r.steps,
                        "epochs": epochs, "diverged": r.diverged, "diverged_step": r.diverged_step,
                        "train_loss": r.train_loss, "test_error": r.test_error, "seconds": r.seconds,
                        "data": data.md5, "curve": r.curve}) + "\n" for r in res)
            sync_with_records(path, store, records)
        print(f"[{setup}] done in {time.perf_counter() - t_setup:.1f}s", flush=True)
    return path
