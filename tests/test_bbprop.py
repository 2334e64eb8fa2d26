"""bbprop against the exact Gauss-Newton diagonal (torch.func), and against the trainer's batched bbprop."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev

from experiments.mlp import EnsembleMLP, MLPSpec
from vsgd.bbprop import ActivationRecorder, bbprop, output_curvature


def exact_ggn_diagonal(model: nn.Sequential, x: Tensor, loss: str) -> list[Tensor]:  # noqa: F821
    """diag(J^T H J) summed over the batch / B: J = d output / d params, H = the loss's output Hessian."""
    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach() for n, p in model.named_parameters()}
    out = functional_call(model, params, (x,))
    jac = jacrev(lambda ps: functional_call(model, ps, (x,)))(params)  # name -> [B, n_out, *shape]
    B, n_out = out.shape
    if loss == "cross_entropy":
        p = torch.softmax(out, dim=1)
        H = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)  # full softmax Hessian
    else:
        H = torch.eye(n_out, dtype=x.dtype).expand(B, n_out, n_out) * (2.0 / n_out)  # F.mse_loss, mean over outputs
    diags = []
    for n in names:
        J = jac[n].reshape(B, n_out, -1)
        diags.append(torch.einsum("bop,boq,bqp->p", J, H, J).reshape(params[n].shape) / B)
    return diags


def exact_hessian_diagonal(model, x, y, loss):
    """The exact Hessian diagonal of the mean loss, for the single-layer MSE case."""
    params = {n: p.detach() for n, p in model.named_parameters()}

    def f(ps):
        out = functional_call(model, ps, (x,))
        return nn.functional.cross_entropy(out, y) if loss == "cross_entropy" else nn.functional.mse_loss(out, y)

    hess = torch.func.hessian(f)(params)
    return [hess[n][n].reshape(p.numel(), p.numel()).diagonal().reshape(p.shape) for n, p in params.items()]


def data(B=7, d_in=5, d_out=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, d_in, generator=g, dtype=torch.float64)
    return x, torch.randint(0, d_out, (B,), generator=g), torch.randn(B, d_out, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_single_linear_layer_equals_exact_ggn_diagonal(loss):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3)).double()
    x, _, _ = data()
    for got, want in zip(bbprop(model, x, loss), exact_ggn_diagonal(model, x, loss)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


def test_single_linear_layer_mse_equals_the_exact_hessian_diagonal():
    # For a linear model with MSE the Gauss-Newton matrix *is* the Hessian.
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 3)).double()
    x, _, t = data()
    for got, want in zip(bbprop(model, x, "mse"), exact_hessian_diagonal(model, x, t, "mse")):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("act", [nn.Tanh, nn.ReLU])
def test_mse_one_hidden_layer_is_still_exact_two_are_not(act):
    # With a diagonal output Hessian (MSE) a first-layer weight W_ji reaches the outputs through the one
    # hidden unit j, so nothing is dropped with one hidden layer. With two, W_ji reaches the outputs
    # through every unit of the second hidden layer, and bbprop drops those cross terms.
    torch.manual_seed(2)
    x, _, _ = data()
    one = nn.Sequential(nn.Linear(5, 4), act(), nn.Linear(4, 3)).double()
    for got, want in zip(bbprop(one, x, "mse"), exact_ggn_diagonal(one, x, "mse")):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    two = nn.Sequential(nn.Linear(5, 4), act(), nn.Linear(4, 4), act(), nn.Linear(4, 3)).double()
    got, want = bbprop(two, x, "mse"), exact_ggn_diagonal(two, x, "mse")
    for k in (2, 3, 4, 5):  # the last two layers: exact
        torch.testing.assert_close(got[k], want[k], rtol=1e-12, atol=1e-14)
    assert not torch.allclose(got[0], want[0], rtol=1e-3)  # the first: cross terms dropped
    assert all(bool((g >= 0).all()) for g in got)


def test_cross_entropy_behind_a_hidden_layer_drops_the_softmax_off_diagonal():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x, _, _ = data()
    got, want = bbprop(model, x, "cross_entropy"), exact_ggn_diagonal(model, x, "cross_entropy")
    torch.testing.assert_close(got[2], want[2], rtol=1e-12, atol=1e-14)  # last layer: exact
    assert not torch.allclose(got[0], want[0], rtol=1e-3)


def test_same_math_as_the_ensemble_trainer():
    # The trainer's batched bbprop (weights [K, in, out], one sample per member) and this one
    # (nn.Linear weights [out, in], one sample) agree, with the L2 term's curvature on the weights.
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    lin = [m for m in model if isinstance(m, nn.Linear)]
    params = [t for m in lin for t in (m.weight.detach().T[None], m.bias.detach()[None])]
    x, y, _ = data(B=1, d_in=6)
    l2 = 1e-3
    _, _, curv = EnsembleMLP(MLPSpec((6, 5, 4, 3), "cross_entropy", l2=l2)).loss_and_grads(params, x, y, curvature=True)
    ours = bbprop(model, x, "cross_entropy")
    for k, m in enumerate(lin):
        torch.testing.assert_close(ours[2 * k] + l2, curv[2 * k][0].T, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(ours[2 * k + 1], curv[2 * k + 1][0], rtol=1e-12, atol=1e-14)


def test_recorder_uses_the_last_forward_pass_and_reductions():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    rec = ActivationRecorder(model)
    x, _, _ = data(B=6)
    model(x[:2])
    model(x)
    got = rec.curvature("cross_entropy", l2=0.5)
    want = bbprop(model, x, "cross_entropy", l2=0.5)
    for p, w in zip(model.parameters(), want):
        torch.testing.assert_close(got[p], w)
    summed = rec.curvature("cross_entropy", reduction="sum")
    torch.testing.assert_close(summed[model[2].weight], (want[2] - 0.5) * 6)
    rec.remove()


def test_errors():
    with pytest.raises(ValueError, match="Unknown loss"):
        output_curvature("hinge", torch.zeros(1, 3))
    with pytest.raises(TypeError, match="nn.Sequential"):
        bbprop(nn.Linear(2, 2), torch.zeros(1, 2), "mse")
    with pytest.raises(TypeError, match="Sigmoid"):
        bbprop(nn.Sequential(nn.Linear(2, 2), nn.Sigmoid()), torch.zeros(1, 2), "mse")
    rec = ActivationRecorder(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(RuntimeError, match="no forward pass"):
        rec.curvature("mse")
