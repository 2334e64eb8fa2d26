"""Tables 1-3 of paper 1 from the results store, beside the published numbers.

    python -m analysis.tables [--store PATH] [--out results]

Table 1: per benchmark and tuned method, the best grid setting (lowest mean test error over the first
2 seeds), the paper's setting beside it, and a flag when the best lies on the edge of its grid.
Tables 2 / 3: final train / test error, mean and std over seeds; per benchmark the best method and every
method not significantly different from it (Welch's t-test, p >= 0.01) in bold; a "#settings" row.
Which records feed which table: see analysis.common and docs/analysis.md.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from analysis import common
from analysis.common import label, log

ALPHA = 0.01  # Tables 2, 3 captions: "don't differ statistically significantly from the best one (p = 0.01)"
SPLITS = {2: "train", 3: "test"}
PAPER_EPOCHS = 6.0  # Tables 2, 3: "after 6 epochs"


@dataclass
class Inputs:
    """Everything the tables read: the store's records and the reference numbers."""

    df: pd.DataFrame
    grids: dict[str, dict[str, list[float]] | None]
    table1: dict[tuple[str, str], dict[str, float]]
    paper: dict[tuple[str, str, str], float]

    @classmethod
    def from_frame(cls, df: pd.DataFrame, grid_dir: Path = common.GRID_DIR,
                   reference: Path = common.REFERENCE) -> Inputs:
        df = common.longest_epochs(common.prepare(df))
        methods = set(df.optimizer) if len(df) else set()
        table1 = common.paper_table1(reference)
        methods |= {m for _, m in table1}
        grids = {m: common.load_grid(m, grid_dir) for m in methods}
        return cls(df, grids, table1, common.paper_tables(reference))

    def tuned(self, method: str) -> bool:
        return common.is_tuned(method, self.grids, self.table1)


# -- Table 1 ------------------------------------------------------------------------------------
def tuning_records(recs: pd.DataFrame, tuning_seeds: int = common.TUNING_SEEDS) -> pd.DataFrame:
    """The tuning runs: each setting's first ``tuning_seeds`` seeds (the paper: "averaged over 2 runs")."""
    return recs.sort_values("seed").groupby("setting", sort=False).head(tuning_seeds)


def setting_scores(recs: pd.DataFrame, tuning_seeds: int = common.TUNING_SEEDS) -> pd.DataFrame:
    """Per setting: mean / std of the final test error over its first ``tuning_seeds`` seeds."""
    rows = []
    for key, g in tuning_records(recs, tuning_seeds).groupby("setting", sort=False):
        err = g.test_error.to_numpy(float)
        rows.append({"setting": key, "mean": float(np.mean(err)), "std": _std(err), "n_seeds": len(err),
                     "train_mean": float(np.mean(g.train_error.to_numpy(float))),
                     "n_diverged": int(g.diverged.sum())})
    return pd.DataFrame(rows)


def edge_flags(best: tuple, grid: dict[str, list[float]]) -> list[str]:
    """Hyper-parameters whose best value is the smallest or largest of its grid ("eta0 high").

    A lower edge at 0 is not flagged: 0 is the natural end of such a range (gamma = 0 is no decay).
    """
    flags = []
    for name, value in best:
        vals = grid.get(name)
        if not vals or len(set(vals)) < 2:
            continue
        lo, hi = min(vals), max(vals)
        if math.isclose(value, hi, rel_tol=1e-6):
            flags.append(f"{name} high")
        elif math.isclose(value, lo, rel_tol=1e-6, abs_tol=1e-15) and lo != 0:
            flags.append(f"{name} low")
    return flags


def _every_point_ran(grid: dict[str, list[float]], settings: list[tuple]) -> bool:
    """Whether every point of ``grid`` (its cartesian product) is among the settings that ran."""
    names = list(grid)
    ran = {tuple(dict(s).get(n) for n in names) for s in settings}
    return all(any(all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-15) for a, b in zip(point, r) if b is not None)
                   and None not in r for r in ran)
               for point in itertools.product(*(grid[n] for n in names)))


