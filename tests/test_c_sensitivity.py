"""Supp. Figs. 9-10 (sensitivity to C): the instability test, the critical C, the step-0 checkpoint, the XOR
entry and the figure module on a tiny store (analysis/c_sensitivity.py, synthetic/c_sensitivity.py)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from omegaconf import OmegaConf

from analysis import c_sensitivity as cs
from experiments import results
from experiments.mlp import EnsembleMLP, glorot_init
from experiments.trainer import Member, train_ensemble
from synthetic.c_sensitivity import critical_c_xor, xor_dataset, xor_spec
from vsgd.core import get_rule


def curve(*losses: float) -> list[dict]:
    return [{"step": 100 * i, "epoch": i / 10, "train_loss": v, "test_error": 50.0} for i, v in enumerate(losses)]


# -- the definition of "unstable" on constructed runs ------------------------------------------------
@pytest.mark.parametrize(("losses", "diverged", "expected"), [
    ((2.3, 1.0, 0.5), False, False),          # a stable run lowers its loss
    ((2.3, 2.3, 2.3), False, False),          # a run that never moves (C huge): ratio 1
    ((2.3, 4.6, 1.0), False, False),          # exactly 2x is not above 2x
    ((2.3, 4.61, 1.0), False, True),          # above 2x once, then recovered: still unstable
    ((2.3, 130.0, 25.0), False, True),        # the blow-up of vSGD-l at small C on M0
    ((2.3, 1.0, math.inf), False, True),      # a non-finite loss
    ((2.3, 1.0, math.nan), False, True),      # NaN counts as non-finite
    ((2.3, 1.0, 0.5), True, True),            # the runner's divergence flag (non-finite parameters)
])
def test_unstable_on_constructed_runs(losses, diverged, expected):
    assert cs.unstable(curve(*losses), diverged) is expected


def test_unstable_threshold_and_horizon():
    c = curve(1.0, 1.5, 1.0, 20.0)  # a blow-up only at step 300
    assert cs.unstable(c, False, blowup=1.25)
    assert cs.unstable(c, False, blowup=1.25, upto=100)              # 1.5 > 1.25 at step 100
    assert not cs.unstable(c, False, upto=200)                       # 2x: not within the first 200 steps
    assert cs.unstable(c, False, upto=300)
    assert not cs.unstable(c, False, blowup=math.inf)                # non-finite only: finite, so stable
    assert cs.loss_ratios(c) == [1.5, 1.0, 20.0]


def test_unstable_needs_the_step_0_point():
    with pytest.raises(ValueError, match="step 0"):
        cs.unstable(curve(1.0, 2.0)[1:], False)


# -- the critical C --------------------------------------------------------------------------------
def test_critical_c_is_the_largest_c_with_at_least_10_percent_unstable():
    assert cs.critical_c(pd.Series({1.0: 1.0, 10.0: 0.5, 100.0: 0.1, 1000.0: 0.0, 1e4: 0.0})) == (100.0, "")
    assert cs.critical_c(pd.Series({100.0: 0.0, 10.0: 0.3, 1000.0: 0.09})) == (10.0, "")  # any order; 9 % < 10 %
    # not monotone: the largest C with >= 10 % counts, as the paper defines it
    assert cs.critical_c(pd.Series({1.0: 1.0, 10.0: 0.0, 100.0: 0.2, 1000.0: 0.0})) == (100.0, "")
    assert cs.critical_c(pd.Series({1.0: 0.0, 10.0: 0.0})) == (1.0, "below")
    assert cs.critical_c(pd.Series({1.0: 1.0, 10.0: 0.1})) == (10.0, "at least")


def test_rule_c_and_benchmark_dimensions():
    assert cs.rule_c(7850) == 785.0 and cs.rule_c(5) == 1.0
    assert cs.n_params("M0") == 784 * 10 + 10
    assert cs.n_params("M1") == 784 * 120 + 120 + 120 * 10 + 10


# -- the step-0 checkpoint of the trainer ------------------------------------------------------------
def test_curve_start_records_the_initial_loss():
    data = xor_dataset(200, 50, 0.5)
    spec = xor_spec(4, 1e-4)
    members = [Member(0, {"c": 1.0}), Member(1, {"c": 1e6})]
    res = train_ensemble(spec, get_rule("vsgd_l"), members, data, epochs=0.5, eval_subset=200, curve_start=True)
    init = EnsembleMLP(spec).evaluate(glorot_init(spec, [0, 1]), data.x_train, data.y_train)[1]
    for r, loss0 in zip(res, init):
        assert r.curve[0]["step"] == 0
        assert r.curve[0]["train_loss"] == pytest.approx(float(loss0), rel=1e-5)
    # without it, the curve starts at the first logged checkpoint (unchanged behaviour)
    plain = train_ensemble(spec, get_rule("vsgd_l"), members[:1], data, epochs=0.5, eval_subset=200)
    assert plain[0].curve[0]["step"] > 0
    assert [p for p in plain[0].curve] == res[0].curve[1:]


# -- the XOR entry and the figure module on a tiny store ------------------------------------------------
def _xor_cfg(store, records=None, **over):
    s = {"widths": [3], "c": [0.1, 1e5], "updates": 60, "n_train": 300, "n_test": 50, "noise": 0.5, "data_seed": 0,
         "l2": 1e-4, "eval_subset": 300, "optimizer": "vsgd_l", "file": cs.XOR_FILE}
    s.update(over)
    cfg = {"store": str(store), "seeds": 2, "seed_offset": 0, "supp_fig9_xor": s}
    return OmegaConf.create(cfg if records is None else {**cfg, "records": records})


def _fake_record(store, bench, opt, c, seed, errors, experiment, epochs=6.0, steps=360000, curve_=None):
    rec = {"benchmark": bench, "optimizer": opt, "seed": seed, "hp": {"c": c}, "train_error": errors[-1],
           "test_error": errors[-1], "train_loss": 0.1, "test_loss": 0.1, "diverged": False, "diverged_step": None,
           "seconds": 16.0, "chunk_seconds": 16.0, "chunk_members": 1, "device": "cpu", "data_md5": "x",
           "data_original": True, "config_hash": f"{bench}{opt}{c}{seed}{epochs}", "epochs": epochs, "steps": steps,
           "experiment": experiment, "code_version": "t", "dtype": "float32",
           "curve": curve_ if curve_ is not None else [{"step": 60000 * ep, "epoch": float(ep), "test_error": e,
                                                        "train_error": e, "train_loss": 0.1, "test_loss": 0.1}
                                                       for ep, e in zip((1, 3, 6), errors)]}
    results.write_record(store, rec)


def test_xor_entry_resumes_and_the_figures_draw(tmp_path):
    store, out = tmp_path / "store", tmp_path / "results" / "figures"
    path = critical_c_xor(_xor_cfg(store))
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(rows) == 4 and {r["hp"]["c"] for r in rows} == {0.1, 1e5}
    assert all(r["curve"][0]["step"] == 0 and r["d"] == 5 * 3 + 2 for r in rows)
    critical_c_xor(_xor_cfg(store))  # everything is there: nothing is trained again
    assert len(path.read_text().splitlines()) == 4
    with pytest.raises(FileNotFoundError):
        cs.draw_fig10(store, out)  # no Supp. Fig. 10 records: a note, not a failure

    # M0 benchmark runs of Supp. Fig. 9 (10 seeds at C = 10 with one blow-up, all stable at C = 100) and a
    # longer run of one of them; Supp. Fig. 10 records on M0 at two C and the default
    for seed in range(10):
        blow = 5.0 if seed == 0 else 1.0
        _fake_record(store, "M0", "vsgd_l", 10.0, seed, [1.0], cs.FIG9_EXPERIMENT, epochs=0.05, steps=3000,
                     curve_=curve(2.3, blow, 0.9))
        _fake_record(store, "M0", "vsgd_l", 100.0, seed, [1.0], cs.FIG9_EXPERIMENT, epochs=0.05, steps=3000,
                     curve_=curve(2.3, 1.0, 0.9))
    _fake_record(store, "M0", "vsgd_l", 100.0, 0, [1.0], cs.FIG9_EXPERIMENT, epochs=0.5, steps=30000,
                 curve_=curve(2.3, 1.0, 0.9, 0.5))
    for opt in cs.VARIANTS:
        for c in (1.0, 1e3):
            _fake_record(store, "M0", opt, c, 0, [20.0, 12.0, 9.0] if c == 1.0 else [9.0, 8.0, 7.5],
                         cs.FIG10_EXPERIMENT)
        _fake_record(store, "M0", opt, 0.0, 0, [9.0, 8.0, 7.5], "table2")
    written = cs.draw_all(store, out)
    names = {p.name for p in written}
    assert {"supp_fig9_critical_c.png", "supp_fig9_critical_c.pdf", "supp_fig10_c_sensitivity.png",
            "supp_fig10_c_sensitivity.pdf", "supp_fig9_critical_c.csv", "supp_fig9_longer_runs.csv"} <= names
    table = pd.read_csv(out.parent / "supp_fig9_critical_c.csv").set_index("setup")
    assert table.loc["M0", "critical_c"] == 10.0 and table.loc["M0", "factor"] == pytest.approx(78.5)
    assert table.loc["M0", "unstable_per_c"] == "1/10 0/10"
    assert "XOR-3" in table.index
    longer = pd.read_csv(out.parent / "supp_fig9_longer_runs.csv")
    assert longer.verdicts_differ.tolist() == [0] and longer.runs.tolist() == [1]
    pts = cs.fig10_points(store)
    dflt = pts[pts.default & (pts.optimizer == "vsgd_l") & (pts.epoch == 6.0)]
    assert dflt.c.tolist() == [785.0] and dflt.test_error.tolist() == [7.5]


def test_xor_runs_are_committed_and_a_fresh_store_trains_none_of_them(tmp_path):
    """The XOR runs live outside the per-member store layout; they are kept in sync with a committed copy
    (records/synthetic/, as the runner's records) so that a fresh clone's store gets them back, trains nothing
    committed, and draws Supp. Fig. 9 with its XOR setups."""
    records = tmp_path / "records"
    first = critical_c_xor(_xor_cfg(tmp_path / "store1", records=str(records)))
    committed = records / "synthetic" / cs.XOR_FILE
    assert committed.read_text() == first.read_text() and len(committed.read_text().splitlines()) == 4
    fresh = tmp_path / "store2"  # a fresh clone: an empty store beside the committed records
    again = critical_c_xor(_xor_cfg(fresh, records=str(records), c=[0.1, 1e5, 10.0]))  # one C more
    lines = again.read_text().splitlines()
    assert lines[:4] == first.read_text().splitlines()  # restored as committed, not retrained
    assert len(lines) == 6 and {json.loads(x)["hp"]["c"] for x in lines[4:]} == {10.0}
    assert committed.read_text() == again.read_text()  # and the new runs are committed
    runs = cs.fig9_runs(fresh)
    assert sorted(runs.c.unique()) == [0.1, 10.0, 1e5] and set(runs.setup) == {"XOR-3"}


def test_sync_lines_takes_the_union_once_and_a_damaged_line_changes_nothing(tmp_path):
    key = lambda r: r["k"]
    store, records = tmp_path / "store" / "runs.jsonl", tmp_path / "records" / "runs.jsonl"
    store.parent.mkdir()
    records.parent.mkdir()
    store.write_text('{"k": 1, "v": "a"}\n{"k": 2, "v": "store"}\n')
    records.write_text('{"k": 2, "v": "records"}\n{"k": 3, "v": "c"}\n')
    assert results.sync_lines(store, records, key) == (1, 1)
    assert store.read_text() == '{"k": 1, "v": "a"}\n{"k": 2, "v": "store"}\n{"k": 3, "v": "c"}\n'
    assert records.read_text() == '{"k": 2, "v": "records"}\n{"k": 3, "v": "c"}\n{"k": 1, "v": "a"}\n'
    assert results.sync_lines(store, records, key) == (0, 0)  # idempotent
    before = (store.read_text(), records.read_text())
    with open(store, "a") as f:
        f.write('{"k": 4, "v": "cut off mid-wr')  # a run killed while appending
    with pytest.raises(results.DamagedLineError, match=r"runs.jsonl, line 4, is not a whole record.*Delete"):
        results.sync_lines(store, records, key)
    assert records.read_text() == before[1] and store.read_text().startswith(before[0])  # nothing rewritten


def test_draw_all_without_data_is_a_note(tmp_path):
    with pytest.raises(FileNotFoundError):
        cs.draw_all(tmp_path / "nothing", tmp_path / "figures")
