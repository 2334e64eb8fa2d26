"""Does ``torch.compile`` help the trainer's step? Eager against compiled, per rule and benchmark, in one run.

    python benchmarks/compile_step.py                                  # vsgd_l, smd, almeida on M0 M1 M2 C1, K = 1, 4
    python benchmarks/compile_step.py --rules vsgd_g adagrad --benchmarks m1 --ks 1 10

For each (rule, benchmark, K): member-updates per second of the generic step
(experiments.trainer.Step with compile=False, then compile=True; the trainer's own hot path) on
random data, the time the first 100 compiled calls took (compilation), and the speed-up. The runner's
``compile: auto`` follows these numbers (see docs/architecture.md). Timings on a shared machine are
noisy: read the ratios within one row.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import ROOT, bench_spec, ensemble_stepper, timed, write_csv


def rate(spec, rule_name: str, K: int, compile: bool, seconds: float) -> tuple[float, float]:
    """(member-updates/s, seconds of the first 100 calls)."""
    one = ensemble_stepper(spec, rule_name, K, compile)
    start = time.perf_counter()
    for _ in range(100):  # past the slow start's first steps and the compilation
        one()
    first = time.perf_counter() - start
    return timed(one, seconds) * K, first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmarks", nargs="+", default=["m0", "m1", "m2", "c1"])
    ap.add_argument("--rules", nargs="+", default=["vsgd_l", "smd", "almeida"])
    ap.add_argument("--ks", nargs="+", type=int, default=[1, 4])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--csv", default=str(ROOT / "benchmarks" / "compile_step.csv"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    from experiments.malloc import keep_freed_memory

    keep_freed_memory()
    rows = []
    for rule_name in args.rules:
        for name in args.benchmarks:
            spec, cfg = bench_spec(name)
            for K in args.ks:
                eager, _ = rate(spec, rule_name, K, False, args.seconds)
                comp, first = rate(spec, rule_name, K, True, args.seconds)
                rows.append({"rule": rule_name, "benchmark": cfg.name, "K": K, "eager_per_s": round(eager),
                             "compiled_per_s": round(comp), "speedup": round(comp / eager, 2),
                             "first_100_calls_s": round(first, 1)})
                print(f"{rule_name:8s} {cfg.name:3s} K={K:<3d} eager {eager:9,.0f}/s  compiled {comp:9,.0f}/s  "
                      f"({comp / eager:4.2f}x; first 100 compiled calls {first:5.1f} s)", flush=True)
    write_csv(rows, args.csv)


if __name__ == "__main__":
    main()
