"""vSGD-fd (paper 2): the rule's identities (eqs. 3-6, Sec. 5.3), batching, and the VSGDfd front-end."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import vsgd
from vsgd.core import get_rule
from vsgd.fd import RULE, _rate, orthogonal_reweighting


@pytest.fixture(autouse=True)
def _float64_default():
    """These tests compare against float64 references; restore the default afterwards (other files need it)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
DT = torch.float64


def hp_for(K=1, **over):
    settings = [RULE.check_hp(over)] * K
    return RULE.hp_tensors(settings, dtype=DT, device="cpu")


class NoisyQuadratic:
    """Separable quadratic sample losses 0.5 h (theta - xi)^2 (+ optional sparsity mask), per-sample gradients exact."""

    def __init__(self, K, d, n, h=None, sigma=1.0, p_nz=1.0, seed=0):
        self.gen = torch.Generator().manual_seed(seed)
        self.K, self.d, self.n, self.sigma, self.p_nz = K, d, n, sigma, p_nz
        self.h = h if h is not None else torch.linspace(0.5, 2.0, d, dtype=DT)

    def sample(self):
        xi = self.sigma * torch.randn(self.K, self.n, self.d, generator=self.gen, dtype=DT)
        mask = (torch.rand(self.K, self.n, self.d, generator=self.gen, dtype=DT) < self.p_nz).to(DT)
        return xi, mask

    def per_sample(self, theta, xi, mask):  # theta [K, d] -> [K, n, d]
        return self.h * (theta.unsqueeze(1) - xi) * mask

    def extras(self, theta, xi, mask):
        g = self.per_sample(theta, xi, mask)

        def fd(shifts):
            diff = g - self.per_sample(theta + shifts[0], xi, mask)
            return [diff.abs().mean(1)], [(diff * diff).mean(1)]

        return g.mean(1), {
            "batch_size": self.n, "sq_grad_mean": [(g * g).mean(1)], "nonzero_count": [(g != 0).sum(1).to(DT)],
            "grad_at": lambda s: [self.per_sample(theta + s[0], xi, mask).mean(1)], "fd_per_sample": fd,
        }


def run_rule(problem, hp, steps, theta0=None, drop=()):
    theta = theta0.clone() if theta0 is not None else torch.full((problem.K, problem.d), 3.0, dtype=DT)
    state = RULE.init([theta], hp)
    for _ in range(steps):
        xi, mask = problem.sample()
        g, ex = problem.extras(theta, xi, mask)
        for k in drop:
            ex.pop(k)
        (u,), state = RULE.update([g], state, [theta], hp, ex)
        theta = theta + u
    return theta, state


def test_registered_and_declares_only_known_extras():
    assert get_rule("vsgd_fd") is RULE
    assert set(RULE.extras) == {"grad_at", "sq_grad_mean", "nonzero_count", "batch_size"}


def test_eq3_at_n1_is_the_n1_rule():
    # eq. 3 (paper 2) at n = 1: eta = (1/h) g_bar^2 / v_bar, the rule of paper 1 (eq. 1 / Alg. 1)
    torch.manual_seed(0)
    g, v = torch.randn(50), torch.rand(50) + 1.0
    h_bar, v_fd = torch.rand(50) + 0.5, torch.rand(50) + 2.0
    eps = 1e-5
    eta = _rate(g, v, h_bar, v_fd, torch.ones(50), 1.0, torch.ones(50), eps)
    inv_h = (h_bar + eps) / (v_fd + eps)
    torch.testing.assert_close(eta, inv_h * g * g / (v + eps))
    # and end to end: at n = 1 the per-sample extras are exactly what the rule assumes without them
    p = NoisyQuadratic(K=2, d=4, n=1, seed=3)
    a, sa = run_rule(p, hp_for(2), 40)
    p = NoisyQuadratic(K=2, d=4, n=1, seed=3)
    b, sb = run_rule(p, hp_for(2), 40, drop=("sq_grad_mean", "nonzero_count", "fd_per_sample"))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(sa["eta"][0], sb["eta"][0])


def test_eq3_uses_larger_rates_for_larger_minibatches():
    # eq. 3: n g^2 / (v + (n-1) g^2) grows with n from g^2/v (n = 1) towards 1 (n -> inf)
    g, v = torch.tensor([0.5]), torch.tensor([1.0])
    rates = [float(_rate(g, v, torch.ones(1), torch.ones(1), torch.ones(1), float(n), torch.tensor([float(n)]), 0.0))
             for n in (1, 2, 10, 1000)]
    assert rates[0] == pytest.approx(0.25)
    assert all(a < b for a, b in itertools.pairwise(rates)) and rates[-1] < 1.0


