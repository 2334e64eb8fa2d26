"""Per-sample gradients for VSGDfd's minibatch statistics: torch.func (vmap(grad) + functional_call) vs BackPACK.

    python benchmarks/per_sample_grads.py [--batch 32] [--reps 30] [--threads 1]

Model: the small CNN of examples/cnn_mnist.py (Conv2d + ReLU + MaxPool, x2, Linear). Times one call that
returns the per-sample gradients of a minibatch (median of --reps calls), next to one plain backward of
the mean loss and a Python loop over samples; checks that the methods agree.
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


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
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
