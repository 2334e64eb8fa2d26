"""Issue 33 section 5: figures a reviewer can read.

Drawn from the checked-in fixture store (tests/fixtures/records: SGD, AdaGrad, vSGD-l/b on M0 and C0; on M0
two SGD settings, eta0 = 0.3 at gamma = 0 and 1, diverged in both seeds) and, for the synthetic figures, from
small hand-made results. Each test captures the matplotlib figure as it is saved and checks what it shows.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from analysis import common, figures, heatmaps, paper2_figs, tables, unit_suite_figures
from experiments import results
from synthetic import unit_suite

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GRIDS = FIXTURES / "grid"


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return results.load(FIXTURES / "records", with_curves=True)


@pytest.fixture(scope="module")
def inp(frame) -> tables.Inputs:
    return tables.Inputs.from_frame(frame, grid_dir=GRIDS)


@pytest.fixture
def saved(monkeypatch) -> list:
    """The figures analysis.figures saves, in order."""
    seen = []
    save = figures._save
    monkeypatch.setattr(figures, "_save", lambda fig, out, stem: seen.append(fig) or save(fig, out, stem))
    return seen


def panel(fig, title: str):
    return next(a for a in fig.axes if a.axison and a.get_title().split("\n")[0] == title)


def legend_texts(fig) -> list[str]:
    return [t.get_text() for t in fig.legends[0].get_texts()]


def diverged_settings(inp: tables.Inputs, bench: str) -> pd.DataFrame:
    sm = figures.setting_means(inp)
    sm = sm[sm.benchmark == bench]
    return sm[~(np.isfinite(sm.train) & np.isfinite(sm.test) & (sm.diverged < 1))]


# -- Supp. Fig. 5 / Fig. 3: a diverged setting is marked, not dropped -----------------------------
def test_supp_fig5_marks_each_diverged_setting(inp, saved, tmp_path):
    gone = diverged_settings(inp, "M0")
    assert len(gone) == 2 and set(gone.optimizer) == {"sgd"}  # the fixture's two diverged SGD settings
    assert figures.supp_fig5_all(inp, tmp_path)
    ax = panel(saved[0], "M0")
    marks = [ln for ln in ax.lines if ln.get_label().startswith("diverged:")]
    assert [ln.get_label() for ln in marks] == ["diverged: sgd"]  # one mark per method ...
    assert all(ln.get_marker() == "X" and not ln.get_clip_on() for ln in marks)
    assert [t.get_text() for t in ax.texts if t.get_text().endswith("diverged")] == ["2 diverged"]  # ... counting both
    inside = ax.transAxes.inverted().transform(marks[0].get_transform().transform((0.0, 1.0)))
    assert 0 < inside[0] < 0.2 and 0.8 < inside[1] < 1  # in the panel's top-left corner, where it cannot run off the page
    assert figures.DIVERGED in legend_texts(saved[0])
    assert not [ln for ln in panel(saved[0], "C0 (approx. data)").lines if ln.get_label().startswith("diverged:")]


def test_fig3_close_up_under_each_zoomed_panel_and_both_marker_conventions(inp, saved, tmp_path):
    assert figures.fig3_mnist(inp, tmp_path)
    fig = saved[0]
    assert fig._suptitle.get_text().endswith("every setting we ran")
    top, close = panel(fig, "M0"), panel(fig, "M0: close-up of the dashed box")
    assert close.get_position().y1 < top.get_position().y0  # below it
    sm = figures.setting_means(inp)
    m0 = sm[(sm.benchmark == "M0") & (sm.diverged < 1)]
    focus = m0[m0.best | ~m0.tuned]
    lo = focus.test.min()
    near = focus.test <= lo + 2 * (focus.test.median() - lo)  # the cluster at the lowest test error
    assert near.sum() == 3 and set(focus[~near].optimizer) == {"vsgd_b"}  # vSGD-b 0.8 points above: upper panel
    (x0, x1), (y0, y1) = close.get_xlim(), close.get_ylim()
    inside = (focus.train > x0) & (focus.train < x1) & (focus.test > y0) & (focus.test < y1)
    assert list(inside) == list(near)
    assert (x1 - x0) < np.diff(top.get_xlim())[0] and (y1 - y0) < np.diff(top.get_ylim())[0]  # a real zoom
    box = [p for p in top.patches if not p.get_fill()]
    assert len(box) == 1 and box[0].get_xy() == pytest.approx((x0, y0))
    texts = legend_texts(fig)
    assert figures.BEST_TUNED in texts and figures.TUNING_FREE in texts


def test_close_up_keeps_the_points_near_the_lowest():
    focus = pd.DataFrame({"train": [1.0, 1.2, 1.4, 5.0], "test": [2.0, 2.1, 2.2, 9.0]})
    (x0, x1), (y0, y1) = figures.close_up(focus)
    assert x0 < 1.0 and 1.4 < x1 < 5.0 and y0 < 2.0 and 2.2 < y1 < 9.0
    assert figures.close_up(focus.iloc[:1]) is None


# -- Supp. Fig. 6: the median rate as well as min and max ---------------------------------------
def test_supp_fig6_draws_the_median_rate_above_min_and_max(inp, saved, tmp_path):
    assert figures.supp_fig6_rates(inp, tmp_path)
    fig = saved[0]
    med_ax = panel(fig, "M0: median rate")
    recs = tables.table23_records(inp)
    recs = recs[(recs.benchmark == "M0") & (recs.optimizer == "vsgd_l")]
    by_epoch = {}
    for curve in recs.curve:
        for p in curve:
            by_epoch.setdefault(round(p["epoch"], 9), []).append(p["rate_median"])
    want = [float(np.median(v)) for _, v in sorted(by_epoch.items())]
    colour = figures.style("vsgd_l")["color"]
    line = next(ln for ln in med_ax.lines if ln.get_color() == colour)
    assert list(line.get_ydata()) == pytest.approx(want)
    assert len(panel(fig, "M0: min and max rate").lines) == 2 * len(med_ax.lines)  # min and max per method


# -- Supp. Figs. 7-8: countable off-scale settings, one-setting panels, gamma colours ------------
def test_supp_fig7_gives_each_off_scale_setting_its_own_place(inp, saved, tmp_path):
    assert figures.supp_fig7_test(inp, tmp_path)
    ax = panel(saved[0], "M0")
    top = ax.get_yticks().max()
    band = [tuple(xy) for c in ax.collections for xy in np.asarray(c.get_offsets()) if len(xy) and xy[1] > top]
    assert len(band) == len(diverged_settings(inp, "M0")) == 2  # both diverged at eta0 = 0.3, on two rows
    assert len(set(band)) == 2 and {x for x, _ in band} == {0.3}
    colours = {tuple(np.round(c.get_facecolor()[0], 3)) for c in ax.collections
               if len(c.get_offsets()) and c.get_facecolor().size and c.get_sizes()[0] == 16}
    assert len(colours) == 3  # SGD at gamma 0, SGD at gamma 1, AdaGrad: three distinct colours


def test_supp_fig8_one_setting_is_named_and_drawn_on_the_shared_eta_axis(frame, saved, tmp_path):
    one = frame[~((frame.benchmark == "C0") & (frame.optimizer == "sgd") & (frame.hp_eta0 == 0.01))]
    inp = tables.Inputs.from_frame(one, grid_dir=GRIDS)
    assert figures.supp_fig8_train(inp, tmp_path)
    c0, m0 = panel(saved[0], "C0 (approx. data)"), panel(saved[0], "M0")
    assert c0.get_title().endswith("SGD: the paper's setting only")
    assert c0.get_xlim() == m0.get_xlim()  # the whole eta0 range, not a sweep between two points
    circled = [c for c in c0.collections if len(c.get_offsets()) and c.get_sizes()[0] == 60]
    assert [float(c.get_offsets()[0][0]) for c in circled] == [0.01]  # AdaGrad's best; SGD's one setting is not


def test_supp_fig8_a_grid_still_running_is_counted_and_has_no_pick(inp, saved, tmp_path):
    """The fixture's M0 SGD grid has 8 of its 15 settings (tests/fixtures/grid/sgd.yaml): Table 1 calls such a row
    the paper's, not searched, so the figure circles no "best-tuned setting" for it and says how far it got."""
    assert figures.supp_fig8_train(inp, tmp_path)
    m0 = panel(saved[0], "M0")
    assert m0.get_title() == "M0\nSGD: 8 of 15 settings so far"
    circled = [c for c in m0.collections if len(c.get_offsets()) and c.get_sizes()[0] == 60]
    adagrad = figures.setting_means(inp).query("benchmark == 'M0' and optimizer == 'adagrad'")
    assert len(circled) == 1 and float(circled[0].get_offsets()[0][0]) in set(adagrad.eta0)  # AdaGrad's only


