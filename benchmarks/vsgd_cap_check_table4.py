"""vSGD on Table 4's workloads with the checked step cap (``cap_step="checked"``) against the front-end's defaults.

    python benchmarks/vsgd_cap_check_table4.py [--workloads ...] [--methods vsgd_l] [--seeds 0 1 2]
        [--variants checked unchecked]

Each member is trained exactly as the Table 4 runner trains it (``experiments.workloads.train_member``: same data
subset, model, minibatches, budget, seed); ``unchecked`` is ``cap_step=True`` (the cap alone, the default of
session 25, whose Table 4 rows it reproduces), ``checked`` adds the check of vsgd/stepcap.py (the batch loss at
the capped step; a step that raises it is cut back: the default since session 26), ``defaults`` whatever the
front-end's default is. Writes
``benchmarks/vsgd_cap_check_table4.csv`` (one row per member, with its wall time). Why: the cap alone let 2 of 6
runs of the residual CNN on repeated minibatches diverge (``benchmarks/vsgd_repeated_batches.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.vsgd_h_var_table4 import WORKLOADS, run_variants

VARIANTS = {"defaults": {}, "checked": {"cap_step": "checked"}, "unchecked": {"cap_step": True}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", nargs="+", default=WORKLOADS)
    ap.add_argument("--methods", nargs="+", default=["vsgd_l"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=["checked", "unchecked"], choices=list(VARIANTS))
    ap.add_argument("--csv", type=Path, default=Path(__file__).with_suffix(".csv"))
    args = ap.parse_args(argv)
    run_variants(args.workloads, args.methods, {v: VARIANTS[v] for v in args.variants}, args.seeds, args.csv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
