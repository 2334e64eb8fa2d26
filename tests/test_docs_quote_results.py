"""The numbers the READMEs quote by hand are the committed tables' numbers.

`results/README.md`'s cell-by-cell table and the fidelity count that both READMEs quote are written by hand
(they sit in prose that explains them). When `python -m analysis` rewrites the tables (more seeds from
`./reproduce.sh complete`, say), these tests fail until the prose is updated with them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from analysis.common import LABELS

ROOT = Path(__file__).resolve().parents[1]
RESULTS_README = ROOT / "results" / "README.md"
CELL = re.compile(r"^(-?\d+\.\d\d) ± (\d+\.\d\d)(?: \(n=(\d+)\))?$")  # "(n=10)": seeds, where not the row's
ROW = re.compile(r"^(\w\w)†? ours \((\d+) seeds\)$")


def cell_table() -> tuple[list[str], list[list[str]]]:
    """Header and rows of the table under '## Cell by cell' in results/README.md."""
    text = RESULTS_README.read_text()
    section = text.split("## Cell by cell", 1)
    assert len(section) == 2, "results/README.md lost its '## Cell by cell' section"
    lines = [ln for ln in section[1].splitlines() if ln.startswith("|")]
    split = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
    return split[0][1:], split[2:]


@pytest.fixture(scope="module")
def table3() -> pd.DataFrame:
    return pd.read_csv(ROOT / "results" / "table3.csv").set_index(["benchmark", "method"])


def test_cell_by_cell_table_is_table3(table3):
    by_label = {v: k for k, v in LABELS.items()}
    header, rows = cell_table()
    methods = [by_label[h] for h in header]
    checked = 0
    for row in rows:
        label, cells = row[0], row[1:]
        ours = ROW.match(label)
        paper = re.match(r"^(\w\w) paper$", label)
        assert ours or paper, f"results/README.md cell-by-cell row {label!r}: expected 'XX ours (N seeds)' or 'XX paper'"
        bench = (ours or paper).group(1)
        for method, cell in zip(methods, cells):
            if not cell:
                assert (bench, method) not in table3.index or pd.isna(table3.loc[(bench, method), "mean"]), \
                    f"results/README.md, {label}, {LABELS[method]}: empty, but results/table3.csv has the cell"
                continue
            committed = table3.loc[(bench, method)]
            where = f"results/README.md, {label}, {LABELS[method]}"
            if ours:
                m = CELL.match(cell)
                assert m, f"{where}: {cell!r} is not 'mean ± std' or 'mean ± std (n=N)'"
                assert (m.group(1), m.group(2)) == (f"{committed['mean']:.2f}", f"{committed['std']:.2f}"), \
                    f"{where}: quotes {cell}, results/table3.csv has {committed['mean']:.2f} ± {committed['std']:.2f}"
                seeds = m.group(3) or ours.group(2)
                assert int(seeds) == committed["n_seeds"], \
                    f"{where}: says {seeds} seeds, results/table3.csv has {committed['n_seeds']}"
            else:
                assert f"{committed['paper']:.2f}" == cell, f"{where}: {cell} against the paper's {committed['paper']}"
            checked += 1
    assert checked >= 60  # today 78: 8 methods x 3 MNIST benchmarks + 5 x 3 CIFAR, ours and paper rows


@pytest.mark.parametrize("doc", ["README.md", "results/README.md"])
def test_fidelity_count_is_fidelity_md(doc):
    first = (ROOT / "results" / "fidelity.md").read_text()
    m = re.search(r"(\d+) of (\d+) testable cells hold the paper's value", first)
    assert m, "results/fidelity.md lost its summary line"
    quoted = re.findall(r"(\d+) of the (\d+) cells", (ROOT / doc).read_text())
    assert quoted, f"{doc} no longer quotes the fidelity count ('N of the M cells')"
    for q in quoted:
        assert q == m.groups(), f"{doc} says {q[0]} of the {q[1]} cells, results/fidelity.md {m.group(1)} of {m.group(2)}"


def test_every_mean_std_in_results_readme_is_a_table_cell():
    """Each 'mean ± std' the prose of results/README.md quotes is the mean and std of some cell of Table 2 or 3
    (the one table of other quantities, the JPEG-minus-exact differences, is left out)."""
    cells = set()
    for number in (2, 3):
        t = pd.read_csv(ROOT / "results" / f"table{number}.csv")
        cells |= {(f"{m:.2f}", f"{s:.2f}") for m, s in zip(t["mean"], t["std"])}
        if "paper_setting_mean" in t:  # a baseline at the paper's setting, beside our own pick (issue 33)
            cells |= {(f"{m:.2f}", f"{s:.2f}") for m, s in zip(t.paper_setting_mean, t.paper_setting_std)}
    stale = [f"line {i}: {m.group(0)}"
             for i, line in enumerate(RESULTS_README.read_text().splitlines(), 1) if "JPEG - exact" not in line
             for m in re.finditer(r"(?<![\d.+-])(\d+\.\d\d) ± (\d+\.\d\d)", line) if m.groups() not in cells]
    assert not stale, f"results/README.md quotes numbers that are no cell of results/table2.csv or table3.csv: {stale}"