def test_tuning_cost_axis_says_settings(saved, tmp_path, monkeypatch, inp):
    monkeypatch.setattr(common, "GRID_DIR", GRIDS)
    assert figures.beyond_tuning_cost(inp, tmp_path)
    fig = saved[0]
    assert {a.get_xlabel() for a in fig.axes if a.axison} == {figures.COST_AXIS}
    assert "settings" in figures.COST_AXIS and "runs" not in figures.COST_AXIS
    assert {"SGD (15 settings)", "AdaGrad (17 settings)"} <= set(legend_texts(fig))  # the grid sizes


# -- the synthetic figures ----------------------------------------------------------------------
@pytest.fixture
def closed(monkeypatch) -> list:
    """Figures closed by the heatmap modules (each closes its figure after saving it)."""
    seen = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: seen.append(fig) or close(fig))
    return seen


def test_paper2_fig1_panels_from_dense_to_sparse(tmp_path, closed):
    rows = [{"figure": 1, "p_nz": p, "sigma": s, "n": n, "rule": "eq4", "eta": 1.0, "relative_gain": 1.0 / n}
            for p in (0.01, 0.1, 1.0) for s in (0.1, 1.0) for n in (1, 10, 100)]
    paper2_figs.draw_fig1(pd.DataFrame(rows), tmp_path / "f1.png")
    titles = [a.get_title() for a in closed[0].axes]
    assert titles == ["non-zero fraction p = 1 (dense)", "non-zero fraction p = 0.1", "non-zero fraction p = 0.01"]