def table1(inp: Inputs, tuning_seeds: int = common.TUNING_SEEDS) -> pd.DataFrame:
    """One row per (benchmark, tuned method) present in the store."""
    rows = []
    df = inp.df
    for bench in _benchmarks(df):
        for method in common.method_order(df[df.benchmark == bench].optimizer.unique()):
            if not inp.tuned(method):
                continue
            recs = df[(df.benchmark == bench) & (df.optimizer == method)]
            scores = setting_scores(recs, tuning_seeds)
            if scores.empty:
                continue
            best = scores.loc[scores["mean"].idxmin()]
            tried: dict[str, set] = {}
            for key in scores.setting:
                for k, v in key:
                    tried.setdefault(k, set()).add(v)
            tried = {k: sorted(v) for k, v in tried.items()}
            grid = inp.grids.get(method)
            source = "conf/grid"
            if grid is None:  # no grid file: the values the store holds are the grid we know of
                grid, source = tried, "store"
            flags = edge_flags(best.setting, grid)
            # a partly run grid: also say when the best is at the edge of what was tried
            flagged = {f.split()[0] for f in flags}
            flags += [f"{f} (of tried)" for f in edge_flags(best.setting, tried)
                      if f.split()[0] not in flagged and len(tried[f.split()[0]]) < len(grid.get(f.split()[0], []))]
            paper_hp = inp.table1.get((bench, method))
            searched = source == "conf/grid" and _every_point_ran(grid, list(scores.setting))
            # the tuned hyper-parameters: in the grid, in the paper's row, or varied in the store
            shown = (set(grid) if source == "conf/grid" else set()) | set(paper_hp or {}) | {
                k for k, v in tried.items() if len(v) > 1}
            at_paper = scores[[common.matches(paper_hp, s) for s in scores.setting]] if paper_hp else scores.iloc[:0]
            row = {"benchmark": bench, "method": method,
                   "setting": common.setting_text(tuple((k, v) for k, v in best.setting if k in shown)),
                   "setting_key": best.setting,  # the full key (every hp), for the other tables and figures
                   "mean": best["mean"], "std": best["std"], "n_seeds": int(best["n_seeds"]),
                   "train_mean": best["train_mean"],
                   "paper": common.setting_text(tuple(paper_hp.items())) if paper_hp else "",
                   "paper_setting_mean": float(at_paper["mean"].iloc[0]) if len(at_paper) else np.nan,
                   "paper_setting_std": float(at_paper["std"].iloc[0]) if len(at_paper) else np.nan,
                   # 1 + the settings tried that scored strictly better than the paper's pick
                   "paper_setting_rank": int((scores["mean"] < at_paper["mean"].iloc[0]).sum()) + 1
                   if len(at_paper) else np.nan,
                   # searched: every setting of the grid ran, so the pick is ours; otherwise the row shows the
                   # paper's setting, copied, not searched (issue 33): never bold, never "(same)"
                   "searched": searched,
                   "pick": "ours" if searched else "paper",
                   "seeds_per_setting": int(scores["n_seeds"].min()),
                   "bold": searched and bool(paper_hp) and common.matches(paper_hp, best.setting),
                   "edge": "; ".join(flags),
                   "n_settings_tried": len(scores), "grid_size": common.grid_size(grid), "grid_source": source,
                   "epochs": float(recs.epochs.max()),
                   "data_original": bool(recs.data_original.all())}
            for k, v in best.setting:
                row[f"hp_{k}"] = v
            for k, v in (paper_hp or {}).items():
                row[f"paper_{k}"] = v
            rows.append(row)
    return pd.DataFrame(rows)


