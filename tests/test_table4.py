"""Table 4's family (issue 34 s4): the workloads build and train through the runner, records round-trip,
and the analysis builds Table 4 from a small store."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from analysis import table4
from experiments import results, workloads
from experiments.run import UserError, run

ROOT = Path(__file__).resolve().parents[1]
NAMES = sorted(p.stem for p in (ROOT / "conf" / "workload").glob("*.yaml"))


def cfg_for(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=["progress=false", "experiment=table4", *overrides])


def test_table4_lists_every_workload_and_method():
    cfg = cfg_for()
    assert sorted(cfg.workloads) == NAMES and len(NAMES) >= 4
    assert set(cfg.optimizers) == set(workloads.METHODS)


def test_every_workload_trains_one_step_through_the_runner(tmp_path, capsys):
    """One minibatch step of Adam and vSGD-fd on every workload, one of vSGD-l where its curvature covers the
    model; records written with curves, and a rerun finds them all."""
    over = [f"workloads=[{','.join(NAMES)}]", "optimizers=[adam,vsgd_fd,vsgd_l]", "seeds=1", "epochs=1e-6",
            f"store={tmp_path}"]
    df = run(cfg_for(*over))
    assert set(df.benchmark) == set(NAMES)
    for name in NAMES:
        got = df[df.benchmark == name]
        assert {"adam", "vsgd_fd"} <= set(got.optimizer), name
        assert (got.steps == 1).all() and not got.diverged.any()
        assert got.test_error.between(0, 100).all() and np.isfinite(got.train_loss.astype(float)).all()
    assert "vsgd_l" in set(df[df.benchmark == "sparse_logreg"].optimizer)  # a linear model: bbprop covers it
    rec = results.load(tmp_path / "workloads", with_curves=True)
    assert all(len(c) == 2 and c[0]["step"] == 0 and c[1]["step"] == 1 for c in rec.curve)
    assert (rec.family == "workloads").all()
    capsys.readouterr()
    again = run(cfg_for(*over))
    assert set(again.config_hash) == set(df.config_hash)
    assert " 0 to train" in capsys.readouterr().out


def test_records_round_trip(tmp_path):
    """The store's members go to the committed records and come back into an empty store unchanged."""
    store, records = tmp_path / "store", tmp_path / "records"
    run(cfg_for("workloads=[sparse_logreg]", "optimizers=[sgdm]", "sgdm_lr=[0.1]", "seeds=2", "epochs=0.01",
                f"store={store}", f"records={records}"))
    assert (records / "workloads" / "sparse_logreg" / "sgdm.jsonl").is_file()
    fresh = tmp_path / "fresh"
    results.sync(fresh, records / "workloads")
    a = results.load(store / "workloads", with_curves=True).sort_values("seed").reset_index(drop=True)
    b = results.load(fresh, with_curves=True).sort_values("seed").reset_index(drop=True)
    assert len(a) == 2
    pd.testing.assert_frame_equal(a[sorted(a.columns)], b[sorted(b.columns)])


def test_the_paper_tools_do_not_see_the_family(tmp_path):
    """Tables 1-3 read STORE/<benchmark>/<optimizer>: the family's folder is not a benchmark."""
    run(cfg_for("workloads=[sparse_logreg]", "optimizers=[adam]", "seeds=1", "epochs=1e-6", f"store={tmp_path}"))
    assert results.load(tmp_path).empty
    assert len(results.load(tmp_path / "workloads")) == 1


def test_bad_method_and_corpus_checksum_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="unknown method"):
        run(cfg_for("optimizers=[nosuch]", f"store={tmp_path}"))
    wl = workloads.workload_config("char_lstm") | {"sha256": "0" * 64}
    with pytest.raises(workloads.WorkloadError, match="sha256"):
        workloads.build_data(wl)


def _fake(store: Path, bench: str, opt: str, errs: list[float], hp: dict | None = None) -> None:
    for seed, e in enumerate(errs):
        rec = {"benchmark": bench, "optimizer": opt, "seed": seed, "hp": hp or {}, "family": "workloads",
               "train_error": e, "test_error": e, "train_loss": e / 100, "test_loss": e / 100,
               "diverged": not math.isfinite(e), "diverged_step": None, "seconds": 1.0, "steps": 10, "epochs": 1.0,
               "device": "cpu", "data_md5": "fake", "data_original": True, "dtype": "float32",
               "config_hash": hashlib.sha256(f"{bench} {opt} {seed} {sorted((hp or {}).items())}".encode()).hexdigest()[:16],
               "curve": [{"step": 0, "epoch": 0.0, "test_error": 90.0}, {"step": 10, "epoch": 1.0, "test_error": e}]}
        results.write_record(store, rec)


def test_analysis_builds_table4_from_a_tiny_store(tmp_path):
    store = tmp_path / "store"
    fam = store / "workloads"
    _fake(fam, "mnist_cnn", "adam", [2.0, 2.1, 2.05])
    _fake(fam, "mnist_cnn", "vsgd_fd", [8.0, 8.2, 7.9])
    _fake(fam, "mnist_cnn", "sgdm", [3.0, 3.1, 2.9], {"lr": 0.01, "momentum": 0.9})
    _fake(fam, "mnist_cnn", "sgdm", [1.9, 2.2, 2.0], {"lr": 0.1, "momentum": 0.9})
    _fake(fam, "mnist_cnn", "vsgd_l", [math.inf, 5.0, 5.0])
    out = tmp_path / "out"
    written = table4.write_all(store, out)
    assert {p.name for p in written} >= {"table4.md", "table4.tex", "table4.csv", "table4_curves.png",
                                          "table4_tuning_cost.png"}
    t = pd.read_csv(out / "table4.csv").set_index("method")
    assert t.loc["sgdm", "setting"] == "lr=0.1" and t.loc["sgdm", "n_settings"] == 2
    assert t.loc["sgdm", "tuning_runs"] == 6 and t.loc["adam", "tuning_runs"] == 0
    assert t.loc["sgdm", "bold"] and t.loc["adam", "bold"]  # 2.03 vs 2.05: not significantly different
    assert not t.loc["vsgd_fd", "bold"]  # 8.03 vs 2.03: significantly worse
    assert t.loc["vsgd_l", "n_diverged"] == 1 and t.loc["vsgd_l", "mean"] == pytest.approx(110 / 3)
    md = (out / "table4.md").read_text()
    assert "**2.03 ± 0.15**" in md and "8.03 ± 0.15" in md and "(1 div.)" in md


def test_vsgd_members_from_earlier_step_cap_defaults_get_their_own_rows():
    df = pd.DataFrame({"optimizer": ["vsgd_l", "vsgd_l", "vsgd_b", "adam", "vsgd_g"],
                       "front_end": [{"h_rel": 1.0}, {"h_rel": 1.0, "cap_step": True}, {"cap_step": False}, {"lr": 1e-3},
                                     {"cap_step": "checked"}]})
    assert list(table4.with_variants(df).optimizer) == ["vsgd_l_no_cap", "vsgd_l_cap_unchecked", "vsgd_b_no_cap",
                                                        "adam", "vsgd_g"]
    assert table4.method_label("vsgd_l_no_cap") == "vSGD-l, no step cap (before session 25)"
    assert table4.method_label("vsgd_b_cap_unchecked") == "vSGD-b, step cap without the check (sessions 25-26)"
    assert table4.method_label("vsgd_fd") == "vSGD-fd"
