"""vSGD on Table 4's workloads with the checked step cap (``cap_step="checked"``) against the front-end's defaults.

    python benchmarks/vsgd_cap_check_table4.py [--workloads ...] [--methods vsgd_l] [--seeds 0 1 2]
        [--variants checked defaults]

Each member is trained exactly as the Table 4 runner trains it (``experiments.workloads.train_member``: same data
subset, model, minibatches, budget, seed); ``defaults`` reproduces Table 4's rows, ``checked`` adds the check of
vsgd/stepcap.py (the batch loss at the capped step; a step that raises it is cut back). Writes
``benchmarks/vsgd_cap_check_table4.csv`` (one row per member, with its wall time). Why: the cap alone let 2 of 6
runs of the residual CNN on repeated minibatches diverge (``benchmarks/vsgd_repeated_batches.py``).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import workloads as W

WORKLOADS = ["sparse_logreg", "mnist_cnn", "cifar_resnet", "char_lstm", "char_transformer"]
VARIANTS = {"defaults": {}, "checked": {"cap_step": "checked"}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", nargs="+", default=WORKLOADS)
    ap.add_argument("--methods", nargs="+", default=["vsgd_l"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=["checked"], choices=list(VARIANTS))
    ap.add_argument("--csv", type=Path, default=Path(__file__).with_suffix(".csv"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for name in args.workloads:
        wl = W.workload_config(name)
        data = W.build_data(wl, None)
        for method in args.methods:
            for variant in args.variants:
                for seed in args.seeds:
                    r = W.train_member(wl, data, method, VARIANTS[variant], seed, float(wl["epochs"]))
                    rows.append({"workload": name, "method": method, "variant": variant, "seed": seed,
                                 "train_error": r.train_error, "test_error": r.test_error, "diverged": r.diverged,
                                 "seconds": round(r.seconds, 1)})
                    print(rows[-1], flush=True)
    with open(args.csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(args.csv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
