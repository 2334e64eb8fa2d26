"""The unit-test suite (synthetic/unit_suite.py) and its figures: small, exact checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from synthetic import unit_suite as us


def test_prototypes_are_minimised_where_claimed():
    u = torch.linspace(-5, 5, 2001, dtype=torch.float64)
    for name, (F, x0, bounded) in us.PROTOTYPES.items():
        f = F(u)
        assert torch.isfinite(F(torch.tensor([x0], dtype=torch.float64))).all(), name
        if bounded:
            assert (f >= 0).all(), name  # the gain log10(f0/ft) needs f >= 0
            assert F(torch.tensor([x0], dtype=torch.float64)).item() > 0, name
        else:
            assert f.min() < -1, name  # unbounded below: measured by the symmetric log instead


@pytest.mark.parametrize("noise", ["gauss_add", "gauss_mul", "mask"])
def test_gradient_noise_is_unbiased(noise):
    """The mean sampled gradient over many runs is A F'(x0) (the noise has mean zero / mean one)."""
    R = 20000
    case = us.Case("quad_convex", noise, 2.0)
    prob = us.Problem([case], R, 8, seed=3)
    s = prob.draw(0)
    _, g = prob.grad(prob.x0, s)
    true = 2.0 * 1.0  # A * F'(x0) with F = u^2/2, x0 = 1
    assert abs(g.mean().item() - true) < 4 * g.std().item() / math.sqrt(R)
    assert g.std().item() > 0.5  # and it is noisy


def test_curvature_extra_is_the_sample_second_derivative():
    case = us.Case("gauss_convex", "gauss_mul", 10.0)
    prob = us.Problem([case], 5, 8, seed=1)
    s = prob.draw(0)
    g, extras = prob.grads_and_extras(prob.x0, s, {"curvature", "grad_at", "hvp"})
    x = prob.x0[:, 0]
    d2 = (1 + x * x) * torch.exp(0.5 * x * x)  # F = exp(u^2/2) - 1
    torch.testing.assert_close(extras["curvature"][0][:, 0], (10.0 * s["w"] * d2).abs())
    torch.testing.assert_close(extras["hvp"]([torch.ones_like(g)])[0][:, 0], 10.0 * s["w"] * d2)
    torch.testing.assert_close(extras["grad_at"]([torch.zeros_like(g)])[0], g)  # same sample, same point


def test_gain_is_zero_at_the_start_and_cancels_a_changing_scale_and_offset():
    cases = [us.Case("quad_convex", "gauss_add", 1.0, "l2", ns) for ns in ("scale", "offset")]
    prob = us.Problem(cases, 3, 64)
    for t in (0, 10, 64):
        assert torch.equal(prob.gain(prob.x0, t), torch.zeros(prob.K, dtype=prob.dtype))
    # the offset case's optimum moves: at t = T it sits at distance 2 x0 from the origin
    assert prob.offset_at(64).norm(dim=1).max().item() == pytest.approx(2.0)


def test_sgd_improves_a_noise_free_quadratic_and_line():
    cases = [us.Case("quad_convex", "none", 1.0), us.Case("line", "none", 1.0)]
    prob = us.Problem(cases, 2, 64)
    gain = us.run_rule("sgd", prob, ntrain=10_000)  # eta0 = 0.01
    order = [prob.cases.index(c) for c in cases]
    g = gain.reshape(2, 2, -1)[order]
    # quadratic: x_t = (1 - 0.01)^t, loss ratio 0.99^(2t)
    assert g[0, 0, -1] == pytest.approx(-2 * 64 * math.log10(0.99), rel=1e-9)
    # line: x_t = 1 - 0.01 t, decrease d = 0.64: sym-log gain log10(1.64)
    assert g[1, 0, -1] == pytest.approx(math.log10(1.64), rel=1e-9)
    assert (np.diff(g[0, 0]) > 0).all()


