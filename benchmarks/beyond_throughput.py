"""Member-updates per second of the issue-9 optimizers on the MLP benchmarks' shapes: plain path against
fast path, measured in the same run, and the projected CPU-hours of their Tables 2+/3+ runs.

    nice -n 15 python benchmarks/beyond_throughput.py                               # M0 and M1, K = 10, CPU, 1 thread
    nice -n 15 python benchmarks/beyond_throughput.py --benchmarks m0 m1 m2 c0 c1 cr --seconds 1
    python benchmarks/beyond_throughput.py --device cuda --members 10 100

For each benchmark and optimizer it times the training step of experiments.torch_members
(``member_step``: one batched ``loss_and_grads`` of the K members, then the optimizer step(s)) on fake
samples, in three variants: ``plain`` (``fast=False``: per-layer tensors, fresh gradients assigned to
``.grad`` every step, the packages' default kernels), ``fast`` (the flat layout, gradients written in
place, the registry's kernel options) and ``fast+compile`` (also ``torch.compile`` of the gradient
write and of the steps marked ``compile_step``, as the runner's ``compile: auto`` does where a C++
compiler is present). The variants alternate and each keeps its best of ``--repeats`` windows, so the
ratios are measured under the same load (the only numbers that mean anything on a shared machine).
Rates are member-updates per second of this process's CPU time (with one thread, close to what the
wall clock gives on an idle core); the wall-clock rate of the last window is printed beside them.
``--per-member`` also times one instance per member for the element-wise optimizers (what stacking saves).
``--ops`` times nothing: it counts the ATen ops one step dispatches and the host syncs among them (``.item()``)
on the ``fast`` path, with per-member instances over per-layer tensors and over one flat tensor each (what
a step costs on an accelerator, where every op is a kernel launch; ``experiments.torch_members.use_flat``).

The projection: CPU-hours of ``python -m experiments.run experiment=beyond_tables`` restricted to the
PyPI optimizers, i.e. per optimizer and benchmark 10 seeds x #train x 6 epochs member-updates at the
measured rate (the training steps only: evaluations at the checkpoints come on top). Benchmarks not
measured are left out of the sum and named.
"""

from __future__ import annotations

import argparse
import collections
import time

import torch
from throughput import N_TRAIN, bench_spec, lockstep_samples, write_csv  # benchmarks/ is sys.path[0] for a script
from torch.utils._python_dispatch import TorchDispatchMode

from experiments import torch_members
from experiments.malloc import keep_freed_memory
from experiments.mlp import EnsembleMLP, glorot_init
from experiments.torch_members import REGISTRY, member_step

VARIANTS = {"plain": {"fast": False}, "fast": {"fast": True}, "fast+compile": {"fast": True, "compile": True}}
SEEDS = 10  # beyond_tables: 10 seeds per benchmark and optimizer


def stepper(spec, name: str, K: int, variant: str, per_member: bool | None, device: str):
    """A zero-argument callable: one training step of K members (fresh Glorot init, fake samples)."""
    model = EnsembleMLP(spec)
    params = glorot_init(spec, range(K), device=device)
    _, _, step = member_step(model, name, params, [{}] * K, per_member=per_member, **VARIANTS[variant])
    sample = lockstep_samples(spec, K)
    dead: set[int] = set()

    def one():
        x, target, _ = sample()
        step(x.to(device), target.to(device), dead)

    return one


def window(one, seconds: float, device: str) -> tuple[float, float]:
    """(steps per CPU second, steps per wall second) over at least ``seconds`` of CPU time and 3 steps."""
    n, c0, t0 = 0, time.process_time(), time.perf_counter()
    while n < 3 or time.process_time() - c0 < seconds:
        one()
        n += 1
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return n / (time.process_time() - c0), n / (time.perf_counter() - t0)


class OpCount(TorchDispatchMode):
    """Counts the ATen ops dispatched inside it."""

    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))


