"""VSGD's step cap (vsgd/stepcap.py): alpha = min(1, -g.d / d^T G d) along the step d the rule proposes."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jvp

from vsgd import VSGD
from vsgd.curvature import output_quadratic


def regression(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 12, generator=g, dtype=torch.float64)
    y = x @ torch.randn(12, 2, generator=g, dtype=torch.float64) + 0.1 * torch.randn(64, 2, generator=g, dtype=torch.float64)
    torch.manual_seed(seed)
    return nn.Linear(12, 2).double(), x, y


def closure_for(opt, model, x, y, loss=F.mse_loss):
    def closure():
        opt.zero_grad()
        out = loss(model(x), y)
        out.backward()
        return out
    return closure


def test_on_a_quadratic_the_capped_step_is_the_minimum_along_the_rules_step():
    """A linear model with MSE is a quadratic whose Gauss-Newton matrix is its Hessian: with rates 50x too large
    (lr=50) the capped step is alpha d with alpha the exact minimiser along d, and the loss is lowest there."""
    model, x, y = regression()
    twin = copy.deepcopy(model)
    kw = {"mode": "l", "loss": "mse", "lr": 50.0, "n0": 1}
    capped, free = VSGD(model.parameters(), model=model, **kw), VSGD(twin.parameters(), model=twin, cap_step=False, **kw)
    for t in range(4):
        before = [p.detach().clone() for p in model.parameters()]
        capped.step(closure_for(capped, model, x, y))
        free_before = [p.detach().clone() for p in twin.parameters()]
        for p, b in zip(twin.parameters(), before):  # the twin proposes its step from the capped model's point
            p.data.copy_(b)
        free.step(closure_for(free, twin, x, y))
        d = [p.detach() - b for p, b in zip(twin.parameters(), before)]
        taken = [p.detach() - b for p, b in zip(model.parameters(), before)]
        if t == 0:  # the slow start's first sample: no move
            assert all(bool((u == 0).all()) for u in d + taken)
            continue
        g = [p.grad for p in model.parameters()]
        xa = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)  # the bias as an input of 1
        D = torch.cat([d[0], d[1][:, None]], 1)  # [out, in + 1]
        curvature = 2.0 / y.numel() * float(((xa @ D.T) ** 2).sum())  # d^T H d, H = 2/N X^T X per output
        slope = -sum(float((gi * di).sum()) for gi, di in zip(g, d))
        alpha = min(1.0, slope / curvature)
        assert alpha < 0.5  # lr=50 overshoots
        assert capped.last_step_cap["alpha"] == pytest.approx(alpha, rel=1e-6)
        for u, di in zip(taken, d):
            torch.testing.assert_close(u, alpha * di, rtol=1e-6, atol=1e-12)
        losses = []
        with torch.no_grad():
            for a in (0.9 * alpha, alpha, 1.1 * alpha):
                w = [b + a * di for b, di in zip(before, d)]
                losses.append(float(F.mse_loss(x @ w[0].T + w[1], y)))
        assert losses[1] < losses[0] and losses[1] < losses[2]
        del free_before


def test_cap_off_is_the_rule_and_a_step_within_the_model_is_not_touched():
    """cap_step=False takes the rule's steps bit for bit; where alpha = 1 the capped optimizer does the same."""
    model, x, y = regression(1)
    twin = copy.deepcopy(model)
    a = VSGD(model.parameters(), mode="l", model=model, loss="mse", n0=2)
    b = VSGD(twin.parameters(), mode="l", model=twin, loss="mse", n0=2, cap_step=False)
    for _ in range(6):
        a.step(closure_for(a, model, x, y))
        b.step(closure_for(b, twin, x, y))
        if a.last_step_cap is not None:
            assert a.last_step_cap["alpha"] == 1.0  # the slow start keeps these steps short
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert b.last_step_cap is None


