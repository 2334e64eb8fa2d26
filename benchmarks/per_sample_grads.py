"""Per-sample gradients for VSGDfd's minibatch statistics: torch.func (vmap(grad) + functional_call) vs BackPACK.

    python benchmarks/per_sample_grads.py [--batch 32] [--reps 30] [--threads 1]

    PYTHONPATH=. python benchmarks/per_sample_grads.py --table4 --csv benchmarks/per_sample_grads_table4.csv

Model: the small CNN of examples/cnn_mnist.py (Conv2d + ReLU + MaxPool, x2, Linear). Times one call that
returns the per-sample gradients of a minibatch (median of --reps calls), next to one plain backward of
the mean loss and a Python loop over samples; checks that the methods agree.

``--table4``: the same on Table 4's five workloads (their models, data and minibatch of 32; the
per-sample closure Table 4 runs), with PyTorch's own ExpandedWeights
(``torch.nn.utils._per_sample_grad.call_for_per_sample_grads``: per-sample gradients from one backward of
the batch, without vmap) beside ``torch.func``: does it avoid vmap's loop over the LSTM's samples (no
batching rule for ``aten::mkldnn_rnn_layer``)?
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.nn import functional as F

import vsgd
from examples.cnn_mnist import make_model


def timed(fn, reps):
    fn()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def table4(reps: int, csv_path: str | None) -> None:
    """Table 4's workloads: one backward, torch.func vmap, ExpandedWeights, a loop over samples (ms, median)."""
    import warnings

    from torch.nn.utils._per_sample_grad import call_for_per_sample_grads

    from experiments import workloads  # the harness (this script sits above the library)

    rows = []
    for name in ("mnist_cnn", "cifar_resnet", "char_lstm", "char_transformer", "sparse_logreg"):
        wl = workloads.workload_config(name)
        data = workloads.build_data(wl)
        torch.manual_seed(0)
        model = workloads.build_model(wl, data)
        B = int(wl["batch_size"])
        x, y = data.x_train[:B], data.y_train[:B]
        closure = vsgd.PerSampleClosure(model, F.cross_entropy, x, y)
        params = list(model.parameters())

        def expanded():
            for p in params:
                p.grad_sample, p.grad = None, None
            F.cross_entropy(call_for_per_sample_grads(model, batch_size=B, loss_reduction="mean")(x), y).backward()
            return [p.grad_sample for p in params]  # "mean": each sample's own gradient

        def loop():
            out = []
            for j in range(B):
                model.zero_grad()
                F.cross_entropy(model(x[j:j + 1]), y[j:j + 1]).backward()
                out.append([p.grad.clone() for p in params])
            return out

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # vmap's "no batching rule" warning on the LSTM: its cost is measured
            ref = closure.per_sample_grads()[1]
            row = {"workload": name, "batch": B, "backward_ms": 1e3 * timed(closure, reps),
                   "vmap_ms": 1e3 * timed(closure.per_sample_grads, reps)}
            try:
                got = expanded()
                row["expanded_weights_ms"] = 1e3 * timed(expanded, reps)
                row["expanded_weights_max_rel_diff"] = max(
                    float((a - ref[p]).abs().max() / ref[p].abs().max().clamp_min(1e-30)) for a, p in zip(got, params))
                row["expanded_weights_error"] = ""
            except RuntimeError as exc:  # an op ExpandedWeights has no rule for: say which
                row |= {"expanded_weights_ms": float("nan"), "expanded_weights_max_rel_diff": float("nan"),
                        "expanded_weights_error": f"{type(exc).__name__}: {exc}"[:120]}
            for p in params:
                p.grad_sample = None
            row["loop_ms"] = 1e3 * timed(loop, max(3, reps // 5))
        rows.append(row)
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    if csv_path:
        import pandas as pd

        pd.DataFrame(rows).to_csv(csv_path, index=False, float_format="%.4g")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--table4", action="store_true", help="Table 4's five workloads instead of the CNN")
    ap.add_argument("--csv", default=None, help="with --table4: write the rows here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.table4:
        return table4(args.reps, args.csv)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (args.batch,), generator=g)
    model = make_model(0)
    params = list(model.parameters())

    def plain():
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()

    closure = vsgd.PerSampleClosure(model, F.cross_entropy, x, y)
    ref = closure.per_sample_grads()[1]

    def func():
        closure.per_sample_grads()

    def loop():
        out = []
        for j in range(args.batch):
            model.zero_grad()
            F.cross_entropy(model(x[j:j + 1]), y[j:j + 1]).backward()
            out.append([p.grad.clone() for p in params])
        return out

    rows = [("mean gradient only (one backward)", timed(plain, args.reps)),
            ("torch.func vmap(grad) + functional_call", timed(func, args.reps)),
            ("python loop over samples", timed(loop, max(3, args.reps // 5)))]
    try:
        from backpack import backpack, extend
        from backpack.extensions import BatchGrad

        bmodel = extend(make_model(0))
        lossfn = extend(torch.nn.CrossEntropyLoss())

        def bp():
            bmodel.zero_grad()
            with backpack(BatchGrad()):
                lossfn(bmodel(x), y).backward()
            return [p.grad_batch * args.batch for p in bmodel.parameters()]  # grad_batch carries the 1/n of the mean

        got = bp()
        err = max(float((a - ref[p]).abs().max()) for a, p in zip(got, params))
        rows.append((f"BackPACK BatchGrad (max |diff| vs torch.func {err:.1e})", timed(bp, args.reps)))
    except ImportError:
        rows.append(("BackPACK not installed (pip install backpack-for-pytorch)", float("nan")))
    print(f"batch {args.batch}, threads {torch.get_num_threads()}, torch {torch.__version__}")
    for name, sec in rows:
        print(f"  {sec * 1e3:8.2f} ms  {name}")


if __name__ == "__main__":
    main()
