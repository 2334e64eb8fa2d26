"""Member-updates per second of the ensemble trainer beside a naive one-model loop, in the same run.

    python benchmarks/throughput.py                       # all benchmarks, sgd / vsgd_l / smd, K = 1, 10, 100
    python benchmarks/throughput.py --benchmarks m0 m2 --rules sgd --ks 1 20 --seconds 2

For each benchmark: the naive loop (one nn.Sequential, torch.optim.SGD, one sample per step) and the
lock-step ensemble step (experiments.trainer.make_step, the trainer's own hot path) for each rule and
K. Prints a table, writes benchmarks/throughput.csv, and projects the wall time of
`reproduce.sh table2` and of the full Table 1 grids from the measured rates (the trainer picks the
chunk size itself: the projection uses the best measured K not above the job's member count).
Timings on a shared machine are noisy: compare numbers within one run (ratios), not across runs.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from experiments.mlp import EnsembleMLP, MLPSpec, glorot_init
from experiments.run import spec_of
from experiments.trainer import make_step
from vsgd.core import get_rule

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN = {"mnist": 60_000, "cifar10_batch1": 10_000}


def bench_spec(name: str) -> tuple[MLPSpec, dict]:
    cfg = OmegaConf.load(ROOT / "conf" / "benchmark" / f"{name}.yaml")
    return spec_of(cfg), cfg


def fake_batch(spec: MLPSpec, n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, spec.layers[0], generator=g) * 0.3
    y = x if spec.loss == "mse" else torch.randint(0, spec.layers[-1], (n,), generator=g)
    return x, y


def timed(fn, seconds: float) -> float:
    """Calls per second of fn over about `seconds` (after one warm-up call)."""
    fn()
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and n >= 3:
            return n / elapsed


def naive_rate(spec: MLPSpec, seconds: float) -> float:
    """The baseline: one model, torch.optim.SGD, one sample per step (what a newcomer would write)."""
    layers = []
    for i, (a, b) in enumerate(zip(spec.layers[:-1], spec.layers[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < spec.n_layers - 1:
            layers.append(torch.nn.Tanh())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, weight_decay=spec.l2)
    x, y = fake_batch(spec, 1000)
    loss_fn = torch.nn.CrossEntropyLoss() if spec.loss == "cross_entropy" else (lambda o, t: 0.5 * ((o - t) ** 2).sum())
    i = [0]

    def step():
        j = i[0] % 1000
        i[0] += 1
        opt.zero_grad(set_to_none=True)
        out = model(x[j : j + 1])
        loss = loss_fn(out, y[j : j + 1])
        loss.backward()
        opt.step()

    return timed(step, seconds)


def ensemble_stepper(spec: MLPSpec, rule_name: str, K: int, compile: bool = True, device: str = "cpu"):
    """A zero-argument callable that advances K members of ``rule_name`` by one trainer step."""
    rule = get_rule(rule_name)
    model = EnsembleMLP(spec)
    params = glorot_init(spec, list(range(K)), device=device)
    hp = rule.hp_tensors([{}] * K, dtype=torch.float32, device=device)
    state = [rule.init(params, hp)]
    # as the runner's compile: auto (plain SGD is never compiled), with CUDA graphs on CUDA as the trainer does
    step = make_step(model, rule, compile=compile, cuda_graphs=device.startswith("cuda"))
    sample = lockstep_samples(spec, K, device=device)

    def one():
        state[0] = step(params, state[0], hp, *sample())

    return one


def lockstep_samples(spec: MLPSpec, K: int, n: int = 1000, device: str = "cpu"):
    """``sample() -> (x [K, D], target, ahead)``: the next step of K members, each in its own order over
    ``n`` fake samples, with ``ahead`` as ``experiments.trainer.lockstep`` passes it."""
    x, y = (t.to(device) for t in fake_batch(spec, n))
    idx = torch.stack([torch.randperm(n, generator=torch.Generator().manual_seed(k)) for k in range(K)]).to(device)
    i = [0]

    def sample():
        pos = i[0] % n
        i[0] += 1
        xb = x[idx[:, pos]]
        target = xb if spec.loss == "mse" else y[idx[:, pos]]
        return xb, target, lambda w: x[idx[:, pos : min(n, pos + w)]]

    return sample


def ensemble_rate(spec: MLPSpec, rule_name: str, K: int, seconds: float, compile: bool = True,
                  device: str = "cpu") -> float:
    one = ensemble_stepper(spec, rule_name, K, compile, device)
    for _ in range(100 if compile else 0):  # compilation, and the slow start's recompilation
        one()
    if device.startswith("cuda"):  # kernels run asynchronously: time whole windows, synchronised at their ends
        def windowed(one=one):
            for _ in range(100):
                one()
            torch.cuda.synchronize()
        return timed(windowed, seconds) * 100 * K
    return timed(one, seconds) * K


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmarks", nargs="+", default=["m0", "m1", "m2", "c0", "c1", "cr"])
    ap.add_argument("--rules", nargs="+", default=["sgd", "vsgd_l", "smd"])
    ap.add_argument("--ks", nargs="+", type=int, default=[1, 10, 100])
    ap.add_argument("--seconds", type=float, default=3.0, help="timing window per measurement")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--csv", default=str(ROOT / "benchmarks" / "throughput.csv"))
    ap.add_argument("--eager", action="store_true", help="no torch.compile of the generic step (runner: compile=false)")
    ap.add_argument("--plain-malloc", action="store_true", help="skip experiments.malloc (as the runner does it)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.plain_malloc:
        from experiments.malloc import keep_freed_memory

        keep_freed_memory()

    rows = []
    for name in args.benchmarks:
        spec, cfg = bench_spec(name)
        base = naive_rate(spec, args.seconds)
        rows.append({"benchmark": cfg.name, "rule": "naive torch.optim.SGD", "K": 1, "updates_per_s": base, "vs_naive": 1.0})
        print(f"{cfg.name:3s} naive torch.optim.SGD loop       K=1    {base:10,.0f} updates/s", flush=True)
        for rule_name, K in itertools.product(args.rules, args.ks):
            try:
                get_rule(rule_name)
            except ValueError:
                print(f"{cfg.name:3s} {rule_name}: not registered, skipped")
                continue
            rate = ensemble_rate(spec, rule_name, K, args.seconds, compile=not args.eager)
            rows.append({"benchmark": cfg.name, "rule": rule_name, "K": K, "updates_per_s": rate, "vs_naive": rate / base})
            print(f"{cfg.name:3s} ensemble {rule_name:22s} K={K:<4d} {rate:10,.0f} updates/s  ({rate / base:5.1f}x naive)",
                  flush=True)

    write_csv(rows, args.csv)
    project(rows, args)


def write_csv(rows: list[dict], path: str) -> None:
    """The rows (dicts with the same keys) as a CSV file with a header."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"\nwrote {path}")


