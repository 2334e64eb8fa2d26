"""Table 1 says what we searched (issue 33, section 1): a row is "ours" only where every point of the
grid ran; a copied row is never bold and never "(same)"; Tables 2-3 use our pick where we searched, with
the paper's setting beside it where the two differ. Built on the fixture store (tests/fixtures/records)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import common, tables
from experiments import results

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _inputs(tmp_path: Path, grid_yaml: str | None, worsen_paper_m0: float = 0.0) -> tables.Inputs:
    grid_dir = tmp_path / "grid"
    grid_dir.mkdir()
    if grid_yaml:
        (grid_dir / "sgd.yaml").write_text(grid_yaml)
    df = results.load(FIXTURES / "records")
    if worsen_paper_m0:  # make another setting win M0's SGD search
        paper = common.paper_table1(common.REFERENCE)[("M0", "sgd")]
        at = (df.benchmark == "M0") & (df.optimizer == "sgd") & np.isclose(df.hp_eta0, paper["eta0"]) & \
            np.isclose(df.hp_gamma, paper["gamma"])
        df.loc[at, "test_error"] += worsen_paper_m0
    return tables.Inputs.from_frame(df, grid_dir=grid_dir)


M0_GRID = "eta0: [0.01, 0.03, 0.1, 0.3]\ngamma: [0.0, 1.0]\n"  # exactly the 8 M0 SGD settings in the fixture


def test_a_grid_not_run_in_full_is_the_papers_pick_never_bold(tmp_path):
    inp = _inputs(tmp_path, "eta0: [0.003, 0.01, 0.03, 0.1, 0.3]\ngamma: [0.0, 0.5, 1.0]\n")
    t1 = tables.table1(inp)
    sgd = t1[t1.method == "sgd"].set_index("benchmark")
    assert not sgd.searched.any() and set(sgd.pick) == {"paper"} and not sgd.bold.any()
    md = tables.table1_markdown(t1)
    assert "(same)" not in md and "**" not in md
    assert md.count("the paper's (copied, not searched)") == len(t1)
    t3 = tables.table23(inp, "test", t1)
    assert set(t3[t3.method == "sgd"].setting_source) == {"paper"}
    assert "‡" in tables.table23_markdown(t3, "test", 3) and "§" not in tables.table23_markdown(t3, "test", 3)


def test_a_grid_run_in_full_is_ours_and_bold_when_it_agrees(tmp_path):
    t1 = tables.table1(_inputs(tmp_path, M0_GRID))
    m0 = t1.set_index(["benchmark", "method"]).loc[("M0", "sgd")]
    assert m0.searched and m0.pick == "ours" and m0.bold  # the fixture's best is the paper's setting
    assert m0.seeds_per_setting == 2 and m0.n_settings_tried == m0.grid_size == 8
    c0 = t1.set_index(["benchmark", "method"]).loc[("C0", "sgd")]
    assert not c0.searched  # C0 ran eta0 0.003 and 0.01 only: most of this grid is missing
    assert "(same)" in tables.table1_markdown(t1)


def test_tables_2_3_use_our_pick_with_the_papers_setting_beside(tmp_path):
    inp = _inputs(tmp_path, M0_GRID, worsen_paper_m0=5.0)
    t1 = tables.table1(inp)
    m0 = t1.set_index(["benchmark", "method"]).loc[("M0", "sgd")]
    assert m0.searched and not m0.bold  # our pick now differs from the paper's
    t3 = tables.table23(inp, "test", t1).set_index(["benchmark", "method"])
    cell = t3.loc[("M0", "sgd")]
    assert cell.setting_source == "ours" and cell.setting == m0.setting
    df = inp.df
    ours = df[(df.benchmark == "M0") & (df.optimizer == "sgd") & (df.setting == m0.setting_key)]
    assert cell.n_seeds == len(ours) and cell["mean"] == pytest.approx(ours.test_error.mean())
    paper = common.paper_table1(common.REFERENCE)[("M0", "sgd")]
    at = df[(df.benchmark == "M0") & (df.optimizer == "sgd") & np.isclose(df.hp_eta0, paper["eta0"])
            & np.isclose(df.hp_gamma, paper["gamma"])]
    assert cell.paper_setting_n_seeds == len(at) == 10
    assert cell.paper_setting_mean == pytest.approx(at.test_error.mean())
    md = tables.table23_markdown(t3.reset_index(), "test", 3)
    assert "§" in md and f"- M0 SGD§: our pick {m0.setting}; at the paper's setting" in md
    assert "grid searched by us on | no tuning | no tuning | M0 |" in md


def test_a_pick_below_ten_seeds_gets_the_command_that_trains_it(tmp_path):
    """``./reproduce.sh table1/table2/all`` bring each pick of a grid searched in full to 10 seeds: the command
    gives the pick's every hyper-parameter as an override (``experiment=table2`` would train the paper's), and a
    pick at 10 seeds gives none."""
    from analysis import coverage

    inp = _inputs(tmp_path, M0_GRID, worsen_paper_m0=5.0)
    m0 = tables.table1(inp).set_index(["benchmark", "method"]).loc[("M0", "sgd")]
    cmds = [c for c in coverage.pick_commands(inp) if "benchmark=m0 optimizer=sgd " in c]
    assert len(cmds) == 1 and cmds[0].endswith(" seeds=10") and "experiment=" not in cmds[0]
    hp = {kv.split("=")[0][len("optimizer."):]: float(kv.split("=")[1]) for kv in cmds[0].split() if kv.startswith("optimizer.")}
    assert tuple(sorted(hp.items())) == tuple(sorted(m0.setting_key))  # exactly the pick, every hyper-parameter
    df = inp.df
    at = df[(df.benchmark == "M0") & (df.optimizer == "sgd") & (df.setting == m0.setting_key)]
    assert at.seed.nunique() < 10
    more = at.iloc[[0] * 10].assign(seed=range(100, 110))  # ten more seeds at the pick
    done = tables.Inputs.from_frame(pd.concat([df, more], ignore_index=True).drop(columns="setting"),
                                    grid_dir=tmp_path / "grid")
    assert not [c for c in coverage.pick_commands(done) if "benchmark=m0 optimizer=sgd " in c]


def test_a_row_not_searched_says_what_searching_it_would_cost(tmp_path):
    """Issue 33: a grid we did not search in full is the paper's row, with its projected cost in md, tex and csv
    (as results/wall_time.md prices it); a grid searched in full has nothing left."""
    from analysis import wall_time

    inp = _inputs(tmp_path, "eta0: [0.003, 0.01, 0.03, 0.1, 0.3]\ngamma: [0.0, 0.5, 1.0]\n")  # not run in full
    t1 = wall_time.with_cost_left(inp, tables.table1(inp))
    grids = wall_time.table1_time(inp).set_index(["benchmark", "method"])
    row = t1.set_index(["benchmark", "method"]).loc[("M0", "sgd")]
    assert not row.searched and row.seconds_left_cpu == grids.loc[("M0", "sgd"), "seconds_left"] > 0
    text = common.duration_text(row.seconds_left_cpu) + " on this CPU"
    md, tex = tables.table1_markdown(t1), tables.table1_latex(t1)
    m0_md = next(line for line in md.splitlines() if line.startswith("| M0 | SGD |"))
    assert m0_md.endswith(f"| {text} |") and text in next(line for line in tex.splitlines() if line.startswith("M0 & SGD"))
    (tmp_path / "full").mkdir()
    done = _inputs(tmp_path / "full", M0_GRID)
    t1 = wall_time.with_cost_left(done, tables.table1(done))
    assert next(line for line in tables.table1_markdown(t1).splitlines() if line.startswith("| M0 | SGD |")).endswith("| – |")
