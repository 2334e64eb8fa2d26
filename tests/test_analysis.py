"""The analysis on the checked-in fixture store (tests/fixtures/records, written by tests/fixtures/make_fixtures.py).

Expected values are recomputed here from the raw JSON records by plain code, never copied in.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import common, devices, fidelity, tables, wall_time
from analysis.__main__ import run as run_analysis
from experiments import results

FIXTURES = Path(__file__).resolve().parent / "fixtures"
STORE = FIXTURES / "records"
GRIDS = FIXTURES / "grid"


@pytest.fixture(scope="module")
def inp() -> tables.Inputs:
    return tables.Inputs.from_frame(results.load(STORE, with_curves=True), grid_dir=GRIDS)


@pytest.fixture(scope="module")
def raw() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(STORE.glob("*/*/*.json"))]


def paper_rows() -> list[dict]:
    with open(common.REFERENCE / "paper_table1.csv") as f:
        return list(csv.DictReader(f))


# -- Table 1 ------------------------------------------------------------------------------------
def test_table1_one_row_per_benchmark_and_tuned_method(inp, raw):
    t1 = tables.table1(inp)
    expected = {(r["benchmark"], r["optimizer"]) for r in raw if not r["optimizer"].startswith("vsgd")}
    assert set(zip(t1.benchmark, t1.method)) == expected
    assert {"benchmark", "method", "mean", "std", "n_seeds", "paper", "bold", "edge"} <= set(t1.columns)


def test_table1_best_is_lowest_mean_test_error_over_first_two_seeds(inp, raw):
    by_setting = defaultdict(list)
    for r in raw:
        by_setting[(r["benchmark"], r["optimizer"], tuple(sorted(r["hp"].items())))].append((r["seed"], r["test_error"]))
    best = {}
    for (b, m, hp), runs in by_setting.items():
        score = np.mean([e for _, e in sorted(runs)[:2]])
        if m.startswith("vsgd"):
            continue
        if (b, m) not in best or score < best[(b, m)][1]:
            best[(b, m)] = (dict(hp), score)
    t1 = tables.table1(inp)
    for _, row in t1.iterrows():
        hp, score = best[(row.benchmark, row.method)]
        assert row["mean"] == pytest.approx(score)
        assert all(row[f"hp_{k}"] == pytest.approx(v) for k, v in hp.items())
        assert row.n_seeds == 2


def test_table1_rank_of_the_papers_setting(inp, raw):
    scores = defaultdict(list)
    for r in raw:
        scores[(r["benchmark"], r["optimizer"], tuple(sorted(r["hp"].items())))].append((r["seed"], r["test_error"]))
    paper = {(r["benchmark"], r["method"]): float(r["eta0"]) for r in paper_rows()}
    t1 = tables.table1(inp)
    checked = 0
    for _, row in t1.iterrows():
        mine = {hp: np.mean([e for _, e in sorted(runs)[:2]]) for (b, m, hp), runs in scores.items()
                if (b, m) == (row.benchmark, row.method)}
        at_paper = [v for hp, v in mine.items() if dict(hp)["eta0"] == pytest.approx(paper[(row.benchmark, row.method)])
                    and (row.method != "sgd" or dict(hp)["gamma"] == pytest.approx(row.paper_gamma))]
        if len(at_paper) != 1:
            assert np.isnan(row.paper_setting_rank)
            continue
        assert row.paper_setting_rank == 1 + sum(v < at_paper[0] for v in mine.values())
        checked += 1
    assert checked >= 2
    assert " (rank " in tables.table1_markdown(t1)


def test_edge_flags_on_a_grid():
    grid = {"eta0": [0.01, 0.03, 0.1], "gamma": [0.0, 0.5, 1.0], "tau": [10.0]}
    assert tables.edge_flags((("eta0", 0.1), ("gamma", 0.5)), grid) == ["eta0 high"]
    assert tables.edge_flags((("eta0", 0.01), ("gamma", 1.0)), grid) == ["eta0 low", "gamma high"]
    assert tables.edge_flags((("eta0", 0.03), ("gamma", 0.0), ("tau", 10.0)), grid) == []  # 0 and 1-value grids


def test_edge_flags_in_table1(inp):
    t1 = tables.table1(inp).set_index(["benchmark", "method"])
    grid = common.load_grid("sgd", GRIDS)
    c0 = t1.loc[("C0", "sgd")]
    assert c0.hp_eta0 == min(grid["eta0"]) and "eta0 low" in c0.edge  # best at the grid's low end
    m0 = t1.loc[("M0", "sgd")]
    assert min(grid["eta0"]) < m0.hp_eta0 < max(grid["eta0"]) and "eta0" not in m0.edge
    assert m0.grid_size == math.prod(len(v) for v in grid.values()) and m0.grid_source == "conf/grid"
    # AdaGrad has no grid file here: its grid is what the store holds, and C0's best is that grid's low end
    ada = t1.loc[("C0", "adagrad")]
    assert ada.grid_source == "store" and "eta0 low" in ada.edge


def test_missing_grid_dir_is_not_fatal():
    inp = tables.Inputs.from_frame(results.load(STORE), grid_dir=FIXTURES / "no-such-dir")
    t1 = tables.table1(inp)
    assert len(t1) and set(t1.grid_source) == {"store"}


# -- Tables 2 and 3 -----------------------------------------------------------------------------
def test_table23_records_are_at_the_papers_setting(inp, raw):
    recs = tables.table23_records(inp)
    paper = {(r["benchmark"], r["method"]): r for r in paper_rows()}
    for (b, m), g in recs.groupby(["benchmark", "optimizer"]):
        if m.startswith("vsgd"):
            assert len(g) == sum(r["benchmark"] == b and r["optimizer"] == m for r in raw)
            continue
        row = paper[(b, m)]
        assert np.allclose(g.hp_eta0, float(row["eta0"]))
        if row["gamma_times_ntrain"]:
            assert np.allclose(g.hp_gamma, float(row["gamma_times_ntrain"]))
        assert set(g.setting_source) == {"paper"}


@pytest.mark.parametrize("split", ["train", "test"])
def test_bold_matches_a_welch_test_by_hand(inp, split):
    t = tables.table23(inp, split)
    recs = tables.table23_records(inp)
    n_nonbest_bold = n_nonbest_plain = 0
    for bench, sub in t.groupby("benchmark"):
        samples = {m: recs[(recs.benchmark == bench) & (recs.optimizer == m)][f"{split}_error"].to_numpy(float)
                   for m in sub.method}
        best = min(samples, key=lambda m: samples[m].mean())
        assert sub.set_index("method").loc[best, "best"]
        a = samples[best]
        for m, b in samples.items():
            row = sub.set_index("method").loc[m]
            assert row["mean"] == pytest.approx(b.mean()) and row["std"] == pytest.approx(b.std(ddof=1))
            assert row.n_seeds == len(b)
            if m == best:
                assert row.bold
                continue
            va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)  # Welch's t and Welch-Satterthwaite df
            t_stat = (a.mean() - b.mean()) / math.sqrt(va + vb)
            df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
            p = 2 * stats.t.sf(abs(t_stat), df)
            assert row.p_value == pytest.approx(p, rel=1e-6)
            assert row.bold == (p >= tables.ALPHA)
            n_nonbest_bold += row.bold
            n_nonbest_plain += not row.bold
    if split == "test":  # the fixture is built to have both cases
        assert n_nonbest_bold > 0 and n_nonbest_plain > 0


def test_welch_edge_cases():
    assert tables.welch_p(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 1.0
    assert tables.welch_p(np.array([1.0, 1.0]), np.array([2.0, 2.0])) == 0.0
    assert math.isnan(tables.welch_p(np.array([1.0]), np.array([2.0, 3.0])))


def test_table23_paper_values_and_settings_row(inp):
    t = tables.table23(inp, "test")
    paper = pd.read_csv(common.REFERENCE / "paper_tables.csv")
    for _, r in t.iterrows():
        p = paper[(paper.split == "test") & (paper.benchmark == r.benchmark) & (paper.method == r.method)].value
        assert r.paper == pytest.approx(float(p.iloc[0]))
        assert r["diff"] == pytest.approx(r["mean"] - r.paper)
    n = t.drop_duplicates("method").set_index("method").n_settings
    assert n["vsgd_l"] == 1 and n["vsgd_b"] == 1
    assert n["sgd"] == common.grid_size(common.load_grid("sgd", GRIDS))
    assert n["adagrad"] == common.PAPER_SETTINGS["adagrad"]  # no grid file: the paper's count


def test_written_tables(inp, tmp_path):
    paths = tables.write_all(inp, tmp_path)
    assert {p.name for p in paths} == {f"table{i}.{e}" for i in (1, 2, 3) for e in ("csv", "md", "tex")}
    t3 = pd.read_csv(tmp_path / "table3.csv")
    assert {"benchmark", "method", "mean", "std", "n_seeds", "paper", "bold"} <= set(t3.columns)
    md = (tmp_path / "table3.md").read_text().splitlines()
    n_bench = t3.benchmark.nunique()
    body = [line for line in md if line.startswith("| ") and not line.startswith("| Table")]
    assert len(body) == 2 * n_bench + 2 and body[-2].startswith("| #settings (grid size)")
    assert body[-1].startswith("| grid searched by us on")
    n_methods = t3.method.nunique()
    assert all(line.count("|") == n_methods + 2 for line in body)
    assert sum(line.count("**") for line in md) == 2 * int(t3.bold.sum())
    tex = (tmp_path / "table3.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and tex.count(r"\mathbf") == int(t3.bold.sum())
    assert "†" in (tmp_path / "table3.md").read_text()  # C0 is on the approximate copy in the fixture


def test_written_tables_from_precomputed(inp, tmp_path):
    """python -m analysis hands write_all the tables it computed already: the files are the same."""
    tables.write_all(inp, tmp_path / "fresh")
    t1 = tables.table1(inp)
    tabs = {n: tables.table23(inp, split, t1) for n, split in tables.SPLITS.items()}
    paths = tables.write_all(inp, tmp_path / "given", t1, tabs)
    assert len(paths) == 9
    for p in paths:
        assert p.read_bytes() == (tmp_path / "fresh" / p.name).read_bytes()


# -- fidelity -----------------------------------------------------------------------------------
def test_t_interval_matches_scipy():
    x = np.array([7.4, 7.6, 7.5, 7.7, 7.3])
    lo, hi = fidelity.t_interval(x.mean(), x.std(ddof=1), len(x))
    ref = stats.t.interval(0.99, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert (lo, hi) == pytest.approx(ref)
    assert all(math.isnan(v) for v in fidelity.t_interval(7.5, np.nan, 1))


def test_fidelity_verdicts():
    t = pd.DataFrame([
        {"benchmark": "M0", "method": "a", "mean": 7.5, "std": 0.1, "n_seeds": 10, "paper": 7.52, "diff": -0.02,
         "data_original": True},
        {"benchmark": "M0", "method": "b", "mean": 7.5, "std": 0.1, "n_seeds": 10, "paper": 8.0, "diff": -0.5,
         "data_original": True},
        {"benchmark": "C0", "method": "a", "mean": 61.0, "std": np.nan, "n_seeds": 1, "paper": 61.06, "diff": -0.06,
         "data_original": False},
    ])
    c = fidelity.cells({3: t}).set_index(["benchmark", "method"])
    half = stats.t.ppf(0.995, 9) * 0.1 / math.sqrt(10)
    assert c.loc[("M0", "a"), "ci_high"] == pytest.approx(7.5 + half)
    assert c.loc[("M0", "a"), "verdict"] == "inside" and c.loc[("M0", "b"), "verdict"] == "outside"
    assert c.loc[("C0", "a"), "verdict"] == "untestable" and c.loc[("C0", "a"), "approx_data"]
    r = fidelity.rankings({3: t})
    assert r.iloc[0].ours == "a < b" or r.iloc[0].ours == "b < a"  # equal means: stable order
    assert r.iloc[0].paper == "a < b"


# -- figures and the whole command --------------------------------------------------------------
def test_figures_and_main_write_every_file(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "GRID_DIR", GRIDS)
    monkeypatch.setattr(tables.common, "GRID_DIR", GRIDS)
    written, failed = run_analysis(STORE, tmp_path)
    assert failed == []
    names = {p.name for p in written}
    for f in ("fig3_mnist_train_vs_test", "supp_fig4_cifar_train_vs_test", "supp_fig5_all_train_vs_test",
              "supp_fig6_learning_rates", "supp_fig7_test_all_settings", "supp_fig8_train_all_settings",
              "beyond_tuning_cost"):
        for ext in ("png", "pdf"):
            assert f"{f}.{ext}" in names
            assert (tmp_path / "figures" / f"{f}.{ext}").stat().st_size > 5000
    assert {"table1.md", "table2.tex", "table3.csv", "fidelity.md", "wall_time.md"} <= names


def test_empty_store_writes_nothing_and_does_not_fail(tmp_path):
    written, failed = run_analysis(tmp_path / "empty-store", tmp_path / "out")
    assert written == [] and failed == []


# -- ./reproduce.sh -----------------------------------------------------------------------------
def test_reproduce_sh_help_and_unknown_target():
    import subprocess

    script = Path(__file__).resolve().parent.parent / "reproduce.sh"
    ok = subprocess.run(["bash", str(script), "--help"], check=False, capture_output=True, text=True)
    assert ok.returncode == 0
    for target in ("quick", "table1", "table2", "table3", "fig2", "figures", "suite_1d", "beyond", "unit_suite", "all",
                   "restore"):
        assert f"  {target} " in ok.stdout
    bad = subprocess.run(["bash", str(script), "no-such-target"], check=False, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown target 'no-such-target'" in bad.stderr
    assert bad.stderr.count("\n") == 1  # one clear error, no usage dump, no traceback


def test_other_modules_are_called_through_the_documented_entry_points(tmp_path, monkeypatch):
    import sys
    import types

    import analysis.__main__ as entry

    calls = {}

    def draw_all(store, out):
        calls["draw_all"] = (store, out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "a.png").write_bytes(b"a")
        return [out / "a.png"]

    def cli_main(argv=None):
        calls["cli"] = argv
        (Path(argv[-1]) / "b.png").write_bytes(b"b")

    def missing(store, out):
        raise FileNotFoundError(store / "synthetic" / "x.npz")

    def broken(store, out):
        raise RuntimeError("bug")

    fakes = {"fake_draw_all": {"draw_all": draw_all}, "fake_cli": {"main": cli_main},
             "fake_missing": {"main": missing}, "fake_broken": {"main": broken}}
    for name, attrs in fakes.items():
        mod = types.ModuleType(f"analysis.{name}")
        for k, v in attrs.items():
            setattr(mod, k, v)
        monkeypatch.setitem(sys.modules, f"analysis.{name}", mod)
    monkeypatch.setattr(entry, "EXTERNAL", tuple(f"analysis.{n}" for n in fakes) + ("analysis.not_there",))
    written, failed = entry.run(tmp_path / "empty-store", tmp_path / "out")
    assert calls["draw_all"] == (tmp_path / "empty-store", tmp_path / "out" / "figures")
    assert calls["cli"] == ["--store", str(tmp_path / "empty-store"), "--out", str(tmp_path / "out" / "figures")]
    # each figure once: a command-line module is credited with what it wrote, not with the whole folder
    assert sorted(p.name for p in written if p.suffix == ".png") == ["a.png", "b.png"]
    assert failed == ["analysis.fake_broken"]  # missing data and an absent module are notes, a bug is a failure


# -- wall time ----------------------------------------------------------------------------------
def test_wall_time_sums_the_records_of_each_cell_and_projects_to_ten_seeds(inp, raw):
    t23 = wall_time.table23_time(inp)
    recs = tables.table23_records(inp)
    assert len(t23) == recs.groupby(["benchmark", "optimizer"]).ngroups
    for r in t23.itertuples():
        keys = set(recs[(recs.benchmark == r.benchmark) & (recs.optimizer == r.method)].config_hash)
        secs = [x["seconds"] for x in raw if x["config_hash"] in keys]
        assert r.seconds == pytest.approx(sum(secs))
        assert r.seeds == len(secs)  # one record per seed at the cell's setting
        assert r.seconds_10_seeds == pytest.approx(sum(secs) / len(secs) * max(len(secs), 10))


def test_wall_time_prices_a_seed_from_the_cpu_records_of_a_cell_that_also_ran_on_a_gpu(tmp_path):
    """GPU seconds are not CPU seconds: the cost per seed (what analysis.coverage prices the rest with) comes
    from a mixed cell's CPU records, the measured total from all of them, and the device column counts both."""
    store = tmp_path / "store"
    template = json.loads(next(STORE.glob("M0/*/*.json")).read_text())
    for seed, (device, secs) in enumerate([("cpu", 90.0), ("cpu", 110.0), ("NVIDIA H200", 7.0), ("NVIDIA H200", 9.0)]):
        results.write_record(store, {**template, "optimizer": "adam", "hp": {}, "seed": seed, "device": device,
                                     "seconds": secs, "config_hash": f"adam-{seed}"})
    t23 = wall_time.table23_time(tables.Inputs.from_frame(results.load(store), grid_dir=GRIDS))
    row = t23.set_index("method").loc["adam"]
    assert (row.seeds, row.seconds) == (4, pytest.approx(216.0))
    assert row.seconds_per_seed == pytest.approx(100.0)  # (90 + 110) / 2, not 216 / 4
    assert row.seconds_10_seeds == pytest.approx(1000.0)
    assert row.devices == "NVIDIA H200 x2, cpu x2"


