"""The per-member reductions of the pooled rules, before and after session 19, in the same run.

    python benchmarks/member_reduce.py                                  # M0 M1 M2 C1: vSGD-b, vSGD-g, SMD at K = 1
    python benchmarks/member_reduce.py --benchmarks m1 --rules vsgd_b --ks 1 4 --seconds 2

vSGD-b / -g (pooled statistics) and SMD (a global dot product) sum each parameter-sized tensor over every
axis but the ensemble axis (``vsgd.core.member_sum`` / ``member_max``). Until session 18 that was
``x.reshape(K, -1).sum(dim=1)``; now it reduces over the axes themselves. Both forms are timed in the
trainer's own compiled step (``benchmarks/throughput.py``'s ``ensemble_stepper``), in alternating windows in
one process, and each keeps its best window, so that the ratio is measured under the same load. Writes
``benchmarks/member_reduce.csv``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import baselines.smd as smd_module
import vsgd.vsgd as vsgd_module
from experiments.malloc import keep_freed_memory
from vsgd import core

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import ROOT, bench_spec, ensemble_stepper, timed, write_csv

FORMS = {
    "reshape": (lambda x: x.reshape(x.shape[0], -1).sum(dim=1), lambda x: x.reshape(x.shape[0], -1).amax(dim=1)),
    "axes": (core.member_sum, core.member_max),  # the library's own, now
}


def use(form: str) -> None:
    """Point the rules' module-level names at one form (the compiled step is guarded on them: switching
    selects that form's graph, compiled at its first call)."""
    total, top = FORMS[form]
    vsgd_module.member_sum, vsgd_module.member_max, smd_module.member_sum = total, top, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmarks", nargs="+", default=["m0", "m1", "m2", "c1"])
    ap.add_argument("--rules", nargs="+", default=["vsgd_b", "vsgd_g", "smd"])
    ap.add_argument("--ks", nargs="+", type=int, default=[1])
    ap.add_argument("--seconds", type=float, default=2.0, help="timing window")
    ap.add_argument("--repeats", type=int, default=3, help="windows per form (alternating); the best counts")
    ap.add_argument("--csv", default=str(ROOT / "benchmarks" / "member_reduce.csv"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()
    rows = []
    print(f"{'bench':5} {'rule':7} {'K':>3} {'reshape':>10} {'axes':>10}  ratio   (member-updates/s, best window)")
    for bench in args.benchmarks:
        spec, _ = bench_spec(bench)
        for rule in args.rules:
            for K in args.ks:
                steppers = {}
                for form in FORMS:
                    use(form)
                    steppers[form] = ensemble_stepper(spec, rule, K)
                    for _ in range(100):  # compilation, and the slow start's recompilation
                        steppers[form]()
                best = dict.fromkeys(FORMS, 0.0)
                for _ in range(args.repeats):
                    for form, step in steppers.items():
                        use(form)
                        step()
                        best[form] = max(best[form], timed(step, args.seconds) * K)
                ratio = best["axes"] / best["reshape"]
                print(f"{bench:5} {rule:7} {K:>3} {best['reshape']:>10.0f} {best['axes']:>10.0f}  {ratio:.2f}x", flush=True)
                rows.append({"benchmark": bench, "rule": rule, "K": K, "reshape": round(best["reshape"]),
                             "axes": round(best["axes"]), "ratio": round(ratio, 3)})
    use("axes")
    write_csv(rows, args.csv)


if __name__ == "__main__":
    main()