@pytest.mark.parametrize("mode", [1.0, 2.0])
def test_eq4_equals_eq3_when_nothing_is_sparse(mode):
    dense = NoisyQuadratic(K=2, d=5, n=8, seed=1)
    a, sa = run_rule(dense, hp_for(2), 60)
    dense = NoisyQuadratic(K=2, d=5, n=8, seed=1)
    b, sb = run_rule(dense, hp_for(2, sparse=mode), 60)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(sa["eta"][0], sb["eta"][0])


def test_eq4_in_all_sample_statistics_is_eq4_in_non_zero_statistics():
    # eq. 4 (paper 2) is written with the statistics of the non-zero sample gradients; the rule keeps them
    # over all samples (g = p g_nz, v = p v_nz, h = p h_nz): both forms must give the same rate
    torch.manual_seed(1)
    p, n, m = torch.rand(40) * 0.9 + 0.1, 10.0, torch.randint(1, 11, (40,)).to(DT)
    g_nz, h_nz = torch.randn(40), torch.rand(40) + 0.5
    v_nz = g_nz**2 + torch.rand(40)
    h_bar, vfd = p * h_nz, (p * h_nz) ** 2  # 1/h = h_bar / v_fd = 1 / (p h_nz)
    eta = _rate(p * g_nz, p * v_nz, h_bar, vfd, p, n, m, 0.0)
    expected = n / m / h_nz * g_nz**2 / (v_nz / m + (m - 1) / m * g_nz**2)  # eq. 4, the rate on the mean over n
    torch.testing.assert_close(eta, expected)


def test_eq4_raises_rates_for_sparse_minibatches():
    sparse = NoisyQuadratic(K=1, d=200, n=10, p_nz=0.1, sigma=0.1, seed=2)
    _, s0 = run_rule(sparse, hp_for(1, sparse=0.0), 30)
    sparse = NoisyQuadratic(K=1, d=200, n=10, p_nz=0.1, sigma=0.1, seed=2)
    _, s1 = run_rule(sparse, hp_for(1, sparse=1.0), 30)
    assert float(s1["eta"][0].median()) > 1.2 * float(s0["eta"][0].median())


def test_eq5_averages_identical_and_sums_orthogonal_gradients():
    g = torch.randn(3, 7)
    same = g.unsqueeze(1).expand(3, 4, 7).clone()  # [K, n, d]: 4 identical sample gradients
    (direction,), n_eff = orthogonal_reweighting([same])
    torch.testing.assert_close(direction, g)  # the average of identical gradients
    torch.testing.assert_close(n_eff, torch.full((3,), 4.0))
    ortho = torch.zeros(2, 4, 6)
    for j in range(4):
        ortho[:, j, j] = torch.tensor([1.0 + j, -2.0])
    (direction,), n_eff = orthogonal_reweighting([ortho])
    torch.testing.assert_close(direction, ortho.sum(dim=1))  # orthogonal gradients are summed
    torch.testing.assert_close(n_eff, torch.ones(2))
    # negative alignment counts as interference too (|cos|), and an all-zero sample gets weight 0
    anti = torch.stack([g[0], -g[0], torch.zeros(7)]).unsqueeze(0)
    (direction,), n_eff = orthogonal_reweighting([anti])
    torch.testing.assert_close(direction[0], torch.zeros(7), atol=1e-12, rtol=0)
    assert float(n_eff) == pytest.approx(3.0)


def test_injected_outlier_raises_tau_and_lowers_the_rate_in_that_dimension_only():
    # far from the optimum, with tau close to 1 (the case Sec. 5.3 worries about)
    p = NoisyQuadratic(K=1, d=3, n=1, sigma=0.3, seed=4)
    theta, state = run_rule(p, hp_for(1), 14, theta0=torch.full((1, 3), 30.0))
    assert float(state["tau"][0].max()) < 5
    xi, mask = p.sample()
    g, ex = p.extras(theta, xi, mask)
    hp = hp_for(1)
    (_, normal) = RULE.update([g], copy.deepcopy(state), [theta], hp, ex)
    xi_out = xi.clone()
    xi_out[..., 1] += 100.0  # an outlier sample in dimension 1 only
    g_out, ex_out = p.extras(theta, xi_out, mask)
    (_, spiked) = RULE.update([g_out], copy.deepcopy(state), [theta], hp, ex_out)
    tau_n, tau_o = normal["tau"][0][0], spiked["tau"][0][0]
    eta_n, eta_o = normal["eta"][0][0], spiked["eta"][0][0]
    assert tau_o[1] > tau_n[1] and eta_o[1] < 0.8 * eta_n[1]
    torch.testing.assert_close(tau_o[[0, 2]], tau_n[[0, 2]])
    torch.testing.assert_close(eta_o[[0, 2]], eta_n[[0, 2]])
    # the detection itself (Sec. 5.3) adds to tau: without it the memory after the outlier is shorter
    (_, undetected) = RULE.update([g_out], copy.deepcopy(state), [theta], hp_for(1, outlier_sigma=0.0), ex_out)
    assert tau_o[1] > undetected["tau"][0][0][1]


