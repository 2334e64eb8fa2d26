"""Where a compiled trainer step's time goes: the generated kernels against the per-step dispatch around them.

    PYTHONPATH=. python benchmarks/step_profile.py                                  # M0 vsgd_l/smd, M1 smd; K = 1 and the runner's
    PYTHONPATH=. python benchmarks/step_profile.py --cases m1:vsgd_l:4 --steps 200

For each benchmark:rule:K, the trainer's compiled step (``throughput.ensemble_stepper``, as the runner runs it) is
warmed up, timed, then profiled with ``torch.profiler`` with inductor's kernel profiling on, which names each
generated C++ kernel. The kernels' share of the step is the time spent in the rule's and the network's arithmetic;
the rest (dynamo's guards, the compiled graph's wrapper, the sample's indexing) is per-step dispatch, paid once a
step whatever K is. Answers issue 35's "where a rule cannot get there, say what limits it" for the small nets.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import bench_spec, ensemble_stepper, write_csv

import baselines  # noqa: F401  (registers the baselines)


def profile_case(bench: str, rule: str, K: int, steps: int) -> dict:
    import torch._inductor.config as inductor_config
    from torch.profiler import ProfilerActivity, profile

    inductor_config.cpp.enable_kernel_profile = True  # each generated kernel gets its own profiler entry
    spec, _ = bench_spec(bench)
    one = ensemble_stepper(spec, rule, K, compile=True)
    for _ in range(steps):
        one()
    start = time.perf_counter()
    for _ in range(steps):
        one()
    per_step = (time.perf_counter() - start) / steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            one()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    kernels = sum(e.self_cpu_time_total for e in events if e.key.startswith("graph_") and "cpp_fused" in e.key)
    n_kernels = len({e.key for e in events if e.key.startswith("graph_") and "cpp_fused" in e.key})
    return {"benchmark": bench.upper(), "rule": rule, "K": K, "us_per_step": round(per_step * 1e6, 1),
            "member_updates_per_s": round(K / per_step), "generated_kernels": n_kernels,
            "kernel_share": round(kernels / total, 3), "dispatch_share": round(1 - kernels / total, 3)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=["m0:vsgd_l:1", "m0:vsgd_l:54", "m0:smd:54", "m1:smd:4",
                                                   "m1:vsgd_l:4"])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--csv", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for case in a.cases:
        bench, rule, K = case.split(":")
        rows.append(profile_case(bench, rule, int(K), a.steps))
        print(rows[-1], flush=True)
    if a.csv:
        write_csv(rows, a.csv)


if __name__ == "__main__":
    main()
