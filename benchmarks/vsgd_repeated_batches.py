"""vSGD-l at its defaults (step cap on) on Table 4's residual CNN, trained on a few minibatches over and over.

    PYTHONPATH=. python benchmarks/vsgd_repeated_batches.py [--seeds 0 1 2] [--batches 30] [--steps 1815]
        [--out benchmarks/vsgd_repeated_batches.csv]

Table 4's protocol (2 epochs of 10,000 images in a fresh order each epoch) finishes without divergence on its
3 seeds. This script asks what happens when the same ``--batches`` minibatches of 32 (the first rows of the
CIFAR-10 batch1 copy, approximate pixels) come back again and again: for each seed, two orders, "warm"
(batches 0..14 once, then 0..B-1 cycling: the order of a timing run that diverged, session 26) and "cycle"
(0..B-1 cycling from the start). Every step records the loss of the closure, the cap's slope, curvature and
alpha (``opt.last_step_cap``), the largest |weight| and the median and largest learning rate; the run stops at
the first non-finite loss or error. One thread; about a minute a run on this CPU.
"""

from __future__ import annotations

import argparse
import math

import pandas as pd
import torch
import torch.nn.functional as F

import vsgd


def run(seed: int, order: str, batches: int, steps: int, data, wl, cap_step=True) -> list[dict]:
    from experiments import workloads

    torch.manual_seed(seed)
    model = workloads.build_model(wl, data)
    opt = vsgd.VSGD(model.parameters(), mode="l", model=model, loss="cross_entropy", cap_step=cap_step)
    seq = (list(range(15)) if order == "warm" else []) + list(range(batches)) * (steps // batches + 1)
    rows = []
    for step, b in enumerate(seq[:steps]):
        x, y = data.x_train[32 * b:32 * b + 32], data.y_train[32 * b:32 * b + 32]

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss

        row = {"cap_step": cap_step, "seed": seed, "order": order, "step": step, "batch": b}
        try:
            row["loss"] = float(opt.step(closure).detach())
        except RuntimeError as exc:  # the curvature's label draw from a non-finite output
            row["error"] = str(exc).split("\n")[0][:80]
            rows.append(row)
            break
        row.update(opt.last_step_cap or {})
        rates = torch.cat([r.flatten() for r in opt.learning_rates()])
        row.update({"w_max": max(float(p.detach().abs().max()) for p in model.parameters()),
                    "rate_median": float(rates.median()), "rate_max": float(rates.max())})
        rows.append(row)
        if not math.isfinite(row["loss"]):
            break
    opt.close()
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--steps", type=int, default=1815)
    ap.add_argument("--cap-step", nargs="+", default=["True", "checked"],
                    help="VSGD's cap_step values to run: True (the default) and/or checked")
    ap.add_argument("--out", default="benchmarks/vsgd_repeated_batches.csv")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from experiments import workloads

    wl = workloads.workload_config("cifar_resnet")
    data = workloads.build_data(wl)
    rows = []
    for cap in args.cap_step:
      for seed in args.seeds:
        for order in ("warm", "cycle"):
            got = run(seed, order, args.batches, args.steps, data, wl, cap_step=True if cap == "True" else cap)
            last = got[-1]
            failed = "error" in last or not math.isfinite(last.get("loss", math.nan))
            print(f"cap_step={cap} seed {seed} {order}: {'diverged at step ' + str(last['step']) if failed else 'finished'}; "
                  f"last finite loss {next((r['loss'] for r in reversed(got) if math.isfinite(r.get('loss', math.nan))), None):.3g}",
                  flush=True)
            rows += got
    pd.DataFrame(rows).to_csv(args.out, index=False, float_format="%.4g")


if __name__ == "__main__":
    main()
