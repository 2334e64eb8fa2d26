"""vSGD-l / -b / -g: the rule against a per-element float64 reference, identities, the front-end."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from experiments.data import Dataset
from experiments.mlp import EnsembleMLP, MLPSpec, glorot_init
from experiments.trainer import Member, train_ensemble
from vsgd import VSGD, get_rule

SHAPES = [(3, 2), (2,)]  # a tiny "weight matrix" and "bias": two blocks, d = 8
D = 8


def quadratic_problem(seed: int, steps: int):
    """Noisy separable quadratic: per-sample loss 1/2 sum_i h_i (theta_i - c_i)^2, curvature h exact."""
    g = torch.Generator().manual_seed(seed)
    h = [torch.rand(s, generator=g, dtype=torch.float64) * 3 + 0.1 for s in SHAPES]
    theta0 = [torch.randn(s, generator=g, dtype=torch.float64) * 3 for s in SHAPES]
    cs = [[torch.randn(s, generator=g, dtype=torch.float64) for s in SHAPES] for _ in range(steps)]
    return h, theta0, cs


# -- the reference: a plain loop over elements, straight from the paper's equations ------------------
def reference(pooling: str, h, theta0, cs, *, n0=3, C=5.0, tau0=2.0, eps=1e-16, c_scales_h=True, move=False):
    theta = [[float(v) for v in t.flatten()] for t in theta0]
    hh = [[float(v) for v in t.flatten()] for t in h]
    blocks = {"element": [[(b, i)] for b in range(len(theta)) for i in range(len(theta[b]))],
              "block": [[(b, i) for i in range(len(theta[b]))] for b in range(len(theta))],
              "global": [[(b, i) for b in range(len(theta)) for i in range(len(theta[b]))]]}[pooling]
    g_bar = [[0.0] * len(t) for t in theta]
    h_bar = [[0.0] * len(t) for t in theta]
    l_bar = [0.0] * len(blocks)
    tau = [tau0] * len(blocks)
    for t, c in enumerate(cs):
        cc = [[float(v) for v in x.flatten()] for x in c]
        grad = [[hh[b][i] * (theta[b][i] - cc[b][i]) for i in range(len(theta[b]))] for b in range(len(theta))]
        init = t < n0
        for u, members in enumerate(blocks):
            f = 1.0 / (t + 1) if init else 1.0 / tau[u]
            sq = sum(grad[b][i] ** 2 for b, i in members) * (C if init else 1.0)
            l_bar[u] = (1 - f) * l_bar[u] + f * sq  # Sec. 4.1: l <- (1 - 1/tau) l + 1/tau ||grad||^2
            for b, i in members:
                g_bar[b][i] = (1 - f) * g_bar[b][i] + f * grad[b][i]  # Sec. 4.1
                hs = abs(hh[b][i]) * (C if (init and c_scales_h) else 1.0)
                h_bar[b][i] = (1 - f) * h_bar[b][i] + f * hs  # Sec. 4.3
            gb2 = sum(g_bar[b][i] ** 2 for b, i in members)
            hplus = max(h_bar[b][i] for b, i in members)
            r = gb2 / (l_bar[u] + eps)
            eta = r / max(hplus, eps)  # eq. 7 (one element) / eq. 8 (pooled)
            if not init:
                tau[u] = (1 - r) * tau[u] + 1  # Sec. 4.2 / App. B
            if not init or move:
                for b, i in members:
                    theta[b][i] -= eta * grad[b][i]
    return [torch.tensor(t, dtype=torch.float64).reshape(s) for t, s in zip(theta, SHAPES)]


def run_rule(name: str, h, theta0, cs, **hp):
    rule = get_rule(name)
    hpt = {k: torch.tensor([v], dtype=torch.float64) for k, v in rule.check_hp(hp).items()}
    params = [t.clone().unsqueeze(0) for t in theta0]
    state = rule.init(params, hpt)
    curv = [x.unsqueeze(0) for x in h]
    for c in cs:
        grads = [hx.unsqueeze(0) * (p - cx.unsqueeze(0)) for hx, p, cx in zip(h, params, c)]
        updates, state = rule.update(grads, state, params, hpt, {"curvature": curv, "batch_size": 1})
        params = [p + u for p, u in zip(params, updates)]
    return [p.squeeze(0) for p in params], state


@pytest.mark.parametrize("name,pooling", [("vsgd_l", "element"), ("vsgd_b", "block"), ("vsgd_g", "global")])
@pytest.mark.parametrize("options", [{}, {"c_scales_h": 0.0}, {"move_during_init": 1.0}, {"tau0": 7.0}])
def test_rule_matches_per_element_reference(name, pooling, options):
    h, theta0, cs = quadratic_problem(0, 40)
    got, _ = run_rule(name, h, theta0, cs, n0=3, c=5.0, **options)
    want = reference(pooling, h, theta0, cs, n0=3, C=5.0, tau0=options.get("tau0", 2.0),
                     c_scales_h=bool(options.get("c_scales_h", 1.0)), move=bool(options.get("move_during_init")))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # the parameters did move, and differently per pooling: the test would see a wrong pooling
    assert not torch.allclose(got[0], theta0[0])


def test_default_c_is_d_over_10_at_least_1():
    h, theta0, cs = quadratic_problem(1, 10)
    got, _ = run_rule("vsgd_l", h, theta0, cs, n0=2)  # c = 0: auto, d = 8 -> max(1, 0.8) = 1
    want = reference("element", h, theta0, cs, n0=2, C=1.0)
    torch.testing.assert_close(got[0], want[0], rtol=1e-12, atol=1e-12)


def test_l_equals_g_on_a_single_parameter():
    g = torch.Generator().manual_seed(3)
    h = torch.tensor([[1.7]], dtype=torch.float64)
    theta = {n: torch.tensor([[4.0]], dtype=torch.float64) for n in ("vsgd_l", "vsgd_g", "vsgd_b")}
    states, hps = {}, {}
    for n in theta:
        rule = get_rule(n)
        hps[n] = {k: torch.tensor([v], dtype=torch.float64) for k, v in rule.check_hp({"n0": 5}).items()}
        states[n] = rule.init([theta[n]], hps[n])
    for _ in range(200):
        c = torch.randn(1, 1, generator=g, dtype=torch.float64)
        for n in theta:
            grad = h * (theta[n] - c)
            (u,), states[n] = get_rule(n).update([grad], states[n], [theta[n]], hps[n], {"curvature": [h]})
            theta[n] = theta[n] + u
    torch.testing.assert_close(theta["vsgd_l"], theta["vsgd_g"], rtol=1e-12, atol=0)
    torch.testing.assert_close(theta["vsgd_l"], theta["vsgd_b"], rtol=1e-12, atol=0)


def mlp_trajectory(name: str, scale: float, steps: int = 150, eps: float = 1e-16):
    """vSGD on a tiny tanh MLP, loss multiplied by ``scale`` (gradient and curvature scale with it)."""
    spec = MLPSpec((5, 4, 3), "cross_entropy", l2=1e-3)
    model = EnsembleMLP(spec)
    params = glorot_init(spec, [0], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(steps, 1, 5, generator=g, dtype=torch.float64)
    ys = torch.randint(0, 3, (steps, 1), generator=g)
    rule = get_rule(name)
    hp = {k: torch.tensor([v], dtype=torch.float64) for k, v in rule.check_hp({"n0": 10, "eps": eps}).items()}
    state = rule.init(params, hp)
    for x, y in zip(xs, ys):
        _, grads, curv = model.loss_and_grads(params, x, y, curvature=True)
        grads = [scale * gr for gr in grads]
        curv = [scale * c for c in curv]
        updates, state = rule.update(grads, state, params, hp, {"curvature": curv})
        params = [p + u for p, u in zip(params, updates)]
    return params


@pytest.mark.parametrize("name", ["vsgd_l", "vsgd_b", "vsgd_g"])
def test_loss_times_1000_leaves_the_trajectory_unchanged(name):
    # The tuning-free claim as one assertion: eta = g_bar^2 / (h_bar v_bar) scales as 1/scale, the
    # step eta * grad not at all. With a power-of-two scale and eps = 0 every float operation scales
    # exactly, so the trajectories are bitwise equal. With scale 1000 and the default eps they agree to
    # a relative 1e-6: rounding differences (1e-16) are amplified along 150 non-linear steps (scaling
    # the loss by 1 + 1e-7 already moves the result by 1e-9), and eps adds 1e-16 to denominators as
    # small as 1e-9.
    init = glorot_init(MLPSpec((5, 4, 3), "cross_entropy"), [0], dtype=torch.float64)
    base = mlp_trajectory(name, 1.0, eps=0.0)
    assert max(float((p - q).abs().max()) for p, q in zip(base, init)) > 1e-2  # it did train
    for a, b in zip(base, mlp_trajectory(name, 1024.0, eps=0.0)):
        assert torch.equal(a, b)
    for a, b in zip(mlp_trajectory(name, 1.0), mlp_trajectory(name, 1000.0)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)


def tiny_dataset(n=40, d=6, classes=3, seed=0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2 * n, d, generator=g)
    y = (x[:, :classes].argmax(dim=1) + (torch.rand(2 * n, generator=g) < 0.1).long()) % classes
    return Dataset("tiny", x[:n], y[:n], x[n:], y[n:], "md5", True, ())


@pytest.mark.parametrize("name", ["vsgd_l", "vsgd_b", "vsgd_g"])
def test_batched_members_equal_separate_runs(name):
    spec = MLPSpec((6, 5, 3), "cross_entropy")
    data = tiny_dataset()
    rule = get_rule(name)
    # members differ in seed, n0 (different slow-start lengths in one ensemble) and C
    members = [Member(0, {"n0": 0.1}), Member(1, {"n0": 0.25, "c": 100.0}), Member(2, {"n0": 0.05, "tau0": 3.0})]
    together = train_ensemble(spec, rule, members, data, epochs=2, dtype=torch.float64)
    for m, r in zip(members, together):
        alone = train_ensemble(spec, rule, [m], data, epochs=2, dtype=torch.float64)[0]
        assert r.test_loss == pytest.approx(alone.test_loss, rel=1e-10, abs=1e-12)
        assert r.train_loss == pytest.approx(alone.train_loss, rel=1e-10, abs=1e-12)
        assert [c["rate_median"] for c in r.curve] == pytest.approx([c["rate_median"] for c in alone.curve], rel=1e-9)
    assert len({r.test_loss for r in together}) == 3


# -- the torch.optim front-end ------------------------------------------------------------------------
def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).double()


def train_front_end(model, opt, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    data = tiny_dataset()
    losses = []
    for t in range(steps):
        i = int(torch.randint(0, data.n_train, (1,), generator=g))
        x, y = data.x_train[i : i + 1].double(), data.y_train[i : i + 1]

        def closure():
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss

        losses.append(float(opt.step(closure).detach()))
    return losses


@pytest.mark.parametrize("mode", ["l", "b", "g"])
def test_state_dict_round_trip(mode):
    model = tiny_model()
    opt = VSGD(model.parameters(), mode=mode, model=model, loss="cross_entropy", n0=5)
    train_front_end(model, opt, 30, seed=1)
    twin = copy.deepcopy(model)
    opt2 = VSGD(twin.parameters(), mode=mode, model=twin, loss="cross_entropy", n0=5)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    train_front_end(model, opt, 20, seed=2)
    train_front_end(twin, opt2, 20, seed=2)
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    rates = opt.learning_rates()
    assert [r.shape for r in rates] == [p.shape for p in model.parameters()]
    assert all(bool((r > 0).all()) for r in rates)


@pytest.mark.parametrize("h_rel", [0.0, 1.0], ids=["paper", "front-end default floor"])
def test_front_end_equals_the_rule_in_the_trainer_layout(h_rel):
    # VSGD on nn.Sequential (weights [out, in]) takes the same steps as the rule on EnsembleMLP ([in, out]);
    # the front-end's step cap (tests/test_vsgd_cap.py) is off: the rule's own steps are compared.
    model = tiny_model(3)
    spec = MLPSpec((6, 5, 3), "cross_entropy", l2=0.0)
    params = [model[0].weight.detach().T.clone()[None], model[0].bias.detach().clone()[None],
              model[2].weight.detach().T.clone()[None], model[2].bias.detach().clone()[None]]
    rule = get_rule("vsgd_l")
    hp = {k: torch.tensor([v], dtype=torch.float64) for k, v in rule.check_hp({"n0": 4, "c": 3.0, "h_rel": h_rel}).items()}
    state = rule.init(params, hp)
    opt = VSGD(model.parameters(), mode="l", model=model, loss="cross_entropy", n0=4, c=3.0, h_rel=h_rel,
               cap_step=False)
    data = tiny_dataset()
    for t in range(25):
        x, y = data.x_train[t : t + 1].double(), data.y_train[t : t + 1]
        _, grads, curv = EnsembleMLP(spec).loss_and_grads(params, x, y, curvature=True)
        updates, state = rule.update(grads, state, params, hp, {"curvature": curv})
        params = [p + u for p, u in zip(params, updates)]

        def closure():
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss

        opt.step(closure)
    torch.testing.assert_close(model[0].weight.detach().T, params[0][0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(model[2].bias.detach(), params[3][0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", ["l", "b", "g"])
def test_loss_goes_down_on_a_parabola(mode):
    # J = 1/2 sum h_i (theta_i - c)^2 with noisy targets c ~ N(1, 0.1^2); curvature h known.
    theta = nn.Parameter(torch.full((4,), 5.0, dtype=torch.float64))
    h = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    opt = VSGD([theta], mode=mode, curvature_fn=lambda: [h], n0=3)
    g = torch.Generator().manual_seed(0)

    def expected_loss():
        return float(0.5 * (h * (theta.detach() - 1.0) ** 2).sum())

    start = expected_loss()
    for _ in range(300):
        c = 1.0 + 0.1 * torch.randn(4, generator=g, dtype=torch.float64)

        def closure():
            opt.zero_grad()
            loss = 0.5 * (h * (theta - c) ** 2).sum()
            loss.backward()
            return loss

        opt.step(closure)
    assert expected_loss() < 1e-2 * start


def test_grad_none_parameters_are_untouched():
    model = tiny_model()
    frozen = nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = VSGD([{"params": list(model.parameters())}, {"params": [frozen]}], mode="b",
               curvature_fn=lambda: {**{p: torch.ones_like(p) for p in model.parameters()}, frozen: torch.ones(3)})
    before = [p.detach().clone() for p in model.parameters()]
    train_front_end(model, opt, 15)
    assert frozen.grad is None and torch.equal(frozen.detach(), torch.ones(3, dtype=torch.float64))
    assert all(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters()))


def test_blocks_group_is_one_rate_per_group():
    model = tiny_model()
    opt = VSGD([{"params": list(model[0].parameters())}, {"params": list(model[2].parameters())}], mode="b",
               blocks="group", model=model, loss="cross_entropy", n0=3)
    train_front_end(model, opt, 10)
    rates = opt.learning_rates()
    assert rates[0].unique().numel() == 1 and float(rates[0].flatten()[0]) == float(rates[1].flatten()[0])
    assert float(rates[0].flatten()[0]) != float(rates[2].flatten()[0])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"mode": "x"}, "Invalid mode"),
        ({"blocks": "layer"}, "Invalid blocks"),
        ({"model": None}, "needs a curvature"),
        ({"loss": "hinge"}, "Invalid loss"),
        ({"n0": 0}, "Invalid n0"),
        ({"n0": 2.5}, "Invalid n0"),
        ({"c": -1.0}, "Invalid c"),
        ({"l2": -1.0}, "Invalid l2"),
        ({"tau0": 0.5}, "tau0"),
        ({"eps": -1.0}, "eps"),
    ],
)
def test_invalid_arguments_raise_clear_errors(kwargs, message):
    model = tiny_model()
    args = {"model": model, "loss": "cross_entropy", **kwargs}
    with pytest.raises(ValueError, match=message):
        VSGD(model.parameters(), **args)


def test_foreign_parameters_and_unsupported_layers_are_refused():
    model = tiny_model()
    with pytest.raises(ValueError, match="not a parameter of model"):
        VSGD([nn.Parameter(torch.ones(2))], model=model, loss="mse")
    conv = nn.Sequential(nn.Conv2d(1, 1, 3))
    with pytest.raises(TypeError, match="curvature_fn"):
        VSGD(conv.parameters(), model=conv, loss="mse", curvature="bbprop")  # "auto" gives it the sampled GGN


def test_rates_are_the_step_taken():
    # learning_rates() reports the eta of the last update: theta_new = theta_old - eta * grad.
    theta = nn.Parameter(torch.tensor([3.0, -2.0], dtype=torch.float64))
    h = torch.tensor([1.0, 3.0], dtype=torch.float64)
    opt = VSGD([theta], mode="l", curvature_fn=lambda: [h], n0=2)
    for k in range(6):
        old = theta.detach().clone()
        opt.zero_grad()
        (0.5 * (h * (theta - 0.1 * k) ** 2).sum()).backward()
        opt.step()
    eta = opt.learning_rates()[0]
    torch.testing.assert_close(theta.detach(), old - eta * theta.grad, rtol=1e-12, atol=0)
    assert math.isfinite(float(eta.sum()))


@pytest.mark.parametrize("name", ["vsgd_l", "vsgd_b", "vsgd_g"])
def test_optimizer_configs_match_the_rules(name):
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(f"conf/optimizer/{name}.yaml")
    rule = get_rule(name)
    assert cfg.name == name and rule.extras == ("curvature",)
    hp = {k: v for k, v in cfg.items() if k != "name"}
    # options added after the committed records (issue 34: the front-end's robustness guards) stay out of the
    # configs, whose hyper-parameters are hashed into the records' keys: their rule defaults are the paper (off)
    later = {"h_rel", "h_var"}
    assert set(hp) == set(rule.hyperparams) - later
    assert all(rule.hyperparams[k].default == 0.0 for k in later)
    assert {k: float(v) for k, v in hp.items()} == {k: p.default for k, p in rule.hyperparams.items() if k not in later}


def test_relative_curvature_floor_bounds_the_rate_of_a_flat_element():
    # Issue 34: an element whose curvature is ~0 (a weight behind a dead ReLU unit, a constant input) gets
    # eta = r / h -> 1e11 r from the paper's rule; h_rel = 1 takes its curvature at its tensor's mean instead.
    # Elements at or above the mean, and the pooled variants (h+ >= mean), are unchanged.
    h = torch.tensor([[1e-12, 1.0, 2.0, 3.0]], dtype=torch.float64)
    grads = [torch.tensor([[1e-6, 0.5, -0.3, 0.2]], dtype=torch.float64)]
    rates = {}
    for name in ("vsgd_l", "vsgd_b", "vsgd_g"):
        rule = get_rule(name)
        for h_rel in (0.0, 1.0):
            hp = {k: torch.tensor([v], dtype=torch.float64) for k, v in rule.check_hp({"n0": 2, "h_rel": h_rel}).items()}
            params = [torch.zeros(1, 4, dtype=torch.float64)]
            state = rule.init(params, hp)
            for _ in range(5):
                _, state = rule.update(grads, state, params, hp, {"curvature": [h]})
            rates[name, h_rel] = rule.rates(state, hp, params)[0].expand(1, 4)
    paper, floored = rates["vsgd_l", 0.0], rates["vsgd_l", 1.0]
    assert paper[0, 0] > 1e9  # the paper's rule: a huge rate on the flat element
    mean_h = float(h.mean())
    torch.testing.assert_close(floored[0, 0], paper[0, 0] * 1e-12 / mean_h, rtol=1e-9, atol=0)
    torch.testing.assert_close(floored[0, 1:][h[0, 1:] < mean_h], (paper[0, 1:] * h[0, 1:] / mean_h)[h[0, 1:] < mean_h])
    assert torch.equal(floored[0, 2:], paper[0, 2:])  # h >= mean: unchanged
    for name in ("vsgd_b", "vsgd_g"):
        assert torch.equal(rates[name, 0.0], rates[name, 1.0])


def test_front_end_guards_keep_tau_at_least_one_when_rounding_makes_r_exceed_one():
    # r = g_bar^2 / v_bar <= 1 in exact arithmetic; float32 rounding gives 1 + 1e-7 for a gradient that keeps its
    # sign, and the paper's tau update then goes below 1 (and, step after step, to inf and NaN: docs/vsgd.md).
    rule = get_rule("vsgd_l")
    taus = {}
    for h_rel in (0.0, 1.0):
        hp = {k: torch.tensor([v], dtype=torch.float32) for k, v in rule.check_hp({"n0": 1, "h_rel": h_rel}).items()}
        params = [torch.zeros(1, 2)]
        state = rule.init(params, hp)
        g = torch.tensor([[1.0, 1.0]])
        state.update({"step": 5, "g_bar": [g.clone()], "v_bar": [torch.tensor([[1.0 - 2 ** -22, 1.0]])],
                      "h_bar": [torch.ones(1, 2)], "tau": [torch.full((1, 2), 2.0)]})
        _, new = rule.update([g], state, params, hp, {"curvature": [torch.ones(1, 2)]})
        taus[h_rel] = new["tau"][0]
    assert taus[0.0][0, 0] < 1.0  # the paper's arithmetic
    assert (taus[1.0] >= 1.0).all()
    assert torch.equal(taus[0.0][0, 1], taus[1.0][0, 1])  # r = 1 exactly: nothing to clamp