def test_devices_compares_the_cpu_seeds_of_a_mixed_cell_with_the_others(tmp_path):
    store = tmp_path / "store"
    template = json.loads(next(STORE.glob("M0/*/*.json")).read_text())
    errors = {"cpu": [2.0, 2.2, 2.1], "NVIDIA H200": [2.5, 2.7]}
    runs = [(device, err) for device, errs in errors.items() for err in errs]
    for seed, (device, err) in enumerate(runs):
        results.write_record(store, {**template, "optimizer": "adam", "hp": {}, "seed": seed, "device": device,
                                     "test_error": err, "config_hash": f"adam-{seed}"})
    for seed in range(3):  # a cell run on one device alone is not compared
        results.write_record(store, {**template, "optimizer": "cocob", "hp": {}, "seed": seed, "config_hash": f"c-{seed}"})
    t = devices.compare(tables.Inputs.from_frame(results.load(store), grid_dir=GRIDS))
    assert set(t.method) == {"adam"} and list(t.split) == ["train", "test"]
    test = t[t.split == "test"].iloc[0]
    assert (test.n_cpu, test.n_other, test.other) == (3, 2, "NVIDIA H200")
    assert test.welch_p == pytest.approx(stats.ttest_ind(errors["cpu"], errors["NVIDIA H200"], equal_var=False).pvalue)
    assert "| M0 | Adam | test | 3, 2.10 ± 0.10 | NVIDIA H200, 2, 2.60 ± 0.14 |" in devices.markdown(t)


