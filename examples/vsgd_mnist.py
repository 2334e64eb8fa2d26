"""A small MLP on MNIST trained with vSGD: no learning rate anywhere.

    PYTHONPATH=. python examples/vsgd_mnist.py [--epochs 1] [--batch 10] [--mode l]
"""

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from experiments.data import load
from vsgd import VSGD

ap = argparse.ArgumentParser()
ap.add_argument("--epochs", type=int, default=1)
ap.add_argument("--batch", type=int, default=10)
ap.add_argument("--mode", default="l", choices=["l", "b", "g"])
args = ap.parse_args()

torch.manual_seed(0)
mnist = load("mnist")  # pixels in [0, 1], training mean subtracted
model = nn.Sequential(nn.Linear(784, 120), nn.Tanh(), nn.Linear(120, 10))
L2 = 1e-4  # the paper's lambda/2 ||theta||^2 (Sec. 7.2): it keeps vSGD-l's curvature estimates away from 0
opt = VSGD(model.parameters(), mode=args.mode, model=model, loss="cross_entropy", l2=L2)  # bbprop curvature

start = time.perf_counter()
for epoch in range(args.epochs):
    for idx in torch.randperm(mnist.n_train).split(args.batch):
        x, y = mnist.x_train[idx], mnist.y_train[idx]

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y) + L2 / 2 * sum((p * p).sum() for p in model.parameters())
            loss.backward()
            return loss

        opt.step(closure)
    with torch.no_grad():
        error = (model(mnist.x_test).argmax(1) != mnist.y_test).float().mean().item() * 100
    rates = torch.cat([r.flatten() for r in opt.learning_rates()])
    print(f"epoch {epoch + 1}: test error {error:.2f}%, learning rates min {rates.min():.2e} "
          f"median {rates.median():.2e} max {rates.max():.2e}, {time.perf_counter() - start:.0f} s")