def test_bootstrap_makes_no_update_for_n0_samples_then_moves():
    p = NoisyQuadratic(K=1, d=2, n=3, seed=5)
    theta0 = torch.full((1, 2), 3.0)
    t3, s3 = run_rule(p, hp_for(1, n0=10.0), 3, theta0)  # 9 samples < 10: still bootstrapping
    torch.testing.assert_close(t3, theta0)
    assert float(s3["step"][0]) == 0
    p = NoisyQuadratic(K=1, d=2, n=3, seed=5)
    t5, s5 = run_rule(p, hp_for(1, n0=10.0), 5, theta0)  # 4th minibatch completes the bootstrap (no update)
    assert float(s5["step"][0]) == 1 and not torch.equal(t5, theta0)


@pytest.mark.parametrize("n", [1, 4, 10, 16])
def test_first_update_continues_the_bootstrap_mean(n):
    # tau0 = 0: the first update's EMA weight 1 / (k + 1) continues the arithmetic mean of the k bootstrap minibatches,
    # so g_bar after it is the mean of all k + 1 minibatch gradients (at n >= n0, k = 1: the bootstrap is not discarded)
    p = NoisyQuadratic(K=1, d=3, n=n, seed=11)
    k = -(-10 // n)
    theta = torch.full((1, 3), 3.0)
    hp = hp_for(1, n0=10.0, outlier_sigma=0.0)
    state = RULE.init([theta], hp)
    seen = []
    for _ in range(k + 1):
        xi, mask = p.sample()
        g, ex = p.extras(theta, xi, mask)
        seen.append(g)
        (u,), state = RULE.update([g], state, [theta], hp, ex)
        theta = theta + u
    assert float(state["step"][0]) == 1
    torch.testing.assert_close(state["g_bar"][0], torch.stack(seen).mean(0))


def test_K_batched_members_equal_K_separate_runs():
    settings = [{}, {"outlier_sigma": 0.0}, {"sparse": 1.0, "eps": 1e-3}, {"n0": 3.0, "slow_start": 5.0}]
    K = len(settings)
    batched_hp = RULE.hp_tensors(settings, dtype=DT, device="cpu")
    p = NoisyQuadratic(K=K, d=3, n=4, p_nz=0.6, seed=6)
    batched, _ = run_rule(p, batched_hp, 50)
    # the same samples, one member at a time
    p = NoisyQuadratic(K=K, d=3, n=4, p_nz=0.6, seed=6)
    draws = [p.sample() for _ in range(50)]
    for k, s in enumerate(settings):
        hp = RULE.hp_tensors([s], dtype=DT, device="cpu")
        q = NoisyQuadratic(K=1, d=3, n=4)
        theta = torch.full((1, 3), 3.0)
        state = RULE.init([theta], hp)
        for xi, mask in draws:
            g, ex = q.extras(theta, xi[k:k + 1], mask[k:k + 1])
            (u,), state = RULE.update([g], state, [theta], hp, ex)
            theta = theta + u
        torch.testing.assert_close(theta[0], batched[k])


def test_converges_on_a_noisy_quadratic():
    p = NoisyQuadratic(K=1, d=4, n=1, sigma=1.0, seed=7)
    theta, _ = run_rule(p, hp_for(1), 3000)
    assert float(theta.abs().max()) < 0.2  # started at 3, optimum 0


# -- the torch.optim front-end ----------------------------------------------------------------------
def small_problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(256, 4, generator=g)
    Y = torch.sin(X @ torch.randn(4, 1, generator=g)) + 0.05 * torch.randn(256, 1, generator=g)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    return X, Y, model


def train(model, opt, X, Y, epochs, per_sample, batch=16):
    for _ in range(epochs):
        for i in range(0, X.shape[0], batch):
            x, y = X[i:i + batch], Y[i:i + batch]
            if per_sample:
                opt.step(vsgd.PerSampleClosure(model, F.mse_loss, x, y))
            else:
                def closure(x=x, y=y):
                    opt.zero_grad()
                    loss = F.mse_loss(model(x), y)
                    loss.backward()
                    return loss
                opt.step(closure)


@pytest.mark.parametrize("per_sample,kw", [(False, {}), (True, {}), (True, {"reweight": "orthogonal"}),
                                           (True, {"sparse": "minibatch"})])
def test_vsgdfd_trains_any_module_with_no_model_specific_code(per_sample, kw):
    X, Y, model = small_problem()
    with torch.no_grad():
        before = F.mse_loss(model(X), Y).item()
    opt = vsgd.VSGDfd(model.parameters(), **kw)
    train(model, opt, X, Y, 8, per_sample)
    with torch.no_grad():
        after = F.mse_loss(model(X), Y).item()
    assert after < 0.5 * before
    rates = opt.learning_rates()
    assert [r.shape for r in rates] == [p.shape for p in model.parameters()]
    assert all(torch.isfinite(r).all() and (r >= 0).all() for r in rates)


def test_per_sample_closure_matches_autograd():
    X, Y, model = small_problem()
    loss, ps = vsgd.PerSampleClosure(model, F.mse_loss, X[:5], Y[:5]).per_sample_grads()
    for j in range(5):
        model.zero_grad()
        F.mse_loss(model(X[j:j + 1]), Y[j:j + 1]).backward()
        for p in model.parameters():
            torch.testing.assert_close(ps[p][j], p.grad)
    torch.testing.assert_close(loss, F.mse_loss(model(X[:5]), Y[:5]).detach())


def test_vsgdfd_state_dict_round_trips():
    X, Y, model = small_problem()
    opt = vsgd.VSGDfd(model.parameters(), reweight="orthogonal")
    train(model, opt, X[:64], Y[:64], 1, True)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    train(model, opt, X[64:128], Y[64:128], 1, True)
    _, _, model2 = small_problem()
    model2.load_state_dict(saved_model)
    opt2 = vsgd.VSGDfd(model2.parameters())
    opt2.load_state_dict(saved_opt)
    assert opt2.reweight == "orthogonal"
    train(model2, opt2, X[64:128], Y[64:128], 1, True)
    for a, b in zip(model.parameters(), model2.parameters()):
        torch.testing.assert_close(a, b)


def test_vsgdfd_leaves_grad_none_parameters_alone():
    X, Y, model = small_problem()
    frozen = nn.Parameter(torch.ones(3))
    opt = vsgd.VSGDfd([*model.parameters(), frozen])
    train(model, opt, X[:64], Y[:64], 1, False)
    torch.testing.assert_close(frozen.detach(), torch.ones(3))


def test_vsgdfd_invalid_arguments_raise_clear_errors():
    params = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="sparse"):
        vsgd.VSGDfd(params, sparse="sometimes")
    with pytest.raises(ValueError, match="reweight"):
        vsgd.VSGDfd(params, reweight="yes")
    with pytest.raises(ValueError, match="eps"):
        vsgd.VSGDfd(params, eps=0.0)
    with pytest.raises(ValueError, match="n0"):
        vsgd.VSGDfd(params, n0=0.5)
    opt = vsgd.VSGDfd(params)
    with pytest.raises(RuntimeError, match="closure"):
        opt.step()
    with pytest.raises(RuntimeError, match="PerSampleClosure"):
        vsgd.VSGDfd(params, reweight="orthogonal").step(lambda: torch.zeros(()))