def test_wall_time_of_the_grids_counts_the_first_two_seeds_and_projects_to_the_grid(inp, raw):
    t1 = wall_time.table1_time(inp)
    assert set(zip(t1.benchmark, t1.method)) == {(x["benchmark"], x["optimizer"]) for x in raw
                                                   if not x["optimizer"].startswith("vsgd")}
    for r in t1.itertuples():
        secs = [x["seconds"] for x in raw
                if (x["benchmark"], x["optimizer"]) == (r.benchmark, r.method) and x["seed"] < 2]
        assert (r.members, r.seconds) == (len(secs), pytest.approx(sum(secs)))
        size = common.grid_size(inp.grids[r.method])  # the fixture has SGD's grid file only
        if size is None:
            assert math.isnan(r.seconds_full_grid)  # no grid file: nothing to project to
        else:
            assert r.seconds_full_grid == pytest.approx(np.mean(secs) * size * 2)


def test_wall_time_prices_the_grids_left_at_the_gpus_measured_rate(tmp_path):
    """The H100 column: the members left in one chunk, at the rate interpolated linearly in K."""
    measured = [(1, 2_000.0), (10, 20_000.0), (100, 90_000.0), (2000, 95_000.0)]
    assert wall_time.rate_at(measured, 10) == 20_000.0 and wall_time.rate_at(measured, 5000) == 95_000.0
    assert wall_time.rate_at(measured, 55) == pytest.approx(55_000.0)
    assert wall_time.gpu_seconds(950, 360_000, measured) == pytest.approx(950 * 360_000 / (90_000 + 5_000 * 850 / 1900))
    assert wall_time.gpu_seconds(1, 360_000, measured) == pytest.approx(360_000 / 2_000)
    assert wall_time.gpu_seconds(0, 360_000, measured) == 0.0
    assert math.isnan(wall_time.gpu_seconds(10, 360_000, None))
    csv_path = tmp_path / "roofline_gpu.csv"
    pd.DataFrame([{"device": "cuda", "benchmark": "M2", "rule": "smd", "K": K, "updates_per_s": r} for K, r in measured]
                 + [{"device": "cpu", "benchmark": "M2", "rule": "sgd", "K": 1, "updates_per_s": 1.0}]).to_csv(csv_path)
    assert wall_time.gpu_rates(csv_path) == {("M2", "smd"): measured}  # CPU rows are not the GPU's


