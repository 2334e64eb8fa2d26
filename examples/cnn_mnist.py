"""A small CNN (Conv2d + ReLU, a non-smooth model) on MNIST with vsgd.VSGDfd: minibatch 32, no learning rate.

Beside it, on the same model, initial weights and minibatches: torch.optim.Adam at its defaults and
torch.optim.SGD(lr=0.01). Prints the test error after each epoch and the wall time.

    python examples/cnn_mnist.py                          # full MNIST, 3 epochs
    python examples/cnn_mnist.py --train-subset 12000     # what fits a busy 2-core CPU (see docs/vsgd_fd.md)

The VSGDfd loop is all it takes:

    opt = vsgd.VSGDfd(model.parameters())
    for x, y in batches:
        opt.step(vsgd.PerSampleClosure(model, F.cross_entropy, x, y))
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.nn import functional as F

import vsgd
from experiments.data import load


def make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 5), nn.ReLU(), nn.MaxPool2d(2),  # 28 -> 24 -> 12
        nn.Conv2d(8, 16, 5), nn.ReLU(), nn.MaxPool2d(2),  # 12 -> 8 -> 4
        nn.Flatten(), nn.Linear(16 * 4 * 4, 10),
    )


@torch.no_grad()
def test_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    wrong = sum(int((model(x[i:i + 2000]).argmax(1) != y[i:i + 2000]).sum()) for i in range(0, len(x), 2000))
    return 100.0 * wrong / len(x)


def train(name: str, x_tr, y_tr, x_te, y_te, *, epochs: int, batch: int, seed: int) -> list[dict]:
    model = make_model(seed)
    if name == "VSGDfd" or name == "VSGDfd (plain closure)":
        opt = vsgd.VSGDfd(model.parameters())
    elif name == "Adam":
        opt = torch.optim.Adam(model.parameters())
    elif name == "SGD(lr=0.01)":
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
    else:
        raise ValueError(name)
    order_gen = torch.Generator().manual_seed(seed + 1)  # the same minibatches for every optimizer
    rows, t0 = [], time.perf_counter()
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(len(x_tr), generator=order_gen)
        for i in range(0, len(perm) - batch + 1, batch):
            idx = perm[i:i + batch]
            x, y = x_tr[idx], y_tr[idx]
            if name == "VSGDfd":
                opt.step(vsgd.PerSampleClosure(model, F.cross_entropy, x, y))
            else:
                def closure(x=x, y=y):
                    opt.zero_grad()
                    loss = F.cross_entropy(model(x), y)
                    loss.backward()
                    return loss
                opt.step(closure)
        seconds = time.perf_counter() - t0
        rows.append({"optimizer": name, "seed": seed, "epoch": epoch, "test_error": test_error(model, x_te, y_te),
                     "seconds": seconds})
        print(f"{name:24s} seed {seed} epoch {epoch}: test error {rows[-1]['test_error']:.2f}%  ({seconds:.0f}s)", flush=True)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="small CNN on MNIST: VSGDfd vs Adam vs SGD(lr=0.01)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--train-subset", type=int, default=None, help="first N training images (default: all 60,000)")
    ap.add_argument("--optimizers", nargs="+", default=["VSGDfd", "Adam", "SGD(lr=0.01)"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--csv", default=None, help="write the rows here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load("mnist")
    n = args.train_subset or data.x_train.shape[0]
    x_tr, y_tr = data.x_train[:n].reshape(-1, 1, 28, 28), data.y_train[:n]
    x_te, y_te = data.x_test.reshape(-1, 1, 28, 28), data.y_test
    rows = []
    for seed in args.seeds:
        for name in args.optimizers:
            rows += train(name, x_tr, y_tr, x_te, y_te, epochs=args.epochs, batch=args.batch, seed=seed)
    if args.csv:
        import pandas as pd

        pd.DataFrame(rows).to_csv(args.csv, index=False)
    print(f"\ntrain images: {n}, minibatch {args.batch}, test images: {len(x_te)}")
    for r in rows:
        print(f"{r['optimizer']:24s} seed {r['seed']} epoch {r['epoch']}: {r['test_error']:.2f}%  {r['seconds']:.0f}s")


if __name__ == "__main__":
    main()
