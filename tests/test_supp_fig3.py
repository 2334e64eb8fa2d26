"""Supp. Fig. 3 (analysis/supp_fig3.py): drawn from 100-epoch records of M1_800 only, the paper's number labelled."""

import math

import pandas as pd
import pytest

from analysis import supp_fig3
from experiments import results


def _record(seed, test, epochs=100.0, optimizer="vsgd_l"):
    curve = [{"step": int(e * 60000), "epoch": e, "train_error": 5.0 / e, "test_error": test + 3.0 / e,
              "train_loss": 0.1, "test_loss": 0.1} for e in (1 / 64, 1.0, 10.0, epochs)]
    return {"benchmark": "M1_800", "optimizer": optimizer, "seed": seed, "config_hash": f"h{seed}{optimizer}{epochs}",
            "train_error": 0.05, "test_error": test, "train_loss": 0.01, "test_loss": 0.08, "diverged": False,
            "diverged_step": None, "hp": {}, "epochs": epochs, "data_md5": "made-up", "dtype": "float32",
            "seconds": 1.0, "curve": curve}


def test_the_figure_and_csv_come_from_the_100_epoch_records(tmp_path):
    store, out = tmp_path / "store", tmp_path / "out"
    for rec in (_record(0, 1.9), _record(1, 2.1), _record(2, 9.9, epochs=6.0), _record(3, 9.9, optimizer="sgd")):
        results.write_record(store, rec)
    png, csv = supp_fig3.draw_all(store, out)
    assert png.stat().st_size > 10_000
    table = pd.read_csv(csv)
    ours = table[table.source == "ours"]
    assert sorted(ours.seed.astype(int)) == [0, 1]  # the 6-epoch run and the other optimizer are left out
    mean = table[table.seed == "mean"].iloc[0]
    assert mean.test_error == pytest.approx(2.0) and mean.source == "ours (2 seeds)"
    paper = table[table.seed == "paper"].iloc[0]
    assert paper.test_error == supp_fig3.PAPER_TEST_ERROR and "copied" in paper.source and math.isnan(paper.train_error)


def test_no_finished_run_is_a_note_not_a_figure(tmp_path):
    store = tmp_path / "store"
    results.write_record(store, _record(0, 2.0, epochs=6.0))
    with pytest.raises(FileNotFoundError, match="experiment=supp_fig3_long"):
        supp_fig3.draw_all(store, tmp_path / "out")
    assert not (tmp_path / "out" / "supp_fig3_long_runs.png").exists()