def _suite_1d_result() -> dict:
    from synthetic import suite_1d

    rows = [(suite_1d._LabelSetting("sgd", "sgd(eta0=0.1, gamma=1)"), n) for n in (1, 10)]
    rows += [(suite_1d._LabelSetting("vsgd_exact", "vsgd_exact"), n) for n in (1, 10)]
    cases = [suite_1d.Case("quad", a, 1.0) for a in (0.1, 1.0)]
    gain = np.random.default_rng(0).normal(size=(len(rows), len(cases), 5, 4))
    return {"gain": gain, "rows": rows, "cases": cases, "checkpoints": [1, 2, 4, 8], "measure": "excess"}


def test_suite_1d_heatmap_has_a_colour_bar_and_readable_rows(tmp_path, closed):
    res = _suite_1d_result()
    heatmaps.draw_heatmaps(res, tmp_path / "h.png")
    fig = closed[0]
    image, bar = fig.axes
    assert bar.get_ylabel().startswith("log10(initial / current loss)")
    rows = [t.get_text() for t in image.get_yticklabels()]
    assert rows == ["SGD η0=0.1 γ=1, n=1", "SGD η0=0.1 γ=1, n=10", "vSGD-l, exact curvature, n=1",
                    "vSGD-l, exact curvature, n=10"]
    scales = heatmaps.column_scales(res["gain"])
    assert [t.get_text() for t in image.get_xticklabels()] == [f"A={a:g} σ²=1  s={v:.2g}" for a, v in
                                                               zip((0.1, 1.0), scales)]
    assert min(t.get_fontsize() for t in image.get_yticklabels() + image.get_xticklabels()) >= 6.5
    assert fig.get_figwidth() < 16  # shown whole, the labels keep their size


def _unit_suite_result() -> unit_suite.SuiteResult:
    cases = [unit_suite.Case("quad_convex", "none", 1.0)]
    gain = np.zeros((3, 1, 4, 3))
    gain[0] += 1.0
    return unit_suite.SuiteResult(["vsgd_l", "sgd_schedulefree", "adam"], ["rule", "torch", "torch"], cases,
                                  [1, 2, 4], gain, [1.0, 1.0, 1.0])


def test_unit_suite_summary_uses_display_names(tmp_path, closed):
    unit_suite_figures.draw_summary(_unit_suite_result(), tmp_path / "s.png")
    ax = closed[0].axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["vSGD-l", "SF-SGD", "Adam"]


def test_unit_suite_heatmap_has_a_colour_bar_and_display_names(tmp_path, closed):
    res = _unit_suite_result()
    unit_suite_figures.draw_grid(res, [0], tmp_path / "g.png", "t", lambda c: c.prototype)
    image, bar = closed[0].axes
    assert bar.get_ylabel().startswith("log10(initial / current loss)")
    assert [t.get_text() for t in image.get_yticklabels()] == [
        "vSGD-l (our rule, 4 runs)", "SF-SGD (PyPI, 4 runs)", "Adam (PyPI, 4 runs)"]