def project(rows: list[dict], args) -> None:
    """Projected wall time of table2 (10 seeds x methods x 6 epochs) and the Table 1 grids (2 seeds)."""
    best = {}
    for r in rows:
        if r["rule"] in args.rules:
            key = (r["benchmark"], r["rule"])
            best[key] = max(best.get(key, 0.0), r["updates_per_s"])
    table2, grids = 0.0, 0.0
    missing = set()
    grid_sizes = {"sgd": 68, "adagrad": 17, "smd": 476, "amari": 119, "almeida": 119}
    for name in args.benchmarks:
        _, cfg = bench_spec(name)
        steps = N_TRAIN[cfg.dataset] * cfg.epochs
        mnist = cfg.dataset == "mnist"
        methods = ["vsgd_l", "vsgd_b", "vsgd_g", "sgd", "adagrad"] + (["smd", "amari", "almeida"] if mnist else [])
        for m in methods:
            # rules not measured here are assumed to cost like vsgd_l (element-wise state), smd like smd
            proxy = m if (cfg.name, m) in best else ("smd" if m == "smd" else "vsgd_l" if m != "sgd" else "sgd")
            rate = best.get((cfg.name, proxy))
            if rate is None:
                missing.add((cfg.name, m))
                continue
            table2 += 10 * steps / rate
            if m in grid_sizes:
                grids += 2 * grid_sizes[m] * steps / rate
    note = f" (not measured: {sorted(missing)})" if missing else ""
    print(f"projected wall time on this machine: reproduce.sh table2 {table2 / 3600:.1f} h, "
          f"Table 1 grids {grids / 3600:.1f} h{note}")


if __name__ == "__main__":
    main()
