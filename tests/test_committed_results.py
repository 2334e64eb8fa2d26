"""The committed tables against the committed per-member records (results/records).

A cell of results/table{2,3}.csv whose members are all in results/records must be what the analysis
computes from them; a cell with more seeds in the records than in the table means the table is stale.
The same for a row of results/table1.csv whose grid settings are all in the records.
Cells the records do not cover yet (the records were started on 2026-11-24, see docs/architecture.md) are
not checked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import tables
from experiments import results

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ours(tmp_path_factory) -> dict[int, pd.DataFrame]:
    """Tables 1-3 as the analysis computes them from the committed records alone."""
    if not any(results.DEFAULT_RECORDS.glob("*/*.jsonl")):
        pytest.skip("no committed records yet")
    store = tmp_path_factory.mktemp("store")
    _, restored = results.sync(store, results.DEFAULT_RECORDS)
    assert restored > 0
    inp = tables.Inputs.from_frame(results.load(store))
    t1 = tables.table1(inp)
    return {1: t1} | {number: tables.table23(inp, split, t1) for number, split in tables.SPLITS.items()}


@pytest.mark.parametrize("number", sorted(tables.SPLITS))
def test_committed_table_cells_are_the_records_numbers(ours, number):
    committed = pd.read_csv(ROOT / "results" / f"table{number}.csv")
    both = ours[number].merge(committed, on=["benchmark", "method"], suffixes=("", "_committed"))
    stale = both[both.n_seeds > both.n_seeds_committed]
    assert stale.empty, (f"results/table{number}.csv is older than results/records for "
                         f"{list(zip(stale.benchmark, stale.method))}: run python -m analysis")
    same = both[both.n_seeds == both.n_seeds_committed]
    assert len(same) > 0
    for col in ("mean", "std", "n_diverged"):
        np.testing.assert_allclose(same[col], same[f"{col}_committed"], rtol=1e-9, err_msg=col)


def test_committed_table1_rows_are_the_records_picks(ours):
    committed = pd.read_csv(ROOT / "results" / "table1.csv")
    both = ours[1].merge(committed, on=["benchmark", "method"], suffixes=("", "_committed"))
    stale = both[both.n_settings_tried > both.n_settings_tried_committed]
    assert stale.empty, f"results/table1.csv is older than results/records for {list(zip(stale.benchmark, stale.method))}"
    same = both[both.n_settings_tried == both.n_settings_tried_committed]
    if same.empty:
        pytest.skip("no Table 1 grid is fully in the records yet")
    assert list(same.setting) == list(same.setting_committed)
    for col in ("mean", "std", "paper_setting_mean", "paper_setting_rank"):
        np.testing.assert_allclose(same[col], same[f"{col}_committed"], rtol=1e-9, err_msg=col)