def count_ops(args) -> None:
    """``--ops``: ATen ops and host syncs of one step (fast path, no compile), per-layer and flat layouts.
    Counted on the CPU whatever ``--device`` says: the ops are the same, and on an accelerator every
    per-member instance is flat (``torch_members.use_flat``), so there would be nothing to compare."""
    print(f"{'bench':5s} {'optimizer':20s} {'K':>3s} {'per-layer ops':>14s} {'syncs':>6s} {'flat ops':>9s} {'syncs':>6s}")
    for bench in args.benchmarks:
        spec, cfg = bench_spec(bench)
        for K in args.members:
            for name in args.optimizers:
                cells, default = [], torch_members.FLAT_MAX
                for flat_max in (0, 1 << 62):  # 0: per-layer tensors everywhere (on the CPU); huge: flat everywhere
                    torch_members.FLAT_MAX = flat_max
                    one = stepper(spec, name, K, "fast", None, "cpu")
                    for _ in range(args.warmup):
                        one()
                    with OpCount() as c:
                        one()
                    cells.append(f"{sum(c.ops.values()):14d} {c.ops['aten._local_scalar_dense.default']:6d}")
                torch_members.FLAT_MAX = default
                flat = REGISTRY[name].needs_per_member
                print(f"{cfg.name:5s} {name:20s} {K:3d} {cells[0]} " + (cells[1].strip().rjust(16) if flat else "  (stacked)"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmarks", nargs="+", default=["m0", "m1"])
    ap.add_argument("--members", type=int, nargs="+", default=[10])
    ap.add_argument("--optimizers", nargs="*", default=sorted(REGISTRY))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--seconds", type=float, default=1.0, help="CPU seconds per timing window")
    ap.add_argument("--repeats", type=int, default=3, help="windows per variant (alternating); the best counts")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation happens there)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: best for these tiny ops)")
    ap.add_argument("--per-member", action="store_true", help="also one instance per member for element-wise optimizers")
    ap.add_argument("--plain-malloc", action="store_true", help="skip experiments.malloc (the runner applies it)")
    ap.add_argument("--csv", default=None, help="also write the rows here")
    ap.add_argument("--ops", action="store_true", help="count the ops and host syncs of a step instead of timing")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.ops:
        return count_ops(args)
    if not args.plain_malloc:
        keep_freed_memory()
    base = args.variants[0]
    print(f"device={args.device} threads={torch.get_num_threads()} seconds={args.seconds} repeats={args.repeats} "
          f"(member-updates/s by CPU time; x = ratio to {base} in this run)")
    print(f"{'bench':5s} {'optimizer':20s} {'path':10s} {'K':>3s} " + " ".join(f"{v:>22s}" for v in args.variants))
    rows = []
    for bench in args.benchmarks:
        spec, cfg = bench_spec(bench)
        for K in args.members:
            for name in args.optimizers:
                opt = REGISTRY[name]
                paths = [("per-member" if opt.needs_per_member else "stacked", None)]
                if args.per_member and not opt.needs_per_member and K > 1:
                    paths.append(("per-member", True))
                for path, force in paths:
                    steps = {v: stepper(spec, name, K, v, force, args.device) for v in args.variants}
                    for one in steps.values():
                        for _ in range(args.warmup):
                            one()
                    best = {v: (0.0, 0.0) for v in args.variants}
                    for _ in range(args.repeats):
                        for v, one in steps.items():
                            cpu, wall = window(one, args.seconds, args.device)
                            best[v] = (max(best[v][0], K * cpu), K * wall)
                    cells = [f"{best[v][0]:7.0f} ({best[v][0] / best[base][0]:4.2f}x) w{best[v][1]:6.0f}" for v in args.variants]
                    print(f"{cfg.name:5s} {name:20s} {path:10s} {K:3d} " + " ".join(f"{c:>22s}" for c in cells), flush=True)
                    for v in args.variants:
                        rows.append({"benchmark": cfg.name, "optimizer": name, "path": path, "K": K, "variant": v,
                                     "updates_per_s_cpu": round(best[v][0], 1), "updates_per_s_wall": round(best[v][1], 1),
                                     "ratio": round(best[v][0] / best[base][0], 3), "steps_per_member":
                                     int(N_TRAIN[cfg.dataset] * cfg.epochs)})
    if args.csv:
        write_csv(rows, args.csv)
    project(rows, args)


def project(rows: list[dict], args) -> None:
    """CPU-hours of the PyPI optimizers' beyond_tables runs at the measured rates (largest K measured)."""
    K = max(args.members)
    print(f"\nprojected CPU-hours of experiment=beyond_tables, PyPI optimizers only ({SEEDS} seeds, K = {K}, "
          f"training steps only; benchmarks {' '.join(args.benchmarks)}):")
    total = dict.fromkeys(args.variants, 0.0)
    for name in args.optimizers:
        hours = dict.fromkeys(args.variants, 0.0)
        for r in rows:
            if r["optimizer"] == name and r["K"] == K and r["path"] in ("stacked", "per-member") and \
                    (r["path"] == "per-member") == REGISTRY[name].needs_per_member:
                hours[r["variant"]] += SEEDS * r["steps_per_member"] / r["updates_per_s_cpu"] / 3600
        for v in args.variants:
            total[v] += hours[v]
        print(f"  {name:20s} " + "  ".join(f"{v} {hours[v]:7.2f} h" for v in args.variants))
    print(f"  {'total':20s} " + "  ".join(f"{v} {total[v]:7.2f} h" for v in args.variants)
          + f"   ({total[args.variants[0]] / total[args.variants[-1]]:.2f}x)")


if __name__ == "__main__":
    main()
