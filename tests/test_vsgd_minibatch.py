"""VSGD's minibatch rates (paper 2 eq. 3) from per-sample gradient statistics (issue 34 s2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vsgd import VSGD, PerSampleClosure
from vsgd.fd import minibatch_ratio


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).double()


def _data(t, n):
    g = torch.Generator().manual_seed(100 + t)
    return torch.randn(n, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def _run(mode, n, per_sample, steps=12, curvature="auto"):
    model = _mlp()
    opt = VSGD(model.parameters(), mode=mode, model=model, loss="cross_entropy", n0=3, curvature=curvature)
    for t in range(steps):
        x, y = _data(t, n)
        if per_sample:
            opt.step(PerSampleClosure(model, F.cross_entropy, x, y))
        else:
            def closure():
                opt.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                return loss
            opt.step(closure)
    opt.close()
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]), opt


def test_batch_of_one_is_todays_rule_bit_for_bit():
    # at B = 1 the per-sample statistics are the gradient's own: the trajectory is the n = 1 rule's, bit for bit
    for mode in "lbg":
        for curvature in ("bbprop", "gnb"):
            a, _ = _run(mode, 1, per_sample=False, curvature=curvature)
            b, _ = _run(mode, 1, per_sample=True, curvature=curvature)
            assert torch.equal(a, b), (mode, curvature)


def test_minibatch_uses_eq3_with_per_sample_statistics():
    n = 8
    model = _mlp()
    opt = VSGD(model.parameters(), mode="l", model=model, loss="cross_entropy", n0=1, h_rel=0.0)
    x, y = _data(0, n)
    closure = PerSampleClosure(model, F.cross_entropy, x, y)
    _, per_sample = closure.per_sample_grads()
    opt.step(closure)  # slow start (t < n0): arithmetic means, v_bar = C mean_j g_j^2
    C = opt.defaults["c"]
    for p in model.parameters():
        torch.testing.assert_close(opt.state[p]["v_bar"].squeeze(0), C * (per_sample[p] ** 2).mean(0), rtol=1e-12, atol=0)
    # after the slow start: theta moves by eta grad, eta = n g_bar^2 / (v_bar + (n - 1) g_bar^2) / h_bar (eq. 3)
    x, y = _data(1, n)
    before = [p.detach().clone() for p in model.parameters()]
    opt.step(PerSampleClosure(model, F.cross_entropy, x, y))
    for p, old in zip(model.parameters(), before):
        st = {k: v.squeeze(0) for k, v in opt.state[p].items() if torch.is_tensor(v)}
        eta = minibatch_ratio(st["g_bar"] ** 2, st["v_bar"], n, 1e-16) / st["h_bar"]
        torch.testing.assert_close(p.detach(), old - eta * p.grad, rtol=1e-10, atol=1e-14)
        # and eq. 3's factor is what separates it from treating the minibatch as one sample (n = 1)
        eta1 = st["g_bar"] ** 2 / (st["v_bar"] + 1e-16) / st["h_bar"]
        assert (eta >= eta1 * (1 - 1e-12)).all() and (eta > eta1 * 1.01).any()
    rates = opt.learning_rates()  # the state remembers n
    for p, r in zip(model.parameters(), rates):
        st = {k: v.squeeze(0) for k, v in opt.state[p].items() if torch.is_tensor(v)}
        torch.testing.assert_close(r, minibatch_ratio(st["g_bar"] ** 2, st["v_bar"], n, 1e-16) / st["h_bar"])
    opt.close()


def test_minibatch_rates_train_in_every_mode():
    for mode in "lbg":
        final, _ = _run(mode, 16, per_sample=True, steps=30)
        assert torch.isfinite(final).all()
