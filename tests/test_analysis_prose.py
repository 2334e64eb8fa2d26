"""The numbers the prose quotes from the analysis outputs (issue 33 s5): the projected cost of the Table 1 grids,
the GPU/CPU comparison of `results/devices.md`, and the README's list of the cells outside our 99% interval.

Like tests/test_docs_quote_results.py, these fail when `python -m analysis` rewrites an output until the prose
is updated with it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from analysis.common import label

ROOT = Path(__file__).resolve().parents[1]


def read(path: str) -> str:
    return (ROOT / path).read_text()


def test_one_projected_cost_of_the_table1_grids():
    total = float(re.search(r"the grids above in full \(projected\): \*\*([\d.]+) h\*\*", read("results/wall_time.md"))[1])
    text = " ".join(read("results/README.md").split())
    quoted = re.findall(r"Table 1 grids? in full (?:comes to )?(?:\(projected\) )?about (\d+) h", text)
    quoted += re.findall(r"projects about (\d+) h for every Table 1 grid", text)
    assert len(quoted) == 2 and {int(q) for q in quoted} == {round(total)}


def test_architecture_quotes_the_device_comparison():
    devices = re.search(r"Smallest p: ([\d.]+) over (\d+) comparisons", read("results/devices.md"))
    text = " ".join(read("docs/architecture.md").split())
    quoted = re.search(r"Welch p >= ([\d.]+) in all (\d+) comparisons", text)
    assert quoted and quoted.groups() == devices.groups()


def test_readme_mismatch_list_names_every_cell_outside_the_interval():
    fid = pd.read_csv(ROOT / "results" / "fidelity.csv")
    outside = fid[fid.verdict == "outside"]
    text = " ".join(read("README.md").split())
    bullet = text.split("**Mismatches.**", 1)[1].split("- **", 1)[0]
    assert f"The {len(outside)} cells outside our 99% interval" in bullet
    cr = outside[outside.benchmark == "CR"]
    assert f"all {len(cr)} CR cells" in bullet and len(cr) == len(fid[(fid.benchmark == "CR") & fid.paper.notna()])
    sentences = re.split(r"(?<!\d)\.\s", bullet)  # not at a decimal point
    for r in outside[outside.benchmark != "CR"].itertuples():  # named with its benchmark, in one sentence
        name = label(r.method)
        word = re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")  # SGD is not the SGD of vSGD-l
        assert any(word.search(s) and r.benchmark in s for s in sentences), (
            f"{r.benchmark} {name} (Table {r.table}) is outside our interval but not in README.md's Mismatches")
