"""Do a cell's seeds agree across devices? For every Table 2/3 cell whose seeds ran on more than one device
(this project's CPU and a lent GPU, say), the CPU seeds against the others, train and test error, by the
tables' own Welch test. Float rounding differs between devices (cuBLAS and Triton kernels against the CPU's),
so a member's numbers do; what a mixed cell must not show is a systematic difference.

    python -m analysis.devices [--store PATH] [--out results]

Writes ``results/devices.{md,csv}`` when some cell is mixed (``python -m analysis`` calls it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis import tables
from analysis.common import label

CPU = "cpu"


def on_cpu(recs: pd.DataFrame) -> pd.Series:
    """Per record, whether it ran on the CPU (records from before the device column count as CPU)."""
    return recs.device.astype(str) == CPU if "device" in recs else pd.Series(True, index=recs.index)


def compare(inp: tables.Inputs, t1: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per mixed cell and split: seeds, mean and std on the CPU and on the other device(s), Welch p."""
    recs = tables.table23_records(inp, t1)
    if "device" not in recs:
        return pd.DataFrame()
    rows = []
    for (bench, method), g in recs.groupby(["benchmark", "optimizer"], sort=False):
        cpu = on_cpu(g)
        if cpu.all() or not cpu.any():
            continue
        others = ", ".join(sorted(set(g.device[~cpu].astype(str))))
        for split in ("train_error", "test_error"):
            a, b = g[split][cpu].to_numpy(float), g[split][~cpu].to_numpy(float)
            rows.append({"benchmark": bench, "method": method, "split": split.removesuffix("_error"),
                         "n_cpu": len(a), "mean_cpu": a.mean(), "std_cpu": a.std(ddof=1) if len(a) > 1 else np.nan,
                         "other": others, "n_other": len(b), "mean_other": b.mean(),
                         "std_other": b.std(ddof=1) if len(b) > 1 else np.nan, "welch_p": tables.welch_p(a, b)})
    return pd.DataFrame(rows)


def markdown(t: pd.DataFrame) -> str:
    lines = ["# Cells whose seeds ran on more than one device (`python -m analysis.devices`)", "",
             ("The CPU seeds against the other device's, by the tables' Welch test (two-sided). Members differ in "
              "float rounding between devices; a small p would say the device moved the cell."), "",
             "| Benchmark | Method | split | CPU: n, mean ± std | other: device, n, mean ± std | Welch p |",
             "|---|---|---|---|---|---|"]
    for r in t.itertuples():
        lines.append(f"| {r.benchmark} | {label(r.method)} | {r.split} | {r.n_cpu}, {r.mean_cpu:.2f} ± {r.std_cpu:.2f} | "
                     f"{r.other}, {r.n_other}, {r.mean_other:.2f} ± {r.std_other:.2f} | {r.welch_p:.2f} |")
    if len(t):
        lines += ["", f"Smallest p: {t.welch_p.min():.2f} over {len(t)} comparisons."]
    return "\n".join(lines) + "\n"


def write_all(inp: tables.Inputs, out: Path, t1: pd.DataFrame | None = None) -> list[Path]:
    t = compare(inp, t1)
    if t.empty:
        return []
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "devices.csv", out / "devices.md"]
    t.to_csv(paths[0], index=False)
    paths[1].write_text(markdown(t))
    return paths


def main(argv: list[str] | None = None) -> None:
    tables.cli(write_all, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