class Net(nn.Module):
    """Conv + BatchNorm + Dropout: the cap's second pass must see the same dropout masks and leave the running
    statistics and the random state as the closure's pass left them."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.drop, self.fc = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Linear(4 * 36, 5)

    def forward(self, x):
        return self.fc(self.drop(torch.relu(self.bn(self.conv(x)))).flatten(1))


def test_the_second_pass_replays_dropout_and_moves_no_buffer_and_no_random_state():
    torch.manual_seed(3)
    model = Net().double()
    x, y = torch.randn(16, 1, 8, 8, dtype=torch.float64), torch.randint(0, 5, (16,))
    twin = copy.deepcopy(model)
    capped = VSGD(model.parameters(), mode="l", model=model, loss="cross_entropy", n0=1, lr=30.0)
    free = VSGD(twin.parameters(), mode="l", model=twin, loss="cross_entropy", n0=1, lr=30.0, cap_step=False)
    for opt, net in ((capped, model), (free, twin)):  # the slow start's step: no move, state built
        torch.manual_seed(11)
        opt.step(closure_for(opt, net, x, y, F.cross_entropy))
    torch.manual_seed(12)
    rng = torch.get_rng_state()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    capped.step(closure_for(capped, model, x, y, F.cross_entropy))
    after_capped = torch.get_rng_state()
    torch.manual_seed(12)
    free.step(closure_for(free, twin, x, y, F.cross_entropy))
    assert torch.equal(after_capped, torch.get_rng_state())  # the cap drew no random number
    for (n, bm), bt in zip(model.named_buffers(), twin.buffers()):
        assert torch.equal(bm, bt), n  # running statistics moved once, by the closure's pass
    # the curvature along the step, exactly (forward-mode), with the closure's dropout masks and batch statistics
    d = {n: (p.detach() - before[n]) / capped.last_step_cap["alpha"] for n, p in model.named_parameters()}
    ref = copy.deepcopy(model)
    ref.bn.track_running_stats = False  # batch statistics, as in training, without writing the running ones
    torch.set_rng_state(rng)
    out, jd = jvp(lambda ps: functional_call(ref, ps, (x,)), (before,), (d,))
    exact = float(output_quadratic("cross_entropy", out, jd))
    assert capped.last_step_cap["curvature"] == pytest.approx(exact, rel=1e-4)
    assert capped.last_step_cap["alpha"] < 1.0


def test_the_cap_needs_the_model():
    model = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="cap_step=True needs model"):
        VSGD(model.parameters(), curvature_fn=lambda: [torch.ones(2, 3), torch.ones(2)], cap_step=True)
    opt = VSGD(model.parameters(), curvature_fn=lambda: [torch.ones(2, 3), torch.ones(2)])  # off by default there
    assert opt._inputs is None


def test_a_non_finite_curvature_names_its_parameter():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    bad = [torch.ones(4, 3), torch.ones(4), torch.full((2, 4), float("nan")), torch.ones(2)]
    opt = VSGD(model.parameters(), curvature_fn=lambda: bad)
    x, y = torch.randn(5, 3), torch.randn(5, 2)
    with pytest.raises(ValueError, match=r"parameter #2 of param group 0 \(shape \[2, 4\]\) is not finite"):
        opt.step(closure_for(opt, model, x, y))
    huge = [torch.full((4, 3), 3e38), torch.ones(4), torch.ones(2, 4), torch.ones(2)]  # finite, its sum is not
    opt = VSGD(model.parameters(), curvature_fn=lambda: huge)
    opt.step(closure_for(opt, model, x, y))


def test_the_second_pass_leaves_every_parameter_bit_for_bit_and_matches_a_functional_pass():
    """The cap shifts the parameters in place for its forward pass and restores them by copy; in float32,
    theta + e d - e d is not theta, so anything but a copy fails the bit-for-bit check."""
    from vsgd.stepcap import InputRecorder, step_scale

    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(12, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.randn(32, 12), torch.randint(0, 3, (32,))
    rec = InputRecorder(model)
    out = model(x)
    F.cross_entropy(out, y).backward()
    moves = [(p, -0.3 * p.grad.detach()) for p in model.parameters()]
    params = [p.detach().clone() for p in model.parameters()]
    buffers = [b.clone() for b in model.buffers()]
    alpha, info = step_scale(model, rec, moves, loss="cross_entropy", reduction="mean", l2=0.0)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params))
    assert all(torch.equal(b, c) for b, c in zip(model.buffers(), buffers))
    # the same curvature through torch.func.functional_call (new tensors theta + e d, buffers copied)
    d2 = sum(float((u.double() ** 2).sum()) for _, u in moves)
    theta = sum(float((p.double() ** 2).sum()) for p in params) ** 0.5
    e = torch.finfo(torch.float32).eps ** 0.5 * (1 + theta) / d2 ** 0.5
    shifted = {n: p.detach() + e * u for (n, p), (_, u) in zip(model.named_parameters(), moves)}
    with torch.no_grad():
        out2 = functional_call(model, (shifted, {n: b.clone() for n, b in model.named_buffers()}), (x,))
    curv = float(output_quadratic("cross_entropy", out.detach(), (out2 - out.detach()) / e))
    assert info["curvature"] == curv
    slope = -sum(float((p.grad * u).sum()) for p, u in moves)
    assert info["slope"] == slope and float(alpha) == pytest.approx(min(1.0, slope / curv), rel=1e-7)
    rec.remove()


@pytest.mark.parametrize("loss,reduction,smoothing", [("cross_entropy", "mean", 0.0), ("cross_entropy", "mean", 0.1),
                                                      ("cross_entropy", "sum", 0.0), ("mse", "mean", 0.0)])
def test_the_loss_change_from_the_output_gradient_is_the_losss_own(loss, reduction, smoothing):
    """vsgd.curvature.output_loss_change takes the targets from dL/d(output), so it needs no labels: it must equal
    the loss's own difference between two outputs (labels one-hot or smoothed; mean or per-sample sum)."""
    from vsgd.curvature import output_loss_change

    g = torch.Generator().manual_seed(1)
    out = torch.randn(16, 5, generator=g, dtype=torch.float64, requires_grad=True)
    new = out.detach() + 0.7 * torch.randn(16, 5, generator=g, dtype=torch.float64)
    if loss == "mse":
        t = torch.randn(16, 5, generator=g, dtype=torch.float64)
        f = lambda o: F.mse_loss(o, t)
    else:
        y = torch.randint(0, 5, (16,), generator=g)
        red = "sum" if reduction == "sum" else "mean"
        f = lambda o: F.cross_entropy(o, y, reduction=red, label_smoothing=smoothing)
    f(out).backward()
    got = float(output_loss_change(loss, out.detach(), out.grad, new, reduction))
    assert got == pytest.approx(float(f(new) - f(out.detach())), rel=1e-10, abs=1e-12)


