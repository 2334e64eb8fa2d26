"""vsgd.curvature: every estimator against the exact Gauss-Newton diagonal (torch.func), on small float64 models of
every supported layer type; VSGD(model=..., loss=...) trains Conv / LSTM / transformer models in every mode.

Unbiasedness check (stochastic estimators): N independent draws on a fixed batch; per element the mean and its
standard error se = std / sqrt(N); z = (mean - exact) / se over the elements whose exact value is not rounding
noise (> 1e-9 x the tensor's largest; e.g. a conv bias in front of BatchNorm has an exact curvature of 1e-33).
Unbiased: z is about standard normal. The elements' z are correlated (every draw of u moves all of them), so
the test is on scalars: |z| < 4 for the sum over each parameter tensor and over all, and |z| < 6 for every
element (tails of squared-gradient estimators are heavy, N is small); so that it can fail, the same draws
scaled by 0.75 (a 25% bias) must be rejected.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from test_optim_contract import make_closure  # pytest puts tests/ on sys.path
from torch import nn

from vsgd import VSGD
from vsgd.bbprop import bbprop
from vsgd.curvature import (
    SampledGaussNewton,
    exact_ggn_diagonal,
    gnb,
    gnb_per_sample,
    hutchinson_ggn,
    is_bbprop_model,
    sample_output_gradient,
)

VOCAB, CLASSES = 7, 3


class Recurrent(nn.Module):
    def __init__(self, width=5):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 4)
        self.lstm = nn.LSTM(4, width, batch_first=True)
        self.head = nn.Linear(width, CLASSES)

    def forward(self, x):
        return self.head(self.lstm(self.embed(x))[0][:, -1])


class Encoder(nn.Module):
    def __init__(self, width=8, dropout=0.0):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width)
        self.block = nn.TransformerEncoderLayer(width, 2, 2 * width, dropout=dropout, batch_first=True)
        self.head = nn.Linear(width, CLASSES)

    def forward(self, x):
        return self.head(self.block(self.embed(x))[:, -1])


def models():
    """name -> (model, batch, per-sample estimator applies): one of each layer type, float64."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    images = torch.randn(6, 1, 6, 6, generator=g, dtype=torch.float64)
    tokens = torch.randint(0, VOCAB, (5, 4), generator=g)
    vectors = torch.randn(6, 5, generator=g, dtype=torch.float64)
    return {
        "linear": (nn.Sequential(nn.Linear(5, CLASSES)), vectors, True),
        "tanh_mlp": (nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, CLASSES)), vectors, True),
        "conv_pool": (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(),
                                    nn.Linear(8, CLASSES)), images, True),
        "batchnorm": (nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.AvgPool2d(2),
                                    nn.Flatten(), nn.Linear(8, CLASSES)), images, False),  # samples interact
        "layernorm": (nn.Sequential(nn.Linear(5, 4), nn.LayerNorm(4), nn.Tanh(), nn.Linear(4, CLASSES)), vectors, True),
        "embedding": (nn.Sequential(nn.Embedding(VOCAB, 3), nn.Flatten(), nn.Linear(12, CLASSES)), tokens, True),
        "lstm": (Recurrent(), tokens, False),  # nn.LSTM does not run under torch.func.vmap
        "transformer": (Encoder(), tokens, True),
    }


def _flat(ts):
    return torch.cat([t.reshape(-1) for t in ts])


def _z(draws, exact, scale=None):
    """z of the elements whose exact value is not rounding noise (> 1e-9 x ``scale``, default their largest)."""
    mean, se = draws.mean(0), draws.std(0) / math.sqrt(draws.shape[0])
    keep = exact.abs() > 1e-9 * (exact.abs().max() if scale is None else scale)
    return ((mean - exact) / se.clamp_min(1e-300))[keep]


def _fails(draws, exact, sizes):
    """The ways the draws disagree with an unbiased estimate of ``exact``: |z| > 4 for the sum over each parameter
    tensor and over all (scalars: the elements' z are correlated, all elements share each draw of u), or an element
    with |z| > 6."""
    scalars = [draws.sum(1, keepdim=True), *[d.sum(1, keepdim=True) for d in draws.split(sizes, dim=1)]]
    wants = [exact.sum().reshape(1), *[e.sum().reshape(1) for e in exact.split(sizes)]]
    bad = [f"sum {i}: z {float(z):.1f}" for i, (d, e) in enumerate(zip(scalars, wants)) if (z := _z(d, e, wants[0].abs())).numel() and z.abs().max() > 4]
    z = _z(draws, exact)
    return bad + ([f"element max |z| {float(z.abs().max()):.1f}"] if z.abs().max() > 6 else [])


def assert_unbiased(draws, exact, sizes, what):
    assert not (bad := _fails(draws, exact, sizes)), f"{what}: {bad}"
    assert _fails(0.75 * draws, exact, sizes), f"{what}: the check cannot see a 25% bias"


