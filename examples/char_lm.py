"""A character-level language model (an LSTM or a small transformer encoder) with vsgd.VSGD: no learning rate.

Table 4's char workloads (docs/table4.md: CPython's licence text, checksummed; predict the next byte from the 32
before it), trained with ``VSGD`` at its defaults beside ``torch.optim.Adam`` at its defaults and SGD-momentum at
Table 4's pick, same model, initial weights and minibatches. Prints the test error and loss after each epoch.

    PYTHONPATH=. python examples/char_lm.py                        # the LSTM, 3 epochs: about 30 s on one CPU core
    PYTHONPATH=. python examples/char_lm.py --model transformer --epochs 1

The VSGD loop is the usual closure; ``model=`` lets it measure the curvature (a sampled Gauss-Newton diagonal)
and cap each step (docs/vsgd.md, "The step cap"):

    opt = vsgd.VSGD(model.parameters(), model=model, loss="cross_entropy")
    for x, y in batches:
        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss
        opt.step(closure)

(Table 4 itself steps with ``vsgd.PerSampleClosure``, paper 2's minibatch rates; the plain closure treats the
minibatch gradient as one sample.)
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F

import vsgd
from experiments import workloads


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["lstm", "transformer"], default="lstm")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    wl = workloads.workload_config(f"char_{args.model}")
    data = workloads.build_data(wl)
    B = int(wl["batch_size"])
    sgdm_lr = {"lstm": 0.3, "transformer": 0.03}[args.model]  # Table 4's pick of SGD-momentum's grid
    methods = {
        "VSGD (defaults)": lambda m: vsgd.VSGD(m.parameters(), model=m, loss="cross_entropy"),
        "Adam (defaults)": lambda m: torch.optim.Adam(m.parameters()),
        f"SGD-momentum (lr {sgdm_lr}, tuned)": lambda m: torch.optim.SGD(m.parameters(), lr=sgdm_lr, momentum=0.9),
    }
    for name, make in methods.items():
        torch.manual_seed(args.seed)
        model = workloads.build_model(wl, data)
        opt = make(model)
        order = torch.Generator().manual_seed(args.seed + 7919)
        steps = len(data.x_train) // B
        start = time.perf_counter()
        for epoch in range(1, args.epochs + 1):
            for idx in workloads.minibatch_order(len(data.x_train), B, steps, order):
                x, y = data.x_train[idx], data.y_train[idx]

                def closure():
                    opt.zero_grad()
                    loss = F.cross_entropy(model(x), y)
                    loss.backward()
                    return loss

                opt.step(closure)
            with torch.no_grad():
                err, loss = workloads.evaluate(model, data.x_test, data.y_test)
            print(f"{name:32s} epoch {epoch}: test error {err:5.2f} %, test loss {loss:.3f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
        if hasattr(opt, "close"):
            opt.close()


if __name__ == "__main__":
    main()