# -- Tables 2 and 3 -----------------------------------------------------------------------------
def table23_records(inp: Inputs, t1: pd.DataFrame | None = None) -> pd.DataFrame:
    """The records Tables 2 and 3 are computed from, with `setting_source` (paper / ours / untuned)."""
    df = inp.df
    if t1 is None:
        t1 = table1(inp)
    parts = []
    for (bench, method), recs in df.groupby(["benchmark", "optimizer"], sort=False):
        if inp.tuned(method):
            paper_hp = inp.table1.get((bench, method))
            row = t1[(t1.benchmark == bench) & (t1.method == method)] if len(t1) else t1
            if len(row) and (bool(row.searched.iloc[0]) or not paper_hp):
                # our own pick: the grid was searched in full (issue 33), or the paper tuned no setting here
                keep = recs[recs.setting == row.setting_key.iloc[0]]
                source = "ours"
            elif paper_hp:  # the grid was not searched in full: the paper's Table 1 setting, copied
                keep = recs[[common.matches(paper_hp, s) for s in recs.setting]]
                source = "paper"
                if keep.empty:
                    log.info("%s %s: no records at the paper's Table 1 setting (%s); not in Tables 2/3", bench,
                             method, common.setting_text(tuple(paper_hp.items())))
            else:
                continue
        else:
            counts = recs.groupby("setting", sort=False).size()
            if len(counts) > 1:
                log.info("%s %s: %d settings in the store; Tables 2/3 use the one with most seeds (%s)",
                         bench, method, len(counts), common.setting_text(counts.idxmax()))
            keep = recs[recs.setting == counts.idxmax()]
            source = "untuned"
        if len(keep):
            parts.append(keep.assign(setting_source=source))
    if not parts:
        return df.iloc[:0].assign(setting_source=pd.Series(dtype=str))
    return pd.concat(parts)


def welch_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of Welch's t-test; 1 for two identical constant samples, NaN when untestable."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return np.nan
    if np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and np.ptp(a) == 0 and np.ptp(b) == 0:
        return 1.0 if a[0] == b[0] else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def mark_bold(samples: dict[str, np.ndarray], alpha: float = ALPHA) -> dict[str, tuple[bool, float]]:
    """method -> (bold, p vs the best). Best = lowest mean; bold = best or Welch p >= alpha."""
    means = {m: float(np.mean(v)) for m, v in samples.items() if len(v)}
    finite = {m: v for m, v in means.items() if np.isfinite(v)}
    if not finite:
        return {m: (False, np.nan) for m in samples}
    best = min(finite, key=finite.get)
    out = {}
    for m, v in samples.items():
        if m == best:
            out[m] = (True, 1.0)
        else:
            p = welch_p(samples[best], v)
            out[m] = (bool(np.isfinite(p) and p >= alpha), p)
    return out


def table23(inp: Inputs, split: str, t1: pd.DataFrame | None = None, alpha: float = ALPHA) -> pd.DataFrame:
    """Long format: one row per (benchmark, method) with mean, std, n_seeds, paper, diff, bold, p_value."""
    recs = table23_records(inp, t1)
    col = f"{split}_error"
    rows = []
    for bench in _benchmarks(recs):
        sub = recs[recs.benchmark == bench]
        methods = common.method_order(sub.optimizer.unique())
        samples = {m: sub[sub.optimizer == m].sort_values("seed")[col].to_numpy(float) for m in methods}
        bold = mark_bold(samples, alpha)
        best = min((m for m in methods if np.isfinite(np.mean(samples[m]))),
                   key=lambda m: np.mean(samples[m]), default=None)
        for m in methods:
            g = sub[sub.optimizer == m]
            x = samples[m]
            paper = inp.paper.get((split, bench, m), np.nan)
            mean = float(np.mean(x))
            beside = _at_papers_setting(inp, bench, m, g.setting.iloc[0], col)
            rows.append({"benchmark": bench, "method": m, "split": split, "mean": mean, "std": _std(x),
                         "n_seeds": len(x), "n_diverged": int(g.diverged.sum()), "paper": paper,
                         "diff": mean - paper if np.isfinite(paper) else np.nan, "bold": bold[m][0],
                         "p_value": bold[m][1], "best": m == best, "setting": common.setting_text(g.setting.iloc[0]),
                         "setting_source": g.setting_source.iloc[0], "epochs": float(g.epochs.max()),
                         "data_original": bool(g.data_original.all()),
                         "n_settings": common.n_settings(m, inp.grids, inp.table1, inp.df),
                         # where our pick differs from the paper's setting: the paper's setting beside it
                         "paper_setting": beside[0], "paper_setting_mean": beside[1],
                         "paper_setting_std": beside[2], "paper_setting_n_seeds": beside[3]})
    return pd.DataFrame(rows)


