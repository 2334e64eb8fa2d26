"""CPU time per update of each baseline on M0 (K = 2 members, float32), as the trainer's inner loop does it:
one sample per member, gradients, extras (H v for SMD), the rule's update, p += u.

Process CPU time (not wall time), so that a loaded machine still gives a usable number. Usage:
    PYTHONPATH=$PWD OMP_NUM_THREADS=1 nice python benchmarks/baseline_step_cost.py [steps]
"""

from __future__ import annotations

import sys
import time

import torch

from experiments.mlp import EnsembleMLP, MLPSpec, glorot_init
from experiments.run import table1_setting
from vsgd.core import get_rule


def main(steps: int) -> None:
    spec = MLPSpec((784, 10), "cross_entropy", 1e-4)
    model = EnsembleMLP(spec)
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(steps, 2, 784, generator=g) * 0.3
    ys = torch.randint(0, 10, (steps, 2), generator=g)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {steps} steps, M0, K = 2")
    for name in ("sgd", "adagrad", "amari", "almeida", "smd"):
        rule = get_rule(name)
        setting = table1_setting("M0", name)
        setting.pop("gamma", None)
        hp = rule.hp_tensors([setting, setting], dtype=torch.float32, device="cpu")
        params = glorot_init(spec, [0, 1])
        state = rule.init(params, hp)
        for phase in ("warm-up", "timed"):
            t0 = time.process_time()
            for t in range(steps):
                x, y = xs[t], ys[t]
                _, grads, _ = model.loss_and_grads(params, x, y)
                extras = {"batch_size": 1}
                if "hvp" in rule.extras:
                    extras["hvp"] = lambda vs, x=x, y=y: model.hvp(params, x, y, vs)
                updates, state = rule.update(grads, state, params, hp, extras)
                for p, u in zip(params, updates):
                    p.add_(u)
            cpu = (time.process_time() - t0) / steps
        print(f"{name:8s} {cpu * 1e3:6.2f} ms CPU / update  ->  {cpu * 360000 / 60:5.1f} CPU-minutes for M0 (6 x 60k)",
              flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