def test_wall_time_lists_the_papers_methods_that_were_never_run(inp):
    t23 = wall_time.table23_time(inp)
    missing = wall_time.not_run(inp, t23)
    have = set(zip(t23.benchmark, t23.method))
    expected = {(b, m) for _s, b, m in inp.paper if (b, m) not in have}
    assert {(b, m) for b, ms in missing.items() for m in ms} == expected
    md = wall_time.markdown(t23, wall_time.table1_time(inp), missing)
    for b in missing:
        assert b in md.split("Not run at all")[1]


def test_store_of_only_hyperparameter_free_records(tmp_path):
    """A store whose records all have hp = {} (e.g. `./reproduce.sh beyond optimizers=[adam]`) has no hp_
    columns at all; every row's setting is then the empty setting, and the tables and figures still draw."""
    store = tmp_path / "store"
    template = json.loads(next(STORE.glob("M0/*/*.json")).read_text())
    for seed in range(3):
        results.write_record(store, {**template, "optimizer": "adam", "hp": {}, "seed": seed,
                                     "config_hash": f"adam-{seed}", "test_error": 8.0 + 0.1 * seed})
    df = common.prepare(results.load(store))
    assert df.setting.tolist() == [(), (), ()]
    assert common.setting_text(df.setting.iloc[0]) == "(defaults)"
    _, failed = run_analysis(store, tmp_path / "out")
    assert failed == []
    row = pd.read_csv(tmp_path / "out" / "table3.csv").set_index("method").loc["adam"]
    assert (row.n_seeds, row.setting, row.n_settings) == (3, "(defaults)", 1)
    assert math.isclose(row["mean"], 8.1) and row.best