def test_exact_reference_is_bbprop_where_bbprop_is_exact():
    # a single Linear layer into the loss: bbprop is exact (each weight reaches one output), an independent
    # implementation of the same G; with MSE also a net with one hidden layer (diagonal output Hessian)
    torch.manual_seed(0)
    x = torch.randn(7, 5, dtype=torch.float64)
    cases = [(nn.Sequential(nn.Linear(5, 3)).double(), "cross_entropy"), (nn.Sequential(nn.Linear(5, 3)).double(), "mse"),
             (nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double(), "mse")]
    for model, loss in cases:
        for reduction in ("mean", "sum"):
            got, want = bbprop(model, x, loss, reduction=reduction), exact_ggn_diagonal(model, x, loss, reduction=reduction)
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
    # and where bbprop is not exact (cross-entropy behind a hidden layer drops -p_j p_k), the reference says so
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    first = bbprop(model, x, "cross_entropy")[0]
    assert not torch.allclose(first, exact_ggn_diagonal(model, x, "cross_entropy")[0], rtol=1e-3)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_sampled_output_gradient_has_the_loss_hessian_as_second_moment(loss):
    # E[u u^T] = H (the loss's Hessian w.r.t. the output), checked on the full [positions x classes] matrix
    out = torch.randn(3, 4, dtype=torch.float64) * 2
    g = torch.Generator().manual_seed(0)
    u = torch.stack([sample_output_gradient(loss, out, "mean", g).reshape(-1) for _ in range(40000)])
    second = u.T @ u / u.shape[0]
    y = torch.randint(0, 4, (3,)) if loss == "cross_entropy" else torch.randn(3, 4, dtype=torch.float64)
    fn = F.cross_entropy if loss == "cross_entropy" else F.mse_loss
    H = torch.func.hessian(lambda o: fn(o.reshape(3, 4), y))(out.reshape(-1))
    assert (second - H).abs().max() < 0.03 * H.abs().max(), (second - H).abs().max() / H.abs().max()


@pytest.mark.parametrize("name", list(models()))
def test_estimators_are_unbiased_for_the_exact_ggn_diagonal(name):
    model, x, per_sample_ok = models()[name]
    model = model.double()
    for loss in ("cross_entropy", "mse"):
        exact = _flat(exact_ggn_diagonal(model, x, loss))
        sizes = [p.numel() for p in model.parameters()]
        assert exact.abs().max() > 0
        estimators = {"gnb": gnb, "hutchinson_ggn": hutchinson_ggn}
        if name == "transformer":  # the documented limit: no forward-mode AD through PyTorch's fused attention
            with pytest.raises(NotImplementedError, match="forward AD"):
                hutchinson_ggn(model, x, loss)
            del estimators["hutchinson_ggn"]
        if per_sample_ok:
            estimators["gnb_per_sample"] = gnb_per_sample
        for est_name, est in estimators.items():
            g = torch.Generator().manual_seed(2)
            n = 300 if est_name != "hutchinson_ggn" else 600  # Hutchinson: larger variance, more draws
            draws = torch.stack([_flat(est(model, x, loss, generator=g)) for _ in range(n)])
            assert torch.isfinite(draws).all()
            if est_name != "hutchinson_ggn":
                assert (draws >= 0).all()
            assert_unbiased(draws, exact, sizes, f"{name} {loss} {est_name}")


def test_per_sample_squares_have_lower_variance_than_the_batch_estimate():
    model, x, _ = models()["tanh_mlp"]
    model = model.double()
    spread = {}
    for est in (gnb, gnb_per_sample):
        g = torch.Generator().manual_seed(3)
        draws = torch.stack([_flat(est(model, x, "cross_entropy", generator=g)) for _ in range(300)])
        spread[est.__name__] = draws.var(0).sum()
    assert spread["gnb_per_sample"] < spread["gnb"]


@pytest.mark.parametrize("name", ["conv_pool", "batchnorm", "lstm", "transformer"])
def test_the_optimizer_hook_draws_what_gnb_draws_and_leaves_grad_alone(name):
    # SampledGaussNewton (what VSGD uses) backpropagates u inside the user's backward: the same estimate as the
    # stand-alone gnb for the same draw, the user's .grad exactly what it is without the hook
    model, x, _ = models()[name]
    model = model.double()
    twin = copy.deepcopy(model)
    y = torch.randint(0, CLASSES, (x.shape[0],), generator=torch.Generator().manual_seed(5))
    est = SampledGaussNewton(model, "cross_entropy", seed=11)
    F.cross_entropy(model(x), y).backward()
    F.cross_entropy(twin(x), y).backward()
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p.grad, q.grad)
    want = gnb(copy.deepcopy(twin), x, "cross_entropy", generator=torch.Generator().manual_seed(11))
    got = est.curvature()
    assert est.backwards == 1
    for p, w in zip(model.parameters(), want):
        torch.testing.assert_close(got[p], w, rtol=1e-10, atol=1e-300)
    with torch.no_grad():
        model(x)  # evaluation: no estimate
    assert est.backwards == 1
    est.remove()
    F.cross_entropy(model(x), y).backward()
    assert est.backwards == 0


