"""The hand-written forward / backward / fused SGD step against autograd, in float64."""

import pytest
import torch

from experiments.mlp import EnsembleMLP, FusedSGD, MLPSpec, glorot_init

BENCHMARKS = {  # paper 1 Table 1 architectures
    "M0": ((784, 10), "cross_entropy"),
    "M1": ((784, 120, 10), "cross_entropy"),
    "M2": ((784, 500, 300, 10), "cross_entropy"),
    "C0": ((3072, 10), "cross_entropy"),
    "C1": ((3072, 360, 10), "cross_entropy"),
    "CR": ((3072, 120, 3072), "mse"),
}


def reference_loss(params, x, target, spec):
    """The benchmark loss of one member written with autograd-friendly torch ops."""
    h = x
    n = spec.n_layers
    for k in range(n):
        a = h @ params[2 * k] + params[2 * k + 1]
        h = torch.tanh(a) if k < n - 1 else a
    if spec.loss == "cross_entropy":
        data = torch.nn.functional.cross_entropy(h.unsqueeze(0), target.view(1))
    else:
        data = 0.5 * ((h - target) ** 2).sum()
    l2 = sum((params[2 * k] ** 2).sum() for k in range(n)) * spec.l2 / 2
    if spec.l2_biases:
        l2 = l2 + sum((params[2 * k + 1] ** 2).sum() for k in range(n)) * spec.l2 / 2
    return data, data + l2


def _inputs(spec, K, seed=0):
    g = torch.Generator().manual_seed(seed)
    params = glorot_init(spec, list(range(K)), dtype=torch.float64)
    for i in range(1, len(params), 2):  # non-zero biases so their gradient path is exercised
        params[i] = torch.randn(params[i].shape, generator=g, dtype=torch.float64) * 0.1
    x = torch.randn(K, spec.layers[0], generator=g, dtype=torch.float64)
    if spec.loss == "cross_entropy":
        target = torch.randint(0, spec.layers[-1], (K,), generator=g)
    else:
        target = torch.randn(K, spec.layers[-1], generator=g, dtype=torch.float64)
    return params, x, target


@pytest.mark.parametrize("name", list(BENCHMARKS))
@pytest.mark.parametrize("l2_biases", [False, True])
def test_backward_matches_autograd(name, l2_biases):
    layers, loss = BENCHMARKS[name]
    spec = MLPSpec(layers, loss, l2=1e-2, l2_biases=l2_biases)
    K = 2
    params, x, target = _inputs(spec, K)
    data_loss, grads, _ = EnsembleMLP(spec).loss_and_grads(params, x, target)
    for k in range(K):
        ps = [p[k].clone().requires_grad_(True) for p in params]
        data, total = reference_loss(ps, x[k], target[k], spec)
        ref = torch.autograd.grad(total, ps)
        assert data_loss[k].item() == pytest.approx(data.item(), rel=1e-12)
        for g, r in zip(grads, ref):
            torch.testing.assert_close(g[k], r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["M0", "M1", "CR"])
@pytest.mark.parametrize("l2_biases", [False, True])
@pytest.mark.parametrize("rank", [1, 3, 16])  # no deferral; folded mid-run and at sync; folded only at sync
def test_fused_sgd_steps_equal_generic_updates(name, l2_biases, rank):
    """Several FusedSGD steps (L2 decay held as a scale, rank-1 updates deferred as a low-rank term,
    both folded back by sync) equal plain SGD steps."""
    layers, loss = BENCHMARKS[name]
    spec = MLPSpec(layers, loss, l2=1e-2, l2_biases=l2_biases)
    model = EnsembleMLP(spec)
    params, x, target = _inputs(spec, 3)
    rates = [torch.tensor([0.1, 0.01, 0.5], dtype=torch.float64) / (1 + t) for t in range(7)]
    expected = [p.clone() for p in params]
    for r in rates:
        _, grads, _ = model.loss_and_grads(expected, x, target)
        expected = [p - r.view(-1, *[1] * (p.dim() - 1)) * g for p, g in zip(expected, grads)]
    fused, step = [p.clone() for p in params], FusedSGD(spec, rank=rank, defer_min=1000)
    for r in rates:
        step(fused, x, target, r)
    step.sync(fused)
    for a, b in zip(fused, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)  # float64 rounding over 7 steps