def _at_papers_setting(inp: Inputs, bench: str, method: str, setting: tuple, col: str) -> tuple:
    """(text, mean, std, n) of ``col`` at the paper's Table 1 setting of a tuned method whose cell is at
    another setting (our searched pick); ("", nan, nan, 0) where the cell is at the paper's setting, or
    the paper gives none."""
    paper_hp = inp.table1.get((bench, method))
    if not paper_hp or not inp.tuned(method) or common.matches(paper_hp, setting):
        return "", np.nan, np.nan, 0
    df = inp.df
    recs = df[(df.benchmark == bench) & (df.optimizer == method)]
    x = recs[[common.matches(paper_hp, s) for s in recs.setting]][col].to_numpy(float)
    text = common.setting_text(tuple(paper_hp.items()))
    return text, (float(np.mean(x)) if len(x) else np.nan), _std(x), len(x)


# -- writers ------------------------------------------------------------------------------------
def _std(x: np.ndarray) -> float:
    """Sample std; NaN for one value, or where a value is infinite (a diverged CR member), as np.std gives."""
    x = np.asarray(x, float)
    return float(np.std(x, ddof=1)) if len(x) > 1 and np.isfinite(x).all() else np.nan


def _benchmarks(df: pd.DataFrame) -> list[str]:
    present = set(df.benchmark) if len(df) else set()
    return [b for b in common.BENCHMARKS if b in present] + sorted(present - set(common.BENCHMARKS))