def test_analysis_of_a_fresh_clone_restores_the_committed_records(tmp_path, monkeypatch):
    """The project's own store is synced with results/records first; a records folder of another results
    version is reported as one failed part, and the store is still analysed."""
    store, records = tmp_path / "store", tmp_path / "records"
    monkeypatch.setattr(results, "DEFAULT_STORE", store)
    monkeypatch.setattr(results, "DEFAULT_RECORDS", records)
    import shutil

    shutil.copytree(STORE, tmp_path / "fixture")  # sync stamps both folders: leave the checked-in one as it is
    results.sync(tmp_path / "fixture", records)  # what a clone has: the records, no store
    written, failed = run_analysis(None, tmp_path / "out")
    assert failed == [] and (tmp_path / "out" / "table3.csv") in written
    assert len(results.load(store)) == len(results.load(STORE))
    (records / "RESULTS_VERSION").write_text("0\n")
    written, failed = run_analysis(None, tmp_path / "out2")
    assert failed == ["records"] and (tmp_path / "out2" / "table3.csv") in written


def test_analysis_warns_before_writing_tables_with_fewer_members(tmp_path, caplog):
    """Over tables with more members than the store holds (a clone whose records lag the committed
    tables), the analysis says which cells the new tables lack, and still writes them."""
    import shutil

    out = tmp_path / "out"
    out.mkdir()
    for name in ("table1.csv", "table2.csv", "wall_time.csv"):
        shutil.copy(Path(__file__).resolve().parents[1] / "results" / name, out / name)
    with caplog.at_level(logging.WARNING, logger="analysis"):
        written, failed = run_analysis(STORE, out)
    assert failed == [] and out / "table2.csv" in written
    warning = [r.getMessage() for r in caplog.records if "fewer members than the tables" in r.getMessage()]
    assert len(warning) == 1 and "./reproduce.sh restore" in warning[0] and "M0 adam," in warning[0]


def test_one_seed_cell_reads_mean_and_1_seed_not_a_dash_for_std(inp):
    """A cell with one seed has no std: Tables 2/3 print "8.38 (1 seed)", never "8.38 ± –"."""
    t = tables.table23(inp, "test", tables.table1(inp)).reset_index(drop=True)
    t.loc[0, ["n_seeds", "std", "bold"]] = [1, np.nan, False]
    md, tex = tables.table23_markdown(t, "test", 3), tables.table23_latex(t, "test", 3)
    one = f"{t.loc[0, 'mean']:.2f}"
    assert "± –" not in md and r"\pm –" not in tex
    assert f"| {one}" in md and "(1 seed)" in md and md.count("(1 seed)") == 1
    assert f"${one}$" in tex and tex.count("(1 seed)") == 1
    assert md.count(" ± ") == int(t.n_seeds.gt(1).sum())  # every other cell keeps its mean ± std