@pytest.mark.parametrize("name", ["M1", "CR"])
@pytest.mark.parametrize("rank", [3, 16])
def test_fused_sgd_window_ahead_equals_generic_updates(name, rank):
    """The first layer's x^T V computed a window ahead (``ahead``), with windows cut short where the
    caller says the order ends, a sync in the middle and one call without ``ahead``, equals plain SGD
    on a different sample every step."""
    layers, loss = BENCHMARKS[name]
    spec = MLPSpec(layers, loss, l2=1e-2)
    model = EnsembleMLP(spec)
    K, T = 3, 23
    params, _, _ = _inputs(spec, K)
    g = torch.Generator().manual_seed(5)
    X = torch.randn(K, T, spec.layers[0], generator=g, dtype=torch.float64)
    if loss == "cross_entropy":
        Y = torch.randint(0, spec.layers[-1], (K, T), generator=g)
    else:
        Y = torch.randn(K, T, spec.layers[-1], generator=g, dtype=torch.float64)
    scale = 1e-3 if loss == "mse" else 1.0  # 3072 squared errors: keep the run from diverging (chaos)
    rates = [torch.tensor([0.1, 0.01, 0.5], dtype=torch.float64) * scale / (1 + t) for t in range(T)]
    expected = [p.clone() for p in params]
    for t in range(T):
        _, grads, _ = model.loss_and_grads(expected, X[:, t], Y[:, t])
        expected = [p - rates[t].view(-1, *[1] * (p.dim() - 1)) * g for p, g in zip(expected, grads)]
    fused, step = [p.clone() for p in params], FusedSGD(spec, rank=rank, defer_min=1000, first_min=1000)
    ends = {5, 11, 23}  # the order "ends" after these steps (an epoch end, a divergence check)
    for t in range(T):
        until = min(e for e in ends if e > t)
        ahead = None if t == 8 else (lambda j, t=t, until=until: X[:, t : min(until, t + j)])
        step(fused, X[:, t], Y[:, t], rates[t], ahead)
        if t == 15:
            step.sync(fused)
    step.sync(fused)
    for a, b in zip(fused, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_evaluate_matches_per_sample_loss():
    spec = MLPSpec((5, 4, 3), "cross_entropy")
    model = EnsembleMLP(spec)
    params, _, _ = _inputs(spec, 2)
    g = torch.Generator().manual_seed(3)
    X = torch.randn(17, 5, generator=g, dtype=torch.float64)
    Y = torch.randint(0, 3, (17,), generator=g)
    err, loss = model.evaluate(params, X, Y, batch=5)
    for k in range(2):
        logits = torch.tanh(X @ params[0][k] + params[1][k]) @ params[2][k] + params[3][k]
        ref_loss = torch.nn.functional.cross_entropy(logits, Y)
        ref_err = (logits.argmax(1) != Y).double().mean() * 100
        assert loss[k].item() == pytest.approx(ref_loss.item(), rel=1e-10)
        assert err[k].item() == pytest.approx(ref_err.item())


def test_glorot_init_is_per_member():
    spec = MLPSpec((20, 7, 3), "cross_entropy")
    a = glorot_init(spec, [5, 9])
    b = glorot_init(spec, [9])
    torch.testing.assert_close(a[0][1], b[0][0])  # member 9 does not depend on its neighbours
    bound = (6 / (20 + 7)) ** 0.5
    assert a[0].abs().max() <= bound and a[0].abs().max() > 0.8 * bound
    assert (a[1] == 0).all()


def test_spec_rejects_bad_input():
    with pytest.raises(ValueError, match="Unknown loss"):
        MLPSpec((3, 2), "hinge")
    with pytest.raises(ValueError, match="layers"):
        MLPSpec((3,), "mse")


@pytest.mark.parametrize("name", ["M0", "M1", "C1"])
def test_a_member_does_not_depend_on_its_neighbours_float32(name):
    """Bit-identical float32 gradients for a member alone and at any position of an ensemble."""
    layers, loss = BENCHMARKS[name]
    spec = MLPSpec(layers, loss)
    model = EnsembleMLP(spec)
    params = glorot_init(spec, list(range(5)))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, layers[0], generator=g)
    target = torch.randint(0, layers[-1], (5,), generator=g)
    _, grads, curv = model.loss_and_grads(params, x, target, curvature=True)
    for k in range(5):
        alone = [p[k : k + 1].clone() for p in params]
        _, g1, c1 = model.loss_and_grads(alone, x[k : k + 1].clone(), target[k : k + 1].clone(), curvature=True)
        assert all(torch.equal(a[k : k + 1], b) for a, b in zip(grads, g1))
        assert all(torch.equal(a[k : k + 1], b) for a, b in zip(curv, c1))