def test_the_checked_cap_cuts_a_step_that_raises_its_own_batchs_loss_and_keeps_one_that_lowers_it():
    """check=True (cap_step='checked'): after the cap, the batch loss at theta + alpha d; where it is above the loss
    at theta, alpha becomes the minimiser of the quadratic through L(theta), the slope and that loss; where it is
    below, alpha is the cap's. The rising case is one the local model cannot see: every hidden ReLU is just off,
    and d switches them all on with large outgoing weights, so the Gauss-Newton curvature measured a small
    distance along d misses them and the cap keeps the whole step. Checked against the loss recomputed with the
    labels."""
    from vsgd.stepcap import InputRecorder, step_scale

    torch.manual_seed(0)
    x, y = torch.randn(64, 10, dtype=torch.float64), torch.randint(0, 4, (64,))
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 4)).double()
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.fill_(-0.01)  # every hidden unit off, at the kink's doorstep
    rec = InputRecorder(model, keep_grad=True)
    out = model(x)
    loss0 = F.cross_entropy(out, y)
    loss0.backward()
    w1, b1, w2, b2 = model.parameters()
    g_b2 = b2.grad.detach()
    cases = {"kink": [(w1, torch.randn_like(w1)), (b1, torch.ones_like(b1)), (w2, 30 * torch.randn_like(w2)),
                      (b2, -g_b2)],
             "small": [(b2, -0.1 * g_b2)]}
    before = [p.detach().clone() for p in model.parameters()]
    for name, moves in cases.items():
        plain, _ = step_scale(model, rec, moves, loss="cross_entropy", reduction="mean", l2=0.0)
        alpha, info = step_scale(model, rec, moves, loss="cross_entropy", reduction="mean", l2=0.0, check=True)
        assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))  # step_scale moves nothing

        def loss_at(a, moves=moves):
            twin = copy.deepcopy(model)
            with torch.no_grad():
                for (p, u), q in zip(moves, [dict(zip(map(id, model.parameters()), twin.parameters()))[id(p)]
                                             for p, _ in moves]):
                    q.add_(a * u)
                return float(F.cross_entropy(twin(x), y))

        capped = float(plain)
        change = loss_at(capped) - float(loss0)
        assert info["loss_change"] == pytest.approx(change, rel=1e-8, abs=1e-12)
        if name == "kink":
            assert capped == 1.0 and change > 1.0  # the local model kept a step that ruins the batch
            s_a = capped * info["slope"]
            assert float(alpha) == pytest.approx(capped * s_a / (2 * (change + s_a)), rel=1e-8)
            assert float(alpha) < capped / 2 and loss_at(float(alpha)) < float(loss0)
        else:
            assert change < 0 and float(alpha) == capped
    rec.remove()


def test_cap_step_takes_true_false_or_checked():
    model = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="cap_step"):
        VSGD(model.parameters(), model=model, loss="mse", cap_step="yes")
