"""The baselines (paper 1 Sec. 2, App. C): identities with torch.optim, per-element reference loops written
from the equations, Hessian-vector products, batching, divergence handling, errors, state_dict, grids."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import pytest
import torch
import yaml

import baselines
from baselines import SGD, SMD, Adagrad, Almeida, Amari
from experiments.data import Dataset
from experiments.mlp import EnsembleMLP, MLPSpec, glorot_init
from experiments.trainer import Member, train_ensemble
from vsgd.core import get_rule

ROOT = Path(__file__).resolve().parents[1]
F64 = torch.float64
SHAPES = [(2,), (3,)]  # two parameter tensors, 5 elements in all
N = sum(math.prod(s) for s in SHAPES)


# ---------------------------------------------------------------------------------------------------
# A noisy quadratic: sample t of member k has loss 1/2 theta^T A_kt theta - b_kt . theta, so the
# gradient A theta - b depends on the trajectory and H v = A v is exact.
# ---------------------------------------------------------------------------------------------------
def quadratic_stream(K: int, T: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(K, T, N, N, generator=g, dtype=F64)
    A = M @ M.transpose(-1, -2) / N + 0.1 * torch.eye(N, dtype=F64)
    b = torch.randn(K, T, N, generator=g, dtype=F64)
    theta0 = torch.randn(K, N, generator=g, dtype=F64)
    return A, b, theta0


def split(flat: torch.Tensor) -> list[torch.Tensor]:
    out, i = [], 0
    for s in SHAPES:
        n = math.prod(s)
        out.append(flat[:, i : i + n].reshape(flat.shape[0], *s))
        i += n
    return out


def cat(ts: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(t.shape[0], -1) for t in ts], dim=1)


def run_rule(name: str, settings: list[dict], A, b, theta0) -> torch.Tensor:
    """Drive a rule on K members of the quadratic stream; return theta [K, T + 1, N]."""
    rule = get_rule(name)
    hp = rule.hp_tensors(settings, dtype=F64, device="cpu")
    params = split(theta0.clone())
    state = rule.init(params, hp)
    traj = [theta0.clone()]
    for t in range(A.shape[1]):
        th = cat(params)
        grads = split(torch.einsum("kij,kj->ki", A[:, t], th) - b[:, t])
        extras = {"batch_size": 1, "hvp": lambda vs, t=t: split(torch.einsum("kij,kj->ki", A[:, t], cat(vs)))}
        updates, state = rule.update(grads, state, params, hp, extras)
        params = [p + u for p, u in zip(params, updates)]
        traj.append(cat(params))
    return torch.stack(traj, dim=1)


# -- plain per-element loops, written from the papers' equations (Python floats, one member) --------
def grad_of(A, b, theta):
    return [sum(A[i][j] * theta[j] for j in range(N)) - b[i] for i in range(N)]


def avg_weight(t, tau):  # baselines.averages: the running average's weight 1 / min(t, tau)
    return 1.0 / min(t, tau)


def reference(name: str, hp: dict, A, b, theta0) -> list[list[float]]:
    A, b, theta = A.tolist(), b.tolist(), theta0.tolist()
    traj = [list(theta)]
    s = [hp.get("initial_accumulator_value", 0.0)] * N
    v = [0.0] * N
    g_prev = [0.0] * N
    eta = hp["eta0"]
    aux = [0.0] * N  # SMD's v
    for t in range(len(A)):
        g = grad_of(A[t], b[t], theta)
        if name == "sgd":
            rate = [hp["eta0"] / (1 + hp["gamma"] * t)] * N
        elif name == "adagrad":
            s = [s[i] + g[i] ** 2 for i in range(N)]
            rate = [hp["eta0"] / (math.sqrt(s[i]) + hp["eps"]) for i in range(N)]
        elif name in ("amari", "almeida"):
            w = avg_weight(t + 1, hp["tau"])
            v = [(1 - w) * v[i] + w * g[i] ** 2 for i in range(N)]
            if name == "amari":
                rate = [hp["eta0"] / (v[i] + hp["eps"]) for i in range(N)]
            else:  # rate = max(0, eta0 a_i grad_i(t - lag) / v_i), a_i = grad_i(t) | theta_i(t) | 1
                a = {1.0: g, 2.0: theta, 0.0: [1.0] * N}[hp["first_factor"]]
                c = g_prev if hp["lag"] == 1.0 else g
                rate = [max(0.0, hp["eta0"] * a[i] * c[i] / (v[i] + hp["eps"])) for i in range(N)]
            g_prev = g
        elif name == "smd":
            lam = 1 - 1 / hp["tau"]
            Hv = [sum(A[t][i][j] * aux[j] for j in range(N)) for i in range(N)]
            rate = [eta] * N
            gv = sum(g[i] * aux[i] for i in range(N))
            aux = [lam * aux[i] - eta * (g[i] + lam * Hv[i]) for i in range(N)]
            eta = eta * math.exp(-hp["mu"] * gv)
        theta = [theta[i] - rate[i] * g[i] for i in range(N)]
        traj.append(list(theta))
    return traj


SETTINGS = {
    "sgd": [{"eta0": 0.05, "gamma": 0.1}, {"eta0": 0.2, "gamma": 0.0}, {"eta0": 0.01, "gamma": 1.0}],
    "adagrad": [{"eta0": 0.1}, {"eta0": 0.5, "initial_accumulator_value": 0.3, "eps": 1e-3}, {"eta0": 0.02}],
    "amari": [{"eta0": 1e-3, "tau": 5.0}, {"eta0": 1e-2, "tau": 100.0}, {"eta0": 3e-3, "tau": 1.0}],
    # the correlation reading (first_factor 1); the others, the printed default included, in ALMEIDA_READINGS
    "almeida": [{"eta0": 0.1, "tau": 5.0, "first_factor": 1.0}, {"eta0": 0.3, "tau": 100.0, "first_factor": 1.0},
                {"eta0": 0.05, "tau": 1.0, "first_factor": 1.0}],
    "smd": [{"eta0": 0.05, "mu": 0.1, "tau": 5.0}, {"eta0": 0.1, "mu": 0.01, "tau": 100.0},
            {"eta0": 0.02, "mu": 0.5, "tau": 1.0}],
}
RULES = list(SETTINGS)
# Almeida's readings of paper 1's formula (first_factor: 2 = theta(t), the default; 1 = grad(t); 0 = none; lag 0 =
# grad(t) instead of grad(t-1)), in one ensemble, as a grid of readings runs them
ALMEIDA_READINGS = [{"eta0": 0.1, "tau": 5.0, "first_factor": 2.0}, {"eta0": 0.3, "tau": 100.0, "first_factor": 0.0},
                    {"eta0": 0.1, "tau": 5.0, "first_factor": 0.0, "lag": 0.0},
                    {"eta0": 0.05, "tau": 1.0, "first_factor": 2.0, "lag": 0.0},
                    {"eta0": 0.1, "tau": 5.0, "first_factor": 1.0, "lag": 0.0}, {"eta0": 0.1, "tau": 5.0},
                    {"eta0": 0.1, "tau": 5.0, "first_factor": 1.0}]
CASES = [(name, SETTINGS[name]) for name in RULES] + [("almeida", ALMEIDA_READINGS)]
CASE_IDS = RULES + ["almeida_readings"]


@pytest.mark.parametrize("name,settings", CASES, ids=CASE_IDS)
def test_rule_matches_per_element_loop(name, settings):
    A, b, theta0 = quadratic_stream(len(settings), 25, seed=1)
    got = run_rule(name, settings, A, b, theta0)
    for k, setting in enumerate(settings):
        hp = get_rule(name).check_hp(setting)
        want = torch.tensor(reference(name, hp, A[k], b[k], theta0[k]), dtype=F64)
        assert torch.isfinite(want).all()
        assert (want[-1] - want[0]).abs().max() > 1e-3  # the run moved
        torch.testing.assert_close(got[k], want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,settings", CASES, ids=CASE_IDS)
def test_batched_members_equal_separate_runs(name, settings):
    A, b, theta0 = quadratic_stream(len(settings), 20, seed=2)
    together = run_rule(name, settings, A, b, theta0)
    for k, setting in enumerate(settings):
        alone = run_rule(name, [setting], A[k : k + 1], b[k : k + 1], theta0[k : k + 1])
        torch.testing.assert_close(together[k : k + 1], alone, rtol=1e-13, atol=1e-15)


def test_almeida_first_update_is_zero_and_rates_never_negative():
    A, b, theta0 = quadratic_stream(2, 30, seed=3)
    traj = run_rule("almeida", SETTINGS["almeida"][:2], A, b, theta0)
    assert torch.equal(traj[:, 1], traj[:, 0])  # grad(-1) = 0
    assert (traj[:, 2] != traj[:, 1]).any()


def test_almeida_readings_properties():
    """What each reading implies, on the same stream: py-optim's order (a = 1, lag 0) only ever moves a
    parameter down (its update is -eta0 max(0, g) g / v); the literal theta(t) reading never moves a parameter
    that sits at 0; lag 0 with a = grad(t) is never clipped (rate eta0 g^2 / v), so every update opposes g."""
    A, b, theta0 = quadratic_stream(4, 30, seed=4)
    theta0[1, 0] = 0.0
    base = {"eta0": 0.1, "tau": 5.0}
    readings = [{"first_factor": 0.0, "lag": 0.0}, {"first_factor": 2.0}, {"first_factor": 1.0, "lag": 0.0},
                {"first_factor": 1.0}]
    traj = run_rule("almeida", [{**base, **r} for r in readings], A, b, theta0)
    steps = traj[:, 1:] - traj[:, :-1]
    assert (steps[0] <= 0).all() and (steps[0] < 0).any()
    assert (traj[1, :, 0] == 0).all() and (steps[1, :, 1:] != 0).any()
    grads = torch.einsum("tij,tj->ti", A[2], traj[2, :-1]) - b[2]
    assert ((steps[2] * grads <= 0) & ((steps[2] != 0) | (grads == 0))).all()
    assert (steps[3] > 0).any() and (steps[3] < 0).any()  # our default moves both ways


def test_almeida_mixed_readings_equal_single_reading_runs_bit_for_bit():
    """A grid of readings selects per member; a run of one reading skips the selects (CPU). Same numbers."""
    A, b, theta0 = quadratic_stream(len(ALMEIDA_READINGS), 20, seed=5)
    together = run_rule("almeida", ALMEIDA_READINGS, A, b, theta0)
    for k, setting in enumerate(ALMEIDA_READINGS):
        alone = run_rule("almeida", [setting], A[k : k + 1], b[k : k + 1], theta0[k : k + 1])
        assert torch.equal(together[k : k + 1], alone)


def test_almeida_reading_flags_must_be_one_of_their_choices():
    for kw in ({"first_factor": 0.5}, {"first_factor": 3.0}, {"lag": 2.0}):
        with pytest.raises(ValueError, match=f"Invalid almeida hyper-parameter {next(iter(kw))}=.*must be one of"):
            Almeida(small_model(0).parameters(), **kw)


# ---------------------------------------------------------------------------------------------------
# Identities with torch.optim (float64, a small model, several seeded steps)
# ---------------------------------------------------------------------------------------------------
def small_model(seed: int):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()


def train_steps(model, opt, steps=15, seed=0, create_graph=False):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(2, 4, generator=g, dtype=F64)
        y = torch.randint(0, 3, (2,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward(create_graph=create_graph)
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("kw", [{}, {"initial_accumulator_value": 0.1, "eps": 1e-6}])
def test_adagrad_equals_torch_adagrad(kw):
    ours, theirs = small_model(0), small_model(0)
    a = train_steps(ours, Adagrad(ours.parameters(), eta0=0.3, **kw))
    t = train_steps(theirs, torch.optim.Adagrad(theirs.parameters(), lr=0.3, **kw))
    for p, q in zip(a, t):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    assert any((p - q).abs().max() > 1e-3 for p, q in zip(a, [p.detach() for p in small_model(0).parameters()]))


def test_sgd_without_decay_equals_torch_sgd():
    ours, theirs = small_model(1), small_model(1)
    a = train_steps(ours, SGD(ours.parameters(), eta0=0.1, gamma=0.0))
    t = train_steps(theirs, torch.optim.SGD(theirs.parameters(), lr=0.1))
    for p, q in zip(a, t):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------------
# Hessian-vector products
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_ensemble_mlp_hvp_matches_double_backward(loss):
    spec = MLPSpec((5, 4, 3, 5 if loss == "mse" else 3), loss, l2=0.01)
    model = EnsembleMLP(spec)
    K = 3
    params = glorot_init(spec, [0, 1, 2], dtype=F64)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(K, 5, generator=g, dtype=F64)
    target = x if loss == "mse" else torch.randint(0, 3, (K,), generator=g)
    vs = [torch.randn(p.shape, generator=g, dtype=F64) for p in params]
    got = model.hvp(params, x, target, vs)

    ps = [p.clone().requires_grad_(True) for p in params]
    out, _ = model.forward(ps, x)
    data_loss = model.output_delta(out, target)[0] if loss == "mse" else torch.nn.functional.cross_entropy(
        out, target, reduction="none")
    total = data_loss.sum() + spec.l2 / 2 * sum((w * w).sum() for w in ps[0::2])  # weights only (not biases)
    grads = torch.autograd.grad(total, ps, create_graph=True)
    want = torch.autograd.grad(grads, ps, grad_outputs=vs)
    for a, w in zip(got, want):
        torch.testing.assert_close(a, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("compiled", [False, True])
def test_trainer_takes_smd_gradient_and_hvp_from_one_pass_bit_identical(compiled):
    """The trainer's SMD step takes the gradient from the jvp's primal (Rule.hvp_vectors): the same parameters and
    state, bit for bit, as a gradient pass followed by a product pass, eager and compiled."""
    from experiments import trainer

    spec = MLPSpec((7, 5, 3), "cross_entropy", l2=1e-3)
    model, rule, K = EnsembleMLP(spec), get_rule("smd"), 3
    hp = rule.hp_tensors([{"eta0": 0.05, "mu": 0.1, "tau": 10.0}] * K, dtype=torch.float32, device="cpu")
    g = torch.Generator().manual_seed(3)
    xs, ys = torch.randn(40, K, 7, generator=g), torch.randint(0, 3, (40, K), generator=g)

    def run(one_pass: bool):
        r = rule if one_pass else dataclasses.replace(rule, hvp_vectors=None)
        params = glorot_init(spec, list(range(K)))
        state = r.init(params, hp)
        step = trainer.make_step(model, r, compile=compiled)
        for x, y in zip(xs, ys):
            state = step(params, state, hp, x, y)
        return params, state

    (p1, s1), (p2, s2) = run(True), run(False)
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))
    assert torch.equal(s1["eta"], s2["eta"]) and all(torch.equal(a, b) for a, b in zip(s1["v"], s2["v"]))
    assert not torch.equal(s1["eta"], hp["eta0"].float())  # the rate moved: the products were used


def test_smd_frontend_hvp_matches_full_hessian():
    model = small_model(2)
    params = list(model.parameters())
    x = torch.randn(3, 4, dtype=F64)
    y = torch.tensor([0, 2, 1])
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward(create_graph=True)
    from baselines.smd import _double_backward_hvp

    vs = [torch.randn_like(p).unsqueeze(0) for p in params]
    got = torch.cat([h.reshape(-1) for h in _double_backward_hvp(params, vs)])

    flat0 = torch.cat([p.detach().reshape(-1) for p in params])

    def loss_of(flat):
        i, new = 0, {}
        for (n, p) in model.named_parameters():
            new[n] = flat[i : i + p.numel()].reshape(p.shape)
            i += p.numel()
        return torch.nn.functional.cross_entropy(torch.func.functional_call(model, new, (x,)), y)

    H = torch.autograd.functional.hessian(loss_of, flat0)
    torch.testing.assert_close(got, H @ torch.cat([v.reshape(-1) for v in vs]), rtol=1e-10, atol=1e-12)


def test_smd_frontend_needs_create_graph():
    model = small_model(3)
    opt = SMD(model.parameters())
    torch.nn.functional.cross_entropy(model(torch.randn(2, 4, dtype=F64)), torch.tensor([0, 1])).backward()
    with pytest.raises(RuntimeError, match="create_graph=True"):
        opt.step()


def test_smd_frontend_matches_rule_on_quadratic():
    """The front-end (double backward) and the rule driven with exact A v agree on one member."""
    A, b, theta0 = quadratic_stream(1, 12, seed=4)
    setting = SETTINGS["smd"][0]
    want = run_rule("smd", [setting], A, b, theta0)[0, -1]
    theta = torch.nn.Parameter(theta0[0].clone())
    opt = SMD([theta], **setting)
    for t in range(A.shape[1]):
        opt.zero_grad()
        (0.5 * theta @ A[0, t] @ theta - b[0, t] @ theta).backward(create_graph=True)
        opt.step()
    torch.testing.assert_close(theta.detach(), want, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------------
# The ensemble trainer: a diverging member is dropped and recorded; the others are unaffected
# ---------------------------------------------------------------------------------------------------
def tiny_data(n=40, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n + 20, d, generator=g)
    y = torch.zeros(n + 20, dtype=torch.int64)
    return Dataset("tiny", x[:n], y[:n], x[n:], y[n:], "md5", False, ())


# A good setting and a diverging one per rule. SGD diverges at eta0 = 10 on this autoencoder; the adaptive
# rules damp large rates (AdaGrad's and Amari's steps are bounded per step, SMD's exp(-mu g.v) shrinks eta,
# Almeida's rate is clipped to 0 on sign changes), so theirs is the smallest of {10, 1e3, 1e10, 1e100, 1e300}
# that overflowed within 3 epochs when we tried.
DIVERGING = {
    "sgd": ({"eta0": 0.01, "gamma": 1.0}, {"eta0": 10.0, "gamma": 0.0}),
    "smd": ({"eta0": 0.01, "mu": 1e-3, "tau": 100.0}, {"eta0": 1e100, "mu": 1e-3, "tau": 100.0}),
    "amari": ({"eta0": 1e-4, "tau": 100.0}, {"eta0": 1e300, "tau": 100.0}),
    "adagrad": ({"eta0": 0.01}, {"eta0": 1e300}),
    "almeida": ({"eta0": 1e-3, "tau": 100.0}, {"eta0": 1e3, "tau": 100.0}),
}


@pytest.mark.parametrize("name", list(DIVERGING))
def test_diverging_member_is_recorded_and_others_unaffected(name):
    spec = MLPSpec((6, 4, 6), "mse", l2=1e-4)  # linear outputs and squared error: large rates blow up
    data = tiny_data()
    good, bad = DIVERGING[name]
    rule = get_rule(name)
    members = [Member(0, good), Member(1, bad), Member(2, good)]
    mixed = train_ensemble(spec, rule, members, data, epochs=3, dtype=F64, eval_subset=1000)
    alone = [train_ensemble(spec, rule, [m], data, epochs=3, dtype=F64, eval_subset=1000)[0] for m in members[::2]]
    assert mixed[1].diverged and mixed[1].diverged_step is not None and mixed[1].test_loss == float("inf")
    assert mixed[1].diverged_step is not None and mixed[1].test_loss == float("inf")
    for r, solo in zip(mixed[::2], alone):
        assert not r.diverged and math.isfinite(r.test_error)
        assert r.test_error == pytest.approx(solo.test_error, rel=1e-10)
        assert r.train_loss == pytest.approx(solo.train_loss, rel=1e-10)
        assert [c["test_loss"] for c in r.curve] == pytest.approx([c["test_loss"] for c in solo.curve], rel=1e-10)


def test_smd_in_trainer_uses_hvp_and_learns():
    spec = MLPSpec((6, 3), "cross_entropy", l2=1e-4)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(60, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    data = Dataset("tiny", x[:40], y[:40], x[40:], y[40:], "md5", False, ())
    r0 = train_ensemble(spec, get_rule("smd"), [Member(0, {"eta0": 1e-7})], data, epochs=2, dtype=F64)[0]
    r1 = train_ensemble(spec, get_rule("smd"), [Member(0, {"eta0": 0.1, "mu": 0.01, "tau": 10.0})], data,
                        epochs=2, dtype=F64)[0]
    assert r1.train_loss < r0.train_loss
    assert r1.curve[-1]["rate_min"] == r1.curve[-1]["rate_max"] != 0.1  # one global rate, and it moved


# ---------------------------------------------------------------------------------------------------
# Front-ends: errors, state_dict, rates
# ---------------------------------------------------------------------------------------------------
FRONTENDS = {"sgd": SGD, "adagrad": Adagrad, "amari": Amari, "almeida": Almeida, "smd": SMD}
BAD = [
    (Adagrad, {"eta0": 0.0}, "eta0"), (Adagrad, {"eps": -1.0}, "eps"),
    (Adagrad, {"initial_accumulator_value": -0.1}, "initial_accumulator_value"),
    (Amari, {"eta0": -1e-5}, "eta0"), (Amari, {"tau": 0.5}, "tau"), (Amari, {"eps": 0.0}, "eps"),
    (Almeida, {"eta0": 0.0}, "eta0"), (Almeida, {"tau": 0.0}, "tau"), (Almeida, {"eps": -1.0}, "eps"),
    (SMD, {"eta0": -0.1}, "eta0"), (SMD, {"mu": -1e-3}, "mu"), (SMD, {"tau": 0.9}, "tau"),
    (SMD, {"eta0": float("nan")}, "eta0"),
]


@pytest.mark.parametrize("cls,kw,name", BAD)
def test_invalid_hyperparameters_raise(cls, kw, name):
    with pytest.raises(ValueError, match=f"Invalid {cls.__init__.__globals__['RULE'].name} hyper-parameter {name}="):
        cls(small_model(0).parameters(), **kw)


@pytest.mark.parametrize("name", ["adagrad", "amari", "almeida", "smd"])
def test_unknown_hyperparameter_raises(name):
    with pytest.raises(ValueError, match="Unknown hyper-parameter"):
        get_rule(name).check_hp({"lr": 0.1})


@pytest.mark.parametrize("name", list(FRONTENDS))
def test_state_dict_round_trip(name):
    cls, setting = FRONTENDS[name], dict(SETTINGS[name][0])
    cg = name == "smd"
    a = small_model(4)
    opt_a = cls(a.parameters(), **setting)
    train_steps(a, opt_a, steps=4, seed=1, create_graph=cg)
    b = small_model(5)
    b.load_state_dict(a.state_dict())
    opt_b = cls(b.parameters(), **setting)
    opt_b.load_state_dict(opt_a.state_dict())
    pa = train_steps(a, opt_a, steps=4, seed=2, create_graph=cg)
    pb = train_steps(b, opt_b, steps=4, seed=2, create_graph=cg)
    for p, q in zip(pa, pb):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    for r in opt_b.learning_rates():
        assert torch.isfinite(r).all() and (r >= 0).all()


@pytest.mark.parametrize("name", list(FRONTENDS))
def test_loss_goes_down_on_a_parabola(name):
    torch.manual_seed(0)
    scale = torch.tensor([1.0, 3.0, 0.3], dtype=F64)
    theta = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=F64))
    setting = {"sgd": {"eta0": 0.1}, "adagrad": {"eta0": 0.3}, "amari": {"eta0": 0.03, "tau": 20.0},
               "almeida": {"eta0": 0.1, "tau": 20.0}, "smd": {"eta0": 0.05, "mu": 0.01, "tau": 20.0}}[name]
    opt = FRONTENDS[name]([theta], **setting)
    f = lambda: 0.5 * (scale * (theta - 0.01 * torch.randn(3, dtype=F64)) ** 2).sum()
    start = float(0.5 * (scale * theta.detach() ** 2).sum())
    for _ in range(300):
        opt.zero_grad()
        f().backward(create_graph=name == "smd")
        opt.step()
    assert float(0.5 * (scale * theta.detach() ** 2).sum()) < 0.05 * start


def test_front_ends_exported():
    assert set(baselines.__all__) >= {"SGD", "Adagrad", "Almeida", "Amari", "SMD"}


# ---------------------------------------------------------------------------------------------------
# The grids of Sec. 7 (Table 3, last line) and the optimizer configs
# ---------------------------------------------------------------------------------------------------
ETA0 = [c * 10.0**e for e in range(-7, 1) for c in (1, 3)] + [10.0]
TAU = [1e5, 5e4, 1e4, 5e3, 1e3, 1e2, 10.0]


@pytest.mark.parametrize("name,count", [("sgd", 68), ("adagrad", 17), ("smd", 476), ("amari", 119), ("almeida", 119)])
def test_grid_has_the_papers_count(name, count):
    path = ROOT / "conf" / "grid" / f"{name}.yaml"
    assert path.read_text().startswith("# @package grid")
    grid = yaml.safe_load(path.read_text())
    assert math.prod(len(v) for v in grid.values()) == count
    assert grid["eta0"] == pytest.approx(ETA0)
    if "tau" in grid:
        assert grid["tau"] == pytest.approx(TAU)
    if "mu" in grid:
        assert grid["mu"] == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1])
    if "gamma" in grid:
        assert grid["gamma"] == pytest.approx([0, 1 / 3, 1 / 2, 1])
    rule = get_rule(name)
    for values in itertools.product(*grid.values()):  # every setting is valid for the rule
        rule.check_hp(dict(zip(grid, values)))


@pytest.mark.parametrize("name", ["adagrad", "amari", "almeida", "smd"])
def test_optimizer_config_defaults_are_valid(name):
    cfg = yaml.safe_load((ROOT / "conf" / "optimizer" / f"{name}.yaml").read_text())
    assert cfg["name"] == name
    get_rule(name).check_hp({k: v for k, v in cfg.items() if k != "name"})


def _settings(cfg, name):
    from experiments.run import Job, settings_of, tunable

    rule = get_rule(name)
    grid = dict(cfg.grid) if cfg.get("grid") else None
    return settings_of(cfg, Job(cfg.benchmark, cfg.optimizer, grid), rule.name, tunable(rule))


@pytest.mark.parametrize("name,count", [("sgd", 68), ("smd", 476), ("amari", 119)])
def test_grid_selected_through_hydra(name, count):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"optimizer={name}", f"grid={name}"])
        plain = compose("config", overrides=[f"optimizer={name}"])
    settings = _settings(cfg, name)
    assert len(settings) == count and len({tuple(sorted(s.items())) for s in settings}) == count
    assert _settings(plain, name) == [{k: v for k, v in plain.optimizer.items() if k != "name"}]


@pytest.mark.parametrize("name", ["sgd", "adagrad", "amari", "almeida", "smd"])
def test_table1_settings_are_valid(name):
    from hydra import compose, initialize_config_dir

    from experiments.run import table1_setting

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"optimizer={name}", "tuned=table1", "benchmark=m1"])
    (setting,) = _settings(cfg, name)
    get_rule(name).check_hp(setting)
    assert {k: setting[k] for k in table1_setting("M1", name)} == table1_setting("M1", name)