def test_auto_picks_bbprop_on_the_papers_mlps_and_gnb_elsewhere():
    mlp = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    conv = nn.Sequential(nn.Conv2d(1, 1, 3))
    assert is_bbprop_model(mlp) and not is_bbprop_model(conv) and not is_bbprop_model(Recurrent())
    for model, want in ((mlp, "bbprop"), (torch.compile(mlp, backend="eager"), "bbprop"), (conv, "gnb"),
                        (Recurrent(), "gnb")):
        opt = VSGD(model.parameters(), model=model, loss="cross_entropy")
        assert opt.curvature == want
        opt.close()
    with pytest.raises(ValueError, match="curvature="):
        VSGD(mlp.parameters(), model=mlp, loss="mse", curvature="exact")
    with pytest.raises(TypeError, match="curvature_fn"):
        VSGD(conv.parameters(), model=conv, loss="mse", curvature="bbprop")


def _task(kind, g, n=16):
    if kind == "conv":  # the class is where a bright pixel sits
        y = torch.randint(0, CLASSES, (n,), generator=g)
        x = 0.3 * torch.randn(n, 1, 6, 6, generator=g)
        x[torch.arange(n), 0, 2 * y, 2 * y] += 3.0
        return x, y
    x = torch.randint(0, VOCAB, (n, 4), generator=g)
    return x, x[:, -1] % CLASSES  # the class is the last token's


def _conv_net():
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(27, CLASSES))


@pytest.mark.parametrize("mode", ["l", "b", "g"])
@pytest.mark.parametrize("kind", ["conv", "lstm", "transformer"])
def test_vsgd_trains_conv_lstm_and_transformer_without_curvature_fn(kind, mode):
    torch.manual_seed(0)
    model = {"conv": _conv_net, "lstm": lambda: Recurrent(8), "transformer": lambda: Encoder(8, dropout=0.1)}[kind]()
    opt = VSGD(model.parameters(), mode=mode, model=model, loss="cross_entropy")
    assert opt.curvature == "gnb"
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(80):
        x, y = _task(kind, g)
        losses.append(float(opt.step(make_closure(opt, model, x, y)).detach()))
    opt.close()
    assert all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.9 * first, f"{kind} vSGD-{mode}: loss {first:.3f} -> {last:.3f}"
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_gnb_step_without_closure_resume_and_reproducibility():
    def run(steps, resume_at=None, seed=0):
        torch.manual_seed(0)
        model = Encoder(8)
        opt = VSGD(model.parameters(), model=model, loss="cross_entropy", seed=seed, n0=2)
        g = torch.Generator().manual_seed(0)
        rng = torch.get_rng_state()  # the model has no dropout: only the optimizer could draw from it
        for t in range(steps):
            if t == resume_at:
                saved = copy.deepcopy(opt.state_dict())
                opt.close()
                opt = VSGD(model.parameters(), model=model, loss="cross_entropy", seed=99, n0=2)
                opt.load_state_dict(saved)
            x, y = _task("transformer", g)
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()  # no closure: the estimate was made in the backward above
        opt.close()
        assert torch.equal(torch.get_rng_state(), rng)  # draws come from the optimizer's own generator
        return _flat([p.detach() for p in model.parameters()])

    a = run(6)
    assert torch.equal(a, run(6))
    assert torch.equal(a, run(6, resume_at=3))  # the generator's state travels in state_dict()
    assert not torch.equal(a, run(6, seed=1))
    # two backward passes before one step: refused with one clear message
    model = Encoder(8)
    opt = VSGD(model.parameters(), model=model, loss="cross_entropy")
    x, y = _task("transformer", torch.Generator().manual_seed(0))
    for _ in range(2):
        F.cross_entropy(model(x), y).backward()
    with pytest.raises(RuntimeError, match="2 backward passes"):
        opt.step()
    opt.close()


def test_model_output_must_be_a_tensor():
    lstm = nn.LSTM(3, 4, batch_first=True)
    opt = VSGD(lstm.parameters(), model=lstm, loss="mse")
    with pytest.raises(TypeError, match="output is one tensor"):
        lstm(torch.randn(2, 5, 3))
    opt.close()


def test_gnb_on_a_compiled_module_takes_the_eager_steps():
    def make():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48, CLASSES))

    eager, inner = make(), make()
    compiled = torch.compile(inner, backend="eager")
    opts = [VSGD(m.parameters(), model=m, loss="cross_entropy", n0=2) for m in (eager, compiled)]
    assert [o.curvature for o in opts] == ["gnb", "gnb"]
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        x, y = torch.randn(8, 1, 4, 4, generator=g), torch.randint(0, CLASSES, (8,), generator=g)
        for m, opt in zip((eager, compiled), opts):
            opt.step(make_closure(opt, m, x, y))
    for a, b in zip(eager.parameters(), inner.parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(next(eager.parameters()), next(make().parameters()))
    for opt in opts:
        opt.close()