def _num(v: float, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if math.isinf(v):
        return "inf"
    return f"{v:.{digits}f}"


def _signed(v: float) -> str:
    return "–" if not np.isfinite(v) else f"{v:+.2f}"


def _mean_spread(r, pm: str = "±") -> str:
    """"mean ± std"; a one-seed cell has no std, so it is the mean alone and _one_seed_note marks it."""
    return _num(r["mean"]) if int(r.n_seeds) == 1 else f"{_num(r['mean'])} {pm} {_num(r['std'])}"


def _one_seed_note(r) -> str:
    """" (1 seed)" after a one-seed cell (rather than "mean ± –"), else ""."""
    return " (1 seed)" if int(r.n_seeds) == 1 else ""


def _approx_mark(ok: bool) -> str:
    return "" if ok else "†"


def _table23_rows(t: pd.DataFrame, methods: list[str], ours_cell, paper_cell):
    """Per benchmark: (name, its rows by method, our cell per method, the paper's cell per method); both
    cells are "" for a method with no runs on that benchmark."""
    for bench in _benchmarks(t):
        sub = t[t.benchmark == bench].set_index("method")
        rows = [sub.loc[m] if m in sub.index else None for m in methods]
        yield (bench, sub, ["" if r is None else ours_cell(r) for r in rows],
               ["" if r is None else paper_cell(r) for r in rows])


def table23_markdown(t: pd.DataFrame, split: str, number: int) -> str:
    methods = common.method_order(t.method.unique())
    head = f"| {'Table ' + str(number)} ({split} error) | " + " | ".join(label(m) for m in methods) + " |"
    lines = [head, "|" + "---|" * (len(methods) + 1)]
    def ours_cell(r) -> str:
        cell = _mean_spread(r)
        cell = f"**{cell}**" if r.bold else cell
        return (cell + _approx_mark(r.data_original) + _pick_mark(r) + _one_seed_note(r) + _epochs_text(r.epochs)
                + (f" ({r.n_diverged} div.)" if r.n_diverged else ""))

    def paper_cell(r) -> str:
        return f"{_num(r.paper)} ({_signed(r['diff'])})" if np.isfinite(r.paper) else "–"

    for bench, sub, ours, paper in _table23_rows(t, methods, ours_cell, paper_cell):
        lines.append(f"| {bench} ours (n={_seeds_text(sub)}) | " + " | ".join(ours) + " |")
        lines.append(f"| {bench} paper (diff) | " + " | ".join(paper) + " |")
    settings = [_settings_of(t, m) for m in methods]
    lines.append("| #settings (grid size) | " + " | ".join(settings) + " |")
    lines.append("| grid searched by us on | " + " | ".join(_searched_on(t, m) for m in methods) + " |")
    notes = _beside_notes(t)
    return "\n".join(lines) + "\n" + ("\n" + "\n".join(notes) + "\n" if notes else "")


PICK_MARKS = {"ours": "§", "paper": "‡"}
TEX_PICK_MARKS = {"ours": r"$^{\S}$", "paper": r"$^{\ddagger}$"}
PICK_LEGEND = ("§ a baseline at our own pick, from a grid we searched in full (Table 1); ‡ at the paper's Table 1 "
               "setting, copied: we did not search that grid in full. \"#settings\" is the grid's size (the tuning "
               "runs the paper's protocol needs), not the number we ran; the last row says where we ran it.")


def _pick_mark(r) -> str:
    """"§" / "‡" after a tuned baseline's cell: at our searched pick / at the paper's copied setting."""
    return PICK_MARKS.get(r.get("setting_source"), "")


def _searched_on(t: pd.DataFrame, method: str) -> str:
    """The benchmarks where a tuned method's cell is at our searched pick ("no tuning" for vSGD & co.)."""
    sub = t[t.method == method]
    if set(sub.setting_source) <= {"untuned"}:
        return "no tuning"
    return " ".join(sub[sub.setting_source == "ours"].benchmark) or "none"


def _beside_notes(t: pd.DataFrame) -> list[str]:
    """One line per cell whose pick (ours) differs from the paper's setting, with the paper's setting beside."""
    notes = []
    for _, r in t.iterrows():
        if not isinstance(r.get("paper_setting"), str) or not r.paper_setting:
            continue
        n = int(r.paper_setting_n_seeds)
        spread = _num(r.paper_setting_mean) if n == 1 else f"{_num(r.paper_setting_mean)} ± {_num(r.paper_setting_std)}"
        at = f"{spread} ({n} seeds)" if n else "not run"
        notes.append(f"- {r.benchmark} {label(r.method)}§: our pick {r.setting}; at the paper's setting "
                     f"({r.paper_setting}): {at}.")
    return notes


def _epochs_text(epochs: float) -> str:
    """" (0.2 ep.)" for a cell not trained for the paper's 6 epochs (a probe or quick run), else ""."""
    return "" if pd.isna(epochs) or float(epochs) == PAPER_EPOCHS else f" ({float(epochs):g} ep.)"


def _seeds_text(sub: pd.DataFrame) -> str:
    ns = sorted({int(n) for n in sub.n_seeds})
    return "/".join(map(str, ns))


def _settings_of(t: pd.DataFrame, method: str) -> str:
    ours = t[t.method == method].n_settings.dropna()
    ours_txt = str(int(ours.iloc[0])) if len(ours) else "?"
    paper = common.PAPER_SETTINGS.get(method)
    return ours_txt + (f" (paper {paper})" if paper is not None and paper != (int(ours.iloc[0]) if len(ours) else None)
                       else "")


def table23_latex(t: pd.DataFrame, split: str, number: int) -> str:
    methods = common.method_order(t.method.unique())
    lines = [r"\begin{tabular}{l" + "r" * len(methods) + "}", r"\toprule",
             " & ".join([""] + [_tex(label(m)) for m in methods]) + r" \\", r"\midrule"]
    def ours_cell(r) -> str:
        cell = _mean_spread(r, r"\pm")
        cell = rf"$\mathbf{{{cell}}}$" if r.bold else f"${cell}$"
        return (cell + ("$^\\dagger$" if not r.data_original else "") + TEX_PICK_MARKS.get(r.setting_source, "")
                + _tex(_one_seed_note(r))
                + _tex(_epochs_text(r.epochs)))

    def paper_cell(r) -> str:
        return rf"{{\scriptsize {_num(r.paper)} ({_signed(r['diff'])})}}" if np.isfinite(r.paper) else ""

    for bench, _, ours, paper in _table23_rows(t, methods, ours_cell, paper_cell):
        lines.append(f"{bench} & " + " & ".join(ours) + r" \\")
        lines.append(r"{\scriptsize paper} & " + " & ".join(paper) + r" \\")
    lines += [r"\midrule", r"\#settings (grid size) & " + " & ".join(_tex(_settings_of(t, m)) for m in methods)
              + r" \\", "searched by us on & " + " & ".join(_tex(_searched_on(t, m)) for m in methods) + r" \\",
              r"\bottomrule", r"\end{tabular}"]
    caption = (f"% Table {number}: final {split} error after 6 epochs, mean $\\pm$ std over seeds; bold: best and "
               f"not significantly different from it (Welch's t-test, p = {ALPHA}); small: the paper's value "
               "(ours minus paper). $^\\dagger$: data not the original files (approximate CIFAR copy). "
               + PICK_LEGEND.replace("§", r"\S").replace("‡", r"$\ddagger$"))
    notes = "".join(f"% {_tex(n)}\n" for n in _beside_notes(t))
    return caption + "\n" + notes + "\n".join(lines) + "\n"


PICK_TEXT = {"ours": "ours (searched in full)", "paper": "the paper's (copied, not searched)"}
PICK_NOTE = ("Pick: *ours* where we ran every setting of the grid (the best by mean test error over its first 2 "
             "seeds); *the paper's* where we ran only part of the grid (often only the paper's setting): that "
             "row's setting is copied from the paper, not found by us, and never bold. Tables 2-3 use our pick "
             "where we searched (§) and the paper's setting where we did not (‡).")


def _best_text(r) -> str:
    """Our best setting; for a grid not searched in full, only the best of what ran, said as such."""
    if _searched(r):
        return r.setting
    return f"– (best of the {r.n_settings_tried} run: {r.setting})" if r.n_settings_tried > 1 else "– (not searched)"


def _at_pick(r) -> tuple[float, float]:
    """(mean, std) of the test error at the row's pick: our best where we searched, else the paper's setting."""
    return (r["mean"], r["std"]) if _searched(r) else (r.paper_setting_mean, r.paper_setting_std)


def _searched(r) -> bool:
    return bool(r.get("searched", False)) and not pd.isna(r.get("searched"))


def table1_markdown(t: pd.DataFrame) -> str:
    lines = [("| Benchmark | Method | pick | our best setting | test error at the pick | paper's setting | "
              "ours at paper's setting (its rank among those run) | settings we ran / grid | seeds per setting "
              "| edge of grid | left to run (projected) |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in t.iterrows():
        same = " (same)" if r.bold else ""
        pick = PICK_TEXT[r.pick]
        best = f"**{_best_text(r)}**" if r.bold else _best_text(r)
        mean, std = _at_pick(r)
        lines.append(f"| {r.benchmark}{_epochs_text(r.epochs)} | {label(r.method)} | {pick} | {best} | "
                     f"{_num(mean)} ± {_num(std)}{_approx_mark(r.data_original)} | {r.paper or '–'}{same} | "
                     f"{_num(r.paper_setting_mean)}{_rank(r)} | {r.n_settings_tried} / {r.grid_size} "
                     f"({r.grid_source}) | {int(r.seeds_per_setting)} | {r.edge or ''} | {_left_text(r)} |")
    return "\n".join(lines) + "\n\n" + PICK_NOTE + " " + LEFT_NOTE + "\n"


LEFT_NOTE = ("Left to run: the members of a grid not searched in full, priced as results/wall_time.md prices them "
             "(one quiet CPU job at the current code's measured rates; on one H100 where one measured the rule).")


def _left_text(r) -> str:
    """'57.8 h on this CPU, 59.7 min on one H100' for a grid not searched in full; '–' for one searched."""
    cpu, gpu = r.get("seconds_left_cpu", np.nan), r.get("seconds_left_h100", np.nan)
    if _searched(r) or pd.isna(cpu):
        return "–"
    return f"{common.duration_text(cpu)} on this CPU" + (
        f", {common.duration_text(gpu)} on one H100" if pd.notna(gpu) else "")


def _rank(r) -> str:
    """' (rank 3 of 68)': where the paper's pick falls among the settings tried (only with more than one)."""
    if pd.isna(r.get("paper_setting_rank")) or r.n_settings_tried < 2:
        return ""
    return f" (rank {int(r.paper_setting_rank)} of {r.n_settings_tried})"


def table1_latex(t: pd.DataFrame) -> str:
    head = (r"Benchmark & Method & pick & best setting & paper's setting & test err. & at paper's & ran / grid & seeds "
            r"& edge & left (projected)")
    lines = [r"\begin{tabular}{lllllrrrrll}", r"\toprule", head + r" \\", r"\midrule"]
    for _, r in t.iterrows():
        best = _tex(_best_text(r))
        lines.append(" & ".join([r.benchmark, _tex(label(r.method)), _tex(PICK_TEXT[r.pick]),
                                 rf"\textbf{{{best}}}" if r.bold else best, _tex(r.paper or "--"),
                                 "${} \\pm {}$".format(*map(_num, _at_pick(r))), _num(r.paper_setting_mean),
                                 f"{r.n_settings_tried} / {r.grid_size}", str(int(r.seeds_per_setting)),
                                 _tex(r.edge or ""), _tex(_left_text(r))]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return ("% Table 1: best grid setting per benchmark and baseline (lowest mean test error over 2 seeds)\n% "
            + _tex(PICK_NOTE) + "\n% " + _tex(LEFT_NOTE) + "\n" + "\n".join(lines) + "\n")


def _tex(s: str) -> str:
    return str(s).replace("_", r"\_").replace("#", r"\#").replace("%", r"\%")


def write_all(inp: Inputs, out: Path, t1: pd.DataFrame | None = None,
              tabs: dict[int, pd.DataFrame] | None = None) -> list[Path]:
    """Write results/table{1,2,3}.{md,tex,csv}; returns the files written. ``t1`` and ``tabs`` (Table 1 and
    ``{2: table23(inp, "train", t1), 3: ...}``), when the caller has computed them already, are not computed again."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if inp.df.empty:
        log.warning("the store holds no records: no tables written")
        return written
    t1 = table1(inp) if t1 is None else t1
    if t1.empty:
        log.warning("no tuned method (SGD, AdaGrad, ...) in the store: Table 1 skipped")
    else:
        written += _write(out / "table1", t1, table1_markdown(t1), table1_latex(t1))
    for number, split in SPLITS.items():
        t = table23(inp, split, t1) if tabs is None else tabs[number]
        if t.empty:
            log.warning("no records for Table %d", number)
            continue
        md = table23_markdown(t, split, number)
        md += ("\nBold: best, and every method not significantly different from it (Welch's t-test, "
               f"p >= {ALPHA}). Cells: mean ± std over seeds; below: the paper's value (ours minus paper). "
               "† computed on data files that are not the originals (data_original False: the approximate CIFAR copy). "
               + PICK_LEGEND + "\n")
        written += _write(out / f"table{number}", t, md, table23_latex(t, split, number))
    return written


def _write(stem: Path, t: pd.DataFrame, md: str, tex: str) -> list[Path]:
    paths = [stem.with_suffix(".csv"), stem.with_suffix(".md"), stem.with_suffix(".tex")]
    t.drop(columns=["setting_key"], errors="ignore").to_csv(paths[0], index=False)
    paths[1].write_text(md)
    paths[2].write_text(tex)
    return paths


def cli(write, description: str, argv: list[str] | None = None) -> None:
    """``python -m analysis.<module> [--store PATH] [--out results]``: ``write(Inputs, out)``, print the files."""
    from experiments import results

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--store", default=None)
    ap.add_argument("--out", default="results")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for p in write(Inputs.from_frame(results.load(args.store)), Path(args.out)):
        print(p)


def main(argv: list[str] | None = None) -> None:
    cli(write_all, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