@pytest.mark.parametrize("n", [1, 8])
def test_skipping_the_finished_bootstrap_changes_no_bit(n):
    # Once every member is past its bootstrap (the state's Python ints seen_all / n0_max), the step skips the
    # bootstrap arithmetic; a state without them (saved before they existed) takes the full path. Both must agree.
    from vsgd.fd import init, update

    dtype = torch.float32
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(3, 5, 4, generator=g, dtype=dtype)]
    hp = RULE.hp_tensors([{}, {"n0": 20.0}, {"sparse": 2.0, "fd_step": 1.0}], dtype=dtype, device="cpu")
    fast = init(params, hp)
    full = {k: v for k, v in fast.items() if k not in ("seen_all", "n0_max")}
    for t in range(30):
        grads = [torch.randn(params[0].shape, generator=g, dtype=dtype)]
        ex = {"batch_size": n, "grad_at": lambda s: [grads[0] + 0.7 * s[0]], "sq_grad_mean": [grads[0] ** 2 * 1.3],
              "nonzero_count": [(grads[0] != 0).to(dtype) * n]}
        u_fast, fast = update(grads, fast, params, hp, ex)
        u_full, full = update(grads, full, params, hp, ex)
        assert torch.equal(u_fast[0], u_full[0]), t
        for k, v in full.items():
            assert all(torch.equal(a, b) for a, b in zip(v, fast[k])) if isinstance(v, list) else torch.equal(v, fast[k])
        params = [params[0] + u_fast[0]]
    assert fast["seen_all"] >= fast["n0_max"]  # the fast path was taken for the later steps
