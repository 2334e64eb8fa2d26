"""Peak memory, state size and time per step of ``vsgd.VSGD`` (bbprop) and ``vsgd.VSGDfd`` against
``torch.optim.Adam`` on the same model (issue 37, items 4 and 5).

    PYTHONPATH=. python benchmarks/optim_memory.py [--steps 8] [--before PATH] [--out benchmarks/optim_memory.csv]

Two cases, batch 256, cross-entropy, float32, one thread:

* ``wide``: ``Linear(1024, 1024) - Tanh - Linear(1024, 10)``, everything trained (item 4: bbprop's batch
  reduction; before the fix it formed a per-sample ``[256, 1024, 1024]`` curvature tensor, 1 GiB).
* ``finetune``: the same model with the first layer frozen (``requires_grad=False``) and
  ``model.parameters()`` given to the optimizer, as fine-tuning code does (item 5: state for the 10,250
  trainable weights only).

Each (case, optimizer) runs in its own fresh Python process. There, after 3 steps of the same optimizer on
a tiny model (so that the lazy imports of a first step, about 180 MiB, are not counted), building the model
and one forward + backward pass without an optimizer, it reads the process's peak resident set size
(``ru_maxrss``), makes the optimizer, runs 2 warm-up steps and ``steps`` timed steps (VSGD's and VSGDfd's
n0 = 2, so the timed steps are real updates), and reads the peak again: ``peak_added_MiB`` is what the
optimizer added to the peak (its state plus the largest transient of a step). ``state_MB`` is the bytes of
the tensors in ``opt.state``; ``ms_per_step`` the median over the timed steps (a VSGDfd step is two
forward + backward passes, the other optimizers' one). Ratios are to Adam on the same case in the same run.

``--before PATH`` runs the same processes a second time with ``PATH`` first on ``PYTHONPATH`` (e.g. an
export of the code before the fix: ``git archive <commit> vsgd | tar -x -C /tmp/before``), labelled
``before`` in the CSV; the default run is labelled ``after``.

The committed ``optim_memory.csv`` ran on this 2-core virtual machine beside two long single-thread
training jobs: absolute times are inflated and noisy; the memory numbers, and the ratios to Adam measured
in the same run, are what count.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ("wide", "finetune")
OPTIMIZERS = ("adam", "vsgd_bbprop", "vsgdfd")
BATCH, WIDTH, CLASSES = 256, 1024, 10


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_one(case: str, name: str, steps: int) -> dict:
    import torch
    import torch.nn.functional as F
    from torch import nn

    import vsgd

    def make(model):
        if name == "adam":
            return torch.optim.Adam(model.parameters())
        if name == "vsgd_bbprop":
            return vsgd.VSGD(model.parameters(), mode="l", model=model, loss="cross_entropy", n0=2)
        return vsgd.VSGDfd(model.parameters(), n0=2)

    def closure_for(opt, model, x, y):
        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss

        return closure

    torch.set_num_threads(1)
    torch.manual_seed(0)
    # the lazy imports of a first optimizer step (torch._dynamo, ~180 MiB) are not the optimizer's: a tiny run first
    tiny = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    tiny_opt = make(tiny)
    for _ in range(3):
        tiny_opt.step(closure_for(tiny_opt, tiny, torch.randn(2, 4), torch.tensor([0, 1])))
    del tiny_opt
    model = nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.Tanh(), nn.Linear(WIDTH, CLASSES))
    if case == "finetune":
        model[0].requires_grad_(False)
    x, y = torch.randn(BATCH, WIDTH), torch.randint(0, CLASSES, (BATCH,))
    F.cross_entropy(model(x), y).backward()  # the model's own forward + backward, before any optimizer
    model.zero_grad(set_to_none=True)
    base = _peak_mib()

    opt = make(model)
    closure = closure_for(opt, model, x, y)
    times = []
    for t in range(2 + steps):
        t0 = time.perf_counter()
        opt.step(closure)
        if t >= 2:
            times.append(time.perf_counter() - t0)
    state_bytes = sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values()
                      if isinstance(v, torch.Tensor))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"case": case, "optimizer": name, "trainable_params": trainable,
            "params": sum(p.numel() for p in model.parameters()), "state_MB": state_bytes / 1e6,
            "peak_added_MiB": _peak_mib() - base, "ms_per_step": 1e3 * statistics.median(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--before", default=None, help="path put first on PYTHONPATH for a 'before' run")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "optim_memory.csv"))
    ap.add_argument("--one", nargs=2, metavar=("CASE", "OPTIMIZER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one, args.steps)))
        return
    versions = [("after", str(ROOT))] + ([("before", args.before)] if args.before else [])
    rows = []
    for label, path in versions:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([path, str(ROOT)])}
        for case in CASES:
            found = {}
            for name in OPTIMIZERS:
                out = subprocess.run([sys.executable, __file__, "--one", case, name, "--steps", str(args.steps)],
                                     env=env, capture_output=True, text=True, check=True)
                found[name] = json.loads(out.stdout.strip().splitlines()[-1])
                print(label, found[name], flush=True)
            adam = found["adam"]
            for name, r in found.items():
                rows.append({"code": label, **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()},
                             "state_vs_adam": round(r["state_MB"] / adam["state_MB"], 2),
                             # ru_maxrss moves in pages and reuses freed memory: below 1 MiB a ratio means nothing
                             "peak_vs_adam": (round(r["peak_added_MiB"] / adam["peak_added_MiB"], 2)
                                              if adam["peak_added_MiB"] >= 1 else ""),
                             "time_vs_adam": round(r["ms_per_step"] / adam["ms_per_step"], 2)})
    with open(args.out, "w", newline="") as f:
        f.write("# benchmarks/optim_memory.py: batch 256, float32, 1 thread, one fresh process per row; ran beside two "
                "background training jobs on a 2-core VM, so absolute times are inflated: compare memory and the "
                "ratios to Adam in the same run\n")
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
