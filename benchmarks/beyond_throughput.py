"""Member-updates per second of the issue-9 optimizers on an MLP benchmark's shape, per trainer path.

    nice python benchmarks/beyond_throughput.py                     # M1 shape, K = 1 and 10, CPU
    python benchmarks/beyond_throughput.py --device cuda --members 1 10 100

For each optimizer it times the training step of experiments.torch_members (one batched
``loss_and_grads`` of the K members, then the optimizer step(s)) on random inputs, for the path the
registry chooses and, for the element-wise optimizers, also for one instance per member (what
stacking saves). The reference row `sgd (rule)` is the same step with the project's pure SGD rule,
i.e. what experiments.trainer does. Reports member-updates/s = K x steps / seconds, by wall clock and
by the process's CPU time (the better measure on a shared machine with --threads 1).
"""

from __future__ import annotations

import argparse
import time

import torch

from experiments.mlp import EnsembleMLP, MLPSpec, glorot_init
from experiments.torch_members import REGISTRY, make_optimizers, set_grads
from vsgd.core import get_rule


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_steps(step, steps, warmup, device) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for ``steps`` steps after ``warmup`` steps.

    On a shared CPU the wall time depends on the other load; with one thread, the process's CPU time
    is close to what the wall time would be on an idle core, so both are reported."""
    for _ in range(warmup):
        step()
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def make_step(model, spec, name, path, force, K, x, y, device):
    """One training step of K members on (x, y): the rule path of experiments.trainer or the torch path."""
    params = glorot_init(spec, range(K), device=device)
    if path == "rule":
        rule = get_rule("sgd")
        hp = {"eta0": torch.full((K,), 1e-3, device=device), "gamma": torch.zeros(K, device=device)}
        state = [rule.init(params, hp)]

        def step():
            _, grads, _ = model.loss_and_grads(params, x, y)
            updates, state[0] = rule.update(grads, state[0], params, hp, {"batch_size": 1})
            for p, u in zip(params, updates):
                p.add_(u)

        return step
    groups = make_optimizers(name, params, [{}] * K, per_member=force)

    def step():
        _, grads, _ = model.loss_and_grads(params, x, y)
        set_grads(groups, params, grads)
        for _, o in groups:
            o.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, nargs="+", default=[784, 120, 10], help="M1 by default")
    ap.add_argument("--members", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: best for these tiny ops)")
    ap.add_argument("--optimizers", nargs="*", default=sorted(REGISTRY))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = MLPSpec(tuple(args.layers), "cross_entropy")
    model = EnsembleMLP(spec)
    g = torch.Generator().manual_seed(0)
    print(f"device={args.device} threads={torch.get_num_threads()} layers={args.layers} steps={args.steps}")
    print(f"{'optimizer':22s} {'path':11s} {'K':>4s} {'updates/s':>10s} {'ms/step':>8s} {'upd/s(cpu)':>10s} {'ms(cpu)':>8s}")
    for K in args.members:
        x = torch.randn(K, args.layers[0], generator=g).to(args.device)
        y = torch.randint(0, args.layers[-1], (K,), generator=g).to(args.device)
        rows = [("sgd (rule)", "rule", None)]
        for name in args.optimizers:
            opt = REGISTRY[name]
            rows.append((name, "per-member" if opt.needs_per_member else "stacked", None))
            if not opt.needs_per_member and K > 1:
                rows.append((name, "per-member", True))
        for name, path, force in rows:
            step = make_step(model, spec, name, path, force, K, x, y, args.device)
            sec, cpu = time_steps(step, args.steps, args.warmup, args.device)
            print(f"{name:22s} {path:11s} {K:4d} {K * args.steps / sec:10.0f} {1e3 * sec / args.steps:8.2f} "
                  f"{K * args.steps / cpu:10.0f} {1e3 * cpu / args.steps:8.2f}", flush=True)


if __name__ == "__main__":
    main()
