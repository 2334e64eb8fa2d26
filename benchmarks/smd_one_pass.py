"""SMD in the ensemble trainer: gradient and Hessian-vector product from one forward-over-reverse pass, against a
gradient pass followed by a product pass (issue 35: "SMD 0.21-0.28 of its roofline, its Hessian-vector product's
extra pass"). A/B in one run, the two interleaved.

    PYTHONPATH=. python benchmarks/smd_one_pass.py                       # M0 M1 M2, K = 4, compiled
    PYTHONPATH=. python benchmarks/smd_one_pass.py --benchmarks m1 --ks 1 4 10 --eager

Both arms run the trainer's own step (``experiments.trainer.make_step``) on the same fake samples from the same
initialisation; the "two passes" arm is the SMD rule without ``hvp_vectors`` (the trainer then calls
``EnsembleMLP.loss_and_grads`` and ``EnsembleMLP.hvp``). Prints member-updates/s of each (best of ``--rounds``
rounds of ``--seconds`` each), their ratio, and whether the parameters agree bit for bit after the warm-up steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import bench_spec, lockstep_samples, timed, write_csv

import baselines  # noqa: F401  (registers SMD)
from experiments.mlp import EnsembleMLP, glorot_init
from experiments.trainer import make_step
from vsgd.core import get_rule


def stepper(spec, rule, K: int, compile: bool):
    model = EnsembleMLP(spec)
    params = glorot_init(spec, list(range(K)))
    hp = rule.hp_tensors([{"eta0": 1e-3}] * K, dtype=torch.float32, device="cpu")  # small: no member diverges
    state = [rule.init(params, hp)]
    step = make_step(model, rule, compile=compile)
    sample = lockstep_samples(spec, K)

    def one():
        x, target, _ = sample()
        state[0] = step(params, state[0], hp, x, target)

    return one, params


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmarks", nargs="+", default=["m0", "m1", "m2"])
    ap.add_argument("--ks", type=int, nargs="+", default=[4])
    ap.add_argument("--eager", action="store_true", help="not compiled (the runner compiles SMD: compile: auto)")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--csv", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    rule = get_rule("smd")
    two = dataclasses.replace(rule, hvp_vectors=None)
    rows = []
    for name in a.benchmarks:
        spec, _ = bench_spec(name)
        for K in a.ks:
            (one_f, p1), (two_f, p2) = stepper(spec, rule, K, not a.eager), stepper(spec, two, K, not a.eager)
            for _ in range(a.warmup):
                one_f()
                two_f()
            same = all(torch.equal(x, y) for x, y in zip(p1, p2))
            r1, r2 = 0.0, 0.0
            for _ in range(a.rounds):  # interleaved rounds: the machine's drift falls on both arms
                r1 = max(r1, K * timed(one_f, a.seconds))
                r2 = max(r2, K * timed(two_f, a.seconds))
            rows.append({"benchmark": name.upper(), "K": K, "compiled": not a.eager, "one_pass_per_s": round(r1),
                         "two_passes_per_s": round(r2), "ratio": round(r1 / r2, 3), "bit_identical": same})
            print(rows[-1], flush=True)
    if a.csv:
        write_csv(rows, a.csv)


if __name__ == "__main__":
    main()
