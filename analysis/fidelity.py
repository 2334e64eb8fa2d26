"""How close the reproduction is to the paper: per cell of Tables 2 / 3, is the published value inside our
99% confidence interval; per benchmark, our ranking of the methods against the paper's.

    results/fidelity.{md,csv}      one row per (table, benchmark, method)
    results/ranking.{md,csv}       one row per (table, benchmark): both orders and Kendall's tau

The interval is the two-sided t-interval of the mean over seeds: mean +- t_{0.995, n-1} s / sqrt(n)
(s the sample std). It needs n >= 2; with n = 1 (or a diverged cell with an infinite mean) the cell is
"untestable". Cells computed on the approximate CIFAR copy (data_original False) are marked: their
numbers are not expected to match the paper's exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from analysis.common import label, log

LEVEL = 0.99


def t_interval(mean: float, std: float, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Two-sided t confidence interval of a mean; (nan, nan) when n < 2 or the mean is not finite."""
    if n < 2 or not np.isfinite(mean) or not np.isfinite(std):
        return np.nan, np.nan
    half = stats.t.ppf(0.5 + level / 2, n - 1) * std / np.sqrt(n)
    return mean - half, mean + half


def cells(tables: dict[int, pd.DataFrame], level: float = LEVEL) -> pd.DataFrame:
    """One row per (table, benchmark, method) with the CI and whether the paper's value lies inside it."""
    rows = []
    for number, t in tables.items():
        for _, r in t.iterrows():
            lo, hi = t_interval(r["mean"], r["std"], int(r.n_seeds), level)
            has_paper = np.isfinite(r.paper)
            if not has_paper:
                verdict = "no paper value"
            elif not np.isfinite(lo):
                verdict = "untestable"
            else:
                verdict = "inside" if lo <= r.paper <= hi else "outside"
            rows.append({"table": number, "benchmark": r.benchmark, "method": r.method, "mean": r["mean"],
                         "std": r["std"], "n_seeds": int(r.n_seeds), "ci_low": lo, "ci_high": hi, "paper": r.paper,
                         "diff": r["diff"], "paper_in_ci": verdict == "inside", "verdict": verdict,
                         "approx_data": not bool(r.data_original)})
    return pd.DataFrame(rows)


def rankings(tables: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """Per (table, benchmark): methods ordered by our mean and by the paper's value, over methods in both."""
    rows = []
    for number, t in tables.items():
        for bench, sub in t.groupby("benchmark", sort=False):
            both = sub[np.isfinite(sub.paper)]
            if len(both) < 2:
                continue
            ours = list(both.sort_values("mean", kind="stable").method)
            paper = list(both.sort_values("paper", kind="stable").method)
            tau = stats.kendalltau(both["mean"], both.paper).statistic
            rows.append({"table": number, "benchmark": bench, "ours": " < ".join(map(label, ours)),
                         "paper": " < ".join(map(label, paper)), "same_order": ours == paper,
                         "same_best": ours[0] == paper[0], "kendall_tau": float(tau), "n_methods": len(both),
                         "approx_data": not bool(both.data_original.all())})
    return pd.DataFrame(rows)


def write_all(tables: dict[int, pd.DataFrame], out: Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tables = {k: v for k, v in tables.items() if v is not None and not v.empty}
    if not tables:
        log.warning("no Table 2/3 cells: fidelity summary skipped")
        return []
    c, r = cells(tables), rankings(tables)
    c.to_csv(out / "fidelity.csv", index=False)
    r.to_csv(out / "ranking.csv", index=False)
    testable = c[c.verdict.isin(["inside", "outside"])]
    lines = [f"# Fidelity: the paper's value against our {int(LEVEL * 100)}% t-interval", "",
             (f"{int(testable.paper_in_ci.sum())} of {len(testable)} testable cells hold the paper's value inside "
             f"our interval ({int((c.verdict == 'untestable').sum())} untestable: fewer than 2 seeds or diverged). "
             "† = data files not the originals (the approximate CIFAR copy): not expected to match exactly."), "",
             "| Table | Benchmark | Method | ours (mean) | 99% CI | paper | verdict |", "|---|---|---|---|---|---|---|"]
    for _, x in c.iterrows():
        ci = f"[{x.ci_low:.2f}, {x.ci_high:.2f}]" if np.isfinite(x.ci_low) else "–"
        paper = f"{x.paper:.2f}" if np.isfinite(x.paper) else "–"
        lines.append(f"| {x.table} | {x.benchmark}{'†' if x.approx_data else ''} | {label(x.method)} | "
                     f"{x['mean']:.2f} | {ci} | {paper} | {x.verdict} |")
    lines += ["", "## Ranking of the methods (lowest error first), over the methods in both", "",
              "| Table | Benchmark | ours | paper | same best | Kendall tau |", "|---|---|---|---|---|---|"]
    for _, x in r.iterrows():
        tau = f"{x.kendall_tau:.2f}" if np.isfinite(x.kendall_tau) else "–"
        lines.append(f"| {x.table} | {x.benchmark}{'†' if x.approx_data else ''} | {x.ours} | {x.paper} | "
                     f"{'yes' if x.same_best else 'no'} | {tau} |")
    (out / "fidelity.md").write_text("\n".join(lines) + "\n")
    return [out / "fidelity.csv", out / "ranking.csv", out / "fidelity.md"]
