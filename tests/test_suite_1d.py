"""The 1-D suite of paper 2 Sec. 6: closed forms, the simulation, the summary, the config and the heatmaps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from baselines.sgd import RULE as SGD
from synthetic import suite_1d as s

DT = torch.float64


@pytest.mark.parametrize("function", s.FUNCTIONS)
@pytest.mark.parametrize("theta,A,s2", [(1.0, 1.0, 1.0), (-0.7, 10.0, 0.1), (2.5, 0.1, 10.0)])
def test_expected_loss_matches_monte_carlo(function, theta, A, s2):
    g = torch.Generator().manual_seed(0)
    xi = torch.randn(400_000, generator=g, dtype=DT) * math.sqrt(s2)
    u = theta - xi
    sample = {"quad": A * u * u, "abs": A * u.abs(), "rectlin": A * u.clamp_min(0),
              "gauss": A - A * torch.exp(-u * u / 2)}[function]
    closed = s.expected_loss(function, torch.tensor(A, dtype=DT), torch.tensor(s2, dtype=DT), torch.tensor(theta, dtype=DT))
    se = float(sample.std()) / math.sqrt(len(sample))
    assert float(closed) == pytest.approx(float(sample.mean()), abs=5 * se + 1e-12)


@pytest.mark.parametrize("function", s.FUNCTIONS)
def test_sample_gradient_and_curvature_match_autograd(function):
    A = torch.tensor(3.0, dtype=DT)
    u = torch.tensor([-2.0, -0.3, 0.4, 1.7], dtype=DT, requires_grad=True)
    f = {"quad": lambda v: A * v * v, "abs": lambda v: A * v.abs(), "rectlin": lambda v: A * v.clamp_min(0),
         "gauss": lambda v: A - A * torch.exp(-v * v / 2)}[function]
    (g,) = torch.autograd.grad(f(u).sum(), u, create_graph=True)
    torch.testing.assert_close(s.sample_grad(function, A, u.detach()), g.detach())
    if function in ("quad", "gauss"):
        (h,) = torch.autograd.grad(g.sum(), u)
        torch.testing.assert_close(s.sample_curvature(function, A, u.detach()), h)
    else:
        torch.testing.assert_close(s.sample_curvature(function, A, u.detach()), torch.zeros(4, dtype=DT))


def test_sgd_on_quad_follows_the_exact_mean_square_recursion():
    # theta' = (1 - 2 A eta) theta + 2 A eta xi_bar  =>  E theta'^2 = (1 - 2 A eta)^2 E theta^2 + (2 A eta)^2 s2 / n
    A, s2, eta, n = 1.0, 1.0, 0.1, 10
    case = [s.Case("quad", A, s2)]
    L = s.simulate(SGD, [{"eta0": eta, "gamma": 0.0}], case, runs=4000, updates=16, n=n, seed=3)
    m2 = 1.0
    expected = [A * (m2 + s2)]
    for t in range(1, 17):
        m2 = (1 - 2 * A * eta) ** 2 * m2 + (2 * A * eta) ** 2 * s2 / n
        if t in s.checkpoints(16):
            expected.append(A * (m2 + s2))
    got = L[0, 0].mean(axis=0)
    np.testing.assert_allclose(got, expected, rtol=0.01)


def test_gains_and_summary_quantiles():
    losses = np.array([[[[2.0, 1.0, 4.0], [2.0, 0.2, 0.02], [2.0, np.inf, np.nan]]]])  # 1 row, 1 case, 3 runs
    G = s.gains(losses)
    np.testing.assert_allclose(G[0, 0, 1], [1.0, 2.0])
    assert G[0, 0, 0, 1] == pytest.approx(math.log10(0.5)) and G[0, 0, 2, 0] == -np.inf and G[0, 0, 2, 1] == -np.inf
    res = {"gain": G, "rows": [(s.Setting("sgd", (("eta0", 0.1),)), 1)], "cases": [s.Case("quad", 1.0, 1.0)],
           "checkpoints": [1, 2], "standins": []}
    df = s.summary(res)
    last = df[df.step == 2].iloc[0]
    assert last.gain_median == pytest.approx(math.log10(0.5))
    assert last.frac_worse_final == pytest.approx(2 / 3)
    assert set(df.columns) >= {"algorithm", "setting", "n", "function", "A", "sigma2", "step", "gain_median",
                               "gain_q10", "gain_q90", "frac_worse_final"}


def test_experiment_config_runs_and_writes_npz_and_csv(tmp_path):
    from hydra import compose, initialize_config_dir

    from experiments.data import PROJECT_ROOT

    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=suite_1d", f"store={tmp_path}", "suite_1d.runs=3",
                                           "suite_1d.updates=8", "suite_1d.algorithms=[sgd,vsgd_fd]"])
    assert cfg.entry == "synthetic.suite_1d:run"
    df = s.run(cfg)["summary"]
    assert (tmp_path / "synthetic" / "suite_1d.npz").is_file() and (tmp_path / "synthetic" / "suite_1d.csv").is_file()
    assert set(df.algorithm) == {"sgd", "vsgd_fd"} and set(df.n) == {1, 10} and df.step.max() == 8
    back = s.load(tmp_path / "synthetic" / "suite_1d.npz")
    assert back["gain"].shape == (2 * 8 + 2, 36, 3, 4)  # (8 SGD settings + vSGD-fd) x 2 n, 36 cases, 3 runs, 4 checkpoints
    assert back["measure"] == "excess" and set(df.measure) == {"excess"}
    table = s.acceptance_table(back)
    assert table.shape == (36, 8) and set(table.columns.get_level_values(0)) == {1, 10}

    from analysis import heatmaps

    png = heatmaps.draw_heatmaps(back, tmp_path / "h.png")
    assert png.stat().st_size > 1000


@pytest.mark.parametrize("function", s.FUNCTIONS)
@pytest.mark.parametrize("A,s2", [(0.1, 10.0), (1.0, 1.0), (10.0, 0.1)])
def test_optimal_loss_is_the_minimum_of_the_expected_loss(function, A, s2):
    At, s2t = torch.tensor(A, dtype=DT), torch.tensor(s2, dtype=DT)
    theta = torch.linspace(-30.0, 30.0, 6001, dtype=DT)
    L = s.expected_loss(function, At, s2t, theta)
    opt = float(s.optimal_loss(function, At, s2t))
    assert float(L.min()) >= opt - 1e-12 * max(opt, 1.0)
    if function == "rectlin":  # infimum 0 at -infinity
        assert opt == 0.0 and float(L[0]) < 1e-6 * A
    else:  # attained at theta = 0
        assert float(s.expected_loss(function, At, s2t, torch.tensor(0.0, dtype=DT))) == pytest.approx(opt, rel=1e-12)


def test_excess_and_expected_measures_agree_on_which_runs_are_worse():
    from vsgd.fd import RULE as FD

    case_list = [s.Case(f, 10.0, s2) for f in s.FUNCTIONS for s2 in (0.1, 10.0)]
    kw = {"runs": 30, "updates": 64, "n": 1, "seed": 4}
    G_exc = s.gains(s.simulate(FD, [{}], case_list, measure="excess", **kw))
    G_exp = s.gains(s.simulate(FD, [{}], case_list, measure="expected", **kw))
    assert (G_exc < 0).any()  # f_abs A = 10 overshoots on its first update: the comparison is not vacuous
    np.testing.assert_array_equal(G_exc < 0, G_exp < 0)
    np.testing.assert_array_equal(G_exc > 0, G_exp > 0)
    assert (np.abs(G_exc) >= np.abs(G_exp) - 1e-9).all()  # subtracting the same optimum widens every ratio