def test_divergence_is_minus_infinity_and_counts_as_unstable():
    # SGD at eta0 = 0.01 on exp(u^2/2) - 1 from x0 = 1 at A = 1000: the first step overshoots to x ~ -15.5,
    # the second to |x| ~ 1e53, where the loss overflows
    prob = us.Problem([us.Case("gauss_convex", "none", 1000.0)], 2, 8)
    gain = us.run_rule("sgd", prob, ntrain=10_000)
    assert np.isneginf(gain[:, -1]).all()


def test_suite_summary_and_figures(tmp_path):
    from analysis import unit_suite_figures

    res = us.run_suite(steps=8, runs=3, per_member_runs=2, scales=[1.0], noises=["none", "mask"],
                       optimizers=["sgd", "adam", "dog"], log=lambda s: None)
    assert res.gain.shape == (3, 2 * len(us.PROTOTYPES) + len(us.cases_nd()), 3, len(us.checkpoints(8)))
    assert np.isnan(res.gain[2, :, 2]).all() and not np.isnan(res.gain[2, :, :2]).any()  # dog: 2 runs
    paths = us.save(res, tmp_path)
    table = us.summary(us.load(paths["npz"]))
    assert list(table.optimizer) == ["sgd", "adam", "dog"]
    assert ((table.improved >= 0) & (table.improved <= 1) & (table.unstable >= 0) & (table.unstable <= 1)).all()
    assert paths["md"].read_text().startswith("| optimizer |")
    for p in unit_suite_figures.draw_npz(paths["npz"], tmp_path / "fig"):
        assert p.stat().st_size > 1000
    # python -m analysis: figures into <out>/figures, the tables beside them in <out>, as the suite saved them
    us.save(res, tmp_path / "store" / "synthetic")
    written = unit_suite_figures.draw_all(tmp_path / "store", tmp_path / "results" / "figures")
    tables = {p.name for p in written if p.parent == tmp_path / "results"}
    assert tables == {"unit_suite_summary.md", "unit_suite_summary.csv", "unit_suite_cases.csv",
                      "unit_suite_by_prototype.csv"}
    assert (tmp_path / "results" / "unit_suite_summary.csv").read_text() == paths["csv"].read_text()
    # the analysis's markdown names the optimizers as the tables do (issue 33 s5); the CSVs keep registry names
    md = (tmp_path / "results" / "unit_suite_summary.md").read_text()
    assert [line.split("|")[1].strip() for line in md.splitlines()[2:]] == ["SGD", "Adam", "DoG"]
    assert md.replace("| SGD |", "| sgd |").replace("| Adam |", "| adam |").replace("| DoG |", "| dog |") == \
        paths["md"].read_text()


def test_unknown_optimizer_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown or unavailable optimizer.*'nope'"):
        us.run_suite(steps=2, runs=1, optimizers=["nope"])


def test_hydra_entry_composes_and_writes_to_the_store(tmp_path):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from experiments.data import PROJECT_ROOT

    # `experiment=` when conf/config.yaml lists `experiment: null` among its defaults, else `+experiment=`
    defaults = OmegaConf.load(PROJECT_ROOT / "conf" / "config.yaml").get("defaults", [])
    listed = any(isinstance(d, dict) and "experiment" in d for d in OmegaConf.to_container(defaults))
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            ("" if listed else "+") + "experiment=unit_suite", f"store={tmp_path}", "unit_suite.steps=4", "unit_suite.runs=2",
            "unit_suite.optimizers=[sgd]", "unit_suite.scales=[1.0]", "unit_suite.noises=[none]",
            "unit_suite.multivariate=false"])
    assert cfg.entry == "synthetic.unit_suite:run"
    module, fn = cfg.entry.split(":")
    out = getattr(__import__(module, fromlist=[fn]), fn)(cfg)
    table = out["summary"]
    assert list(table.optimizer) == ["sgd"] and table.cases.iloc[0] == len(us.PROTOTYPES)
    assert (tmp_path / "synthetic" / "unit_suite.npz").exists()
    assert (tmp_path / "synthetic" / "unit_suite_summary.md").exists()
