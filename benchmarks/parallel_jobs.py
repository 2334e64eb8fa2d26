"""Does a second runner process add throughput on this machine? One job alone, then N side by side.

    python benchmarks/parallel_jobs.py                          # M1 and M2, vsgd_l and sgd, 1 and 2 jobs
    python benchmarks/parallel_jobs.py --benchmarks m2 --rules vsgd_b --jobs 1 2 3 --seconds 8

Each job is one process with one thread running the trainer's own step (``benchmarks/throughput.py``'s
``ensemble_stepper``, K members) as the runner does. For every (benchmark, rule), the jobs start together
after their warm-up (compilation) and each counts its steps over the same timing window; the table gives
the summed member-updates per second and its ratio to one job alone, measured in the same run. Stop other
work first: anything else running shares the cores.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]


def _job(bench: str, rule: str, K: int, seconds: float, ready, go, out) -> None:
    import torch
    from throughput import bench_spec, ensemble_stepper

    from experiments.malloc import keep_freed_memory

    torch.set_num_threads(1)
    keep_freed_memory()
    spec, _ = bench_spec(bench)
    one = ensemble_stepper(spec, rule, K, compile=rule != "sgd")
    for _ in range(150):  # compilation and the slow start's recompilation
        one()
    ready.wait()
    go.wait()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        one()
        n += 1
    out.put(n * K / (time.perf_counter() - start))


def measure(bench: str, rule: str, K: int, jobs: int, seconds: float) -> float:
    """Summed member-updates per second of ``jobs`` processes timed over the same window."""
    ctx = mp.get_context("spawn")
    ready, go, out = ctx.Barrier(jobs + 1), ctx.Barrier(jobs + 1), ctx.Queue()
    procs = [ctx.Process(target=_job, args=(bench, rule, K, seconds, ready, go, out)) for _ in range(jobs)]
    for p in procs:
        p.start()
    ready.wait()  # every job compiled and warm
    go.wait()
    rates = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmarks", nargs="+", default=["m1", "m2"])
    ap.add_argument("--rules", nargs="+", default=["vsgd_l", "sgd"])
    ap.add_argument("--jobs", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--k", type=int, default=1, help="members per job (the runner's chunk)")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--csv", default=str(ROOT / "benchmarks" / "parallel_jobs.csv"))
    args = ap.parse_args()
    rows = []
    print(f"{'benchmark':9s} {'rule':8s} {'jobs':>4s} {'updates/s (sum)':>16s} {'vs 1 job':>8s}")
    for bench in args.benchmarks:
        for rule in args.rules:
            base = None
            for jobs in args.jobs:
                rate = measure(bench, rule, args.k, jobs, args.seconds)
                base = rate if base is None else base
                print(f"{bench:9s} {rule:8s} {jobs:4d} {rate:16,.0f} {rate / base:8.2f}x", flush=True)
                rows.append({"benchmark": bench.upper(), "rule": rule, "K": args.k, "jobs": jobs,
                             "updates_per_s": rate, "vs_one_job": rate / base})
    from throughput import write_csv

    write_csv(rows, args.csv)


if __name__ == "__main__":
    main()
