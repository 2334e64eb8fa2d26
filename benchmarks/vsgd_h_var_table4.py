"""vSGD on Table 4's workloads with paper 2's curvature variability (``h_var``, Sec. 5.2) against the front-end's
defaults: does dividing by E[h^2]/E[h] rather than E[h] stop the divergences of docs/table4.md?

    python benchmarks/vsgd_h_var_table4.py [--workloads ...] [--methods vsgd_l vsgd_b] [--seeds 0 1 2]

Each member is trained exactly as the Table 4 runner trains it (``experiments.workloads.train_member``: same data
subset, model, minibatches, budget, seed), once at VSGD's defaults and once with ``h_var=True``. With the sampled
Gauss-Newton curvature (one draw per step) h is a noisy estimate, and the rate's 1/h_bar is biased upwards
(Jensen) while tau is short; ``h_var`` is the paper's own correction for noisy curvature (it is on in vSGD-fd).
Writes ``benchmarks/vsgd_h_var_table4.csv`` (one row per member). No timing.
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


def run_variants(workloads: list[str], methods: list[str], variants: dict[str, dict], seeds: list[int],
                 csv_path: Path) -> Path:
    """Train every workload x method x variant (extra ``VSGD`` keywords) x seed as the Table 4 runner does, one row
    per member (with its wall time) in ``csv_path``."""
    torch.set_num_threads(1)
    rows = []
    for name in workloads:
        wl = W.workload_config(name)
        data = W.build_data(wl, None)
        for method in methods:
            for variant, hp in variants.items():
                for seed in seeds:
                    r = W.train_member(wl, data, method, hp, seed, float(wl["epochs"]))
                    rows.append({"workload": name, "method": method, "variant": variant, "seed": seed,
                                 "train_error": r.train_error, "test_error": r.test_error, "diverged": r.diverged,
                                 "seconds": round(r.seconds, 1)})
                    print(rows[-1], flush=True)
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(csv_path)
    return csv_path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", nargs="+", default=WORKLOADS)
    ap.add_argument("--methods", nargs="+", default=["vsgd_l", "vsgd_b"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--csv", type=Path, default=Path(__file__).with_suffix(".csv"))
    args = ap.parse_args(argv)
    run_variants(args.workloads, args.methods, {"defaults": {}, "h_var": {"h_var": True}}, args.seeds, args.csv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
