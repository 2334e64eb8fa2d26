"""The zoomed train-vs-test panels (Fig. 3, Supp. Fig. 4): a method far off the others goes on the top edge.

Drawn from the checked-in fixture store (tests/fixtures/records: SGD, AdaGrad, vSGD-l/b on M0 and C0) plus
synthetic records of two tuning-free optimizers on M0, written here: Adam near the others and Schedule-Free
SGD at 85 % test error (as SF-SGD on M2, which does not learn there), neither diverged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from analysis import figures, tables
from experiments import results

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXTRA = {"adam": 7.8, "sgd_schedulefree": 85.0}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tables.Inputs:
    root = tmp_path_factory.mktemp("scatter") / "records"
    shutil.copytree(FIXTURES / "records", root)
    template = json.loads(next(root.glob("M0/*/*.json")).read_text())  # a fixture record, its fields overridden
    for method, err in EXTRA.items():
        for seed in range(3):
            test = err + 0.1 * seed
            results.write_record(root, {**template, "optimizer": method, "hp": {}, "seed": seed, "diverged": False,
                                        "test_error": test, "train_error": test - 0.5,
                                        "config_hash": f"{method}-{seed}"})
    return tables.Inputs.from_frame(results.load(root), grid_dir=FIXTURES / "grid")


def test_far_cut_rule():
    assert figures._far_cut(np.array([2.0, 2.2, 2.4, 4.1])) > 4.1  # vSGD-g beside the others on M1 stays
    assert figures._far_cut(np.array([7.4, 7.5, 7.6, 8.5, 85.0])) < 85.0  # SF-SGD on M2 does not
    assert figures._far_cut(np.array([np.nan, 1.0])) == pytest.approx(3.0)  # non-finite values are ignored
    assert figures._far_cut(np.array([-1.0, 1.0])) == np.inf  # a signed quantity is never cut


def test_zoomed_panel_puts_a_far_method_on_the_top_edge(inputs, tmp_path, monkeypatch):
    seen = []
    save = figures._save
    monkeypatch.setattr(figures, "_save", lambda fig, out, stem: seen.append(fig) or save(fig, out, stem))
    assert figures.fig3_mnist(inputs, tmp_path)
    ax = next(a for a in seen[0].axes if a.axison and a.get_title().startswith("M0"))
    top = ax.get_ylim()[1]
    assert 7.8 < top < 85.0  # the cluster (Adam, the tuned baselines, vSGD) is in view, SF-SGD is not
    edge = [ln for ln in ax.lines if ln.get_marker() == "^"]
    assert len(edge) == 1
    assert edge[0].get_ydata()[0] == pytest.approx(top)
    assert to_rgba(edge[0].get_markeredgecolor()) == to_rgba(figures.style("sgd_schedulefree")["color"])
    legend = [t.get_text() for t in seen[0].legends[0].get_texts()]
    assert "off scale (top edge)" in legend
