"""Table 4 (issue 34 s4): today's small workloads (experiments/workloads.py), from the family's records.

    python -m analysis                      # writes Table 4 with the rest (its hook in analysis/__main__.py)
    python -m analysis.table4 [--store PATH] [--out results]

Reads ``<store>/workloads`` after syncing it with ``results/records/workloads`` (default store only) and writes
``results/table4.{md,tex,csv}``, ``results/figures/table4_curves.{png,pdf}`` (test error against epochs, mean
over seeds) and ``results/figures/table4_tuning_cost.{png,pdf}`` (test error against the runs a method needs
before it can be used: 1 for the tuning-free ones, the learning-rate grid for SGD with momentum).

A cell is the final test error in percent, mean +- std over seeds; bold: the best mean of its workload and every
method not significantly different from it (Welch's t-test, p >= 0.01: ``analysis.tables.mark_bold``, as Tables
2-3). SGD with momentum is reported at its best grid setting, chosen by the lowest mean final test error over its
seeds (as Table 1 picks the paper's baselines, by test error): an optimistic pick, and its grid is its cost.
A diverged member (non-finite loss) counts as 100 %.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.common import PROJECT_ROOT, label, log, save_png_pdf
from analysis.tables import ALPHA, mark_bold

FAMILY = "workloads"
WORKLOADS = ("sparse_logreg", "mnist_cnn", "cifar_resnet", "char_lstm", "char_transformer")  # the docs' order
WORKLOAD_LABELS = {"sparse_logreg": "sparse LogReg", "mnist_cnn": "MNIST CNN", "cifar_resnet": "CIFAR ResNet*",
                   "char_lstm": "char LSTM", "char_transformer": "char Transformer"}
VSGD_MODES = ("vsgd_l", "vsgd_b", "vsgd_g")
# VSGD members run under an earlier default of the front-end's step cap (``front_end["cap_step"]``, part of the
# member key; vsgd/stepcap.py) get their own rows: (suffix, label) per cap setting; the current default,
# "checked" (session 26), keeps the plain name
CAP_VARIANTS = {False: ("_no_cap", "no step cap (before session 25)"),
                True: ("_cap_unchecked", "step cap without the check (sessions 25-26)")}
CURRENT_CAP = "checked"
METHODS = (*VSGD_MODES, "vsgd_fd", "adam", "sgdm", "dadapt_sgd", "dadapt_adam", "prodigy", "sgd_schedulefree",
           "adamw_schedulefree", "dog", "cocob",
           *(m + suffix for suffix, _ in CAP_VARIANTS.values() for m in VSGD_MODES))
TUNED = {"sgdm"}  # methods run over a grid (experiments/workloads.settings_for)


def method_label(m: str) -> str:
    for suffix, text in CAP_VARIANTS.values():
        if m.endswith(suffix) and m[: -len(suffix)] in VSGD_MODES:
            return label(m[: -len(suffix)]) + ", " + text
    return "SGD-mom (tuned lr)" if m == "sgdm" else label(m)


def is_variant(m: str) -> bool:
    """A VSGD row of an earlier step-cap default (the table's history; figures show the current defaults)."""
    return any(m.endswith(suffix) and m[: -len(suffix)] in VSGD_MODES for suffix, _ in CAP_VARIANTS.values())


def with_variants(df: pd.DataFrame) -> pd.DataFrame:
    """The records with ``optimizer`` naming the front-end variant: a ``VSGD`` member whose front-end settings
    (``front_end``, part of its key) carry an earlier step-cap default (:data:`CAP_VARIANTS`; no ``cap_step`` at
    all: before the cap existed) becomes ``<method><suffix>``, so the table keeps the old defaults' members beside
    the current default's instead of mixing them in one cell."""
    if df.empty or "front_end" not in df:
        return df

    def name(r) -> str:
        fe = r.front_end if isinstance(r.front_end, dict) else {}
        cap = fe.get("cap_step", False)
        if r.optimizer in VSGD_MODES and cap != CURRENT_CAP:
            return r.optimizer + CAP_VARIANTS[bool(cap)][0]
        return r.optimizer

    return df.assign(optimizer=df.apply(name, axis=1))


def load(store: Path | None = None) -> pd.DataFrame:
    """The family's records (with curves), the store synced with its committed records first (default store)."""
    from experiments import results

    root = Path(store) if store else results.DEFAULT_STORE
    records = results.records_for(root)
    fam = root / FAMILY
    if records is not None and (records / FAMILY).is_dir():
        results.sync(fam, records / FAMILY)
    if not fam.is_dir():
        return pd.DataFrame()
    return with_variants(results.load(fam, with_curves=True))


def _setting(row: pd.Series) -> str:
    lr = row.get("hp_lr")
    return "defaults" if lr is None or (isinstance(lr, float) and np.isnan(lr)) else f"lr={lr:g}"


def _order(values, first) -> list:
    return [v for v in first if v in set(values)] + sorted(set(values) - set(first))


def table(df: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """Long format: one row per (workload, method) at its reported setting."""
    if df.empty:
        return pd.DataFrame(columns=["workload", "method", "mean", "std", "n_seeds"])
    df = df.copy()
    df["setting"] = df.apply(_setting, axis=1)
    df["err"] = np.where(df.diverged.astype(bool), 100.0, df.test_error.astype(float))
    rows = []
    for wl in _order(df.benchmark.unique(), WORKLOADS):
        sub = df[df.benchmark == wl]
        picked = {}
        for m in _order(sub.optimizer.unique(), METHODS):
            g = sub[sub.optimizer == m]
            scores = g.groupby("setting").err.mean()
            best = scores.idxmin()
            picked[m] = (g[g.setting == best], len(scores), len(g))
        marks = mark_bold({m: p[0].err.to_numpy(float) for m, p in picked.items()}, alpha)
        for m, (g, n_settings, n_runs) in picked.items():
            err = g.err.to_numpy(float)
            rows.append({"workload": wl, "method": m, "label": method_label(m), "setting": g.setting.iloc[0],
                         "mean": float(err.mean()), "std": float(err.std(ddof=1)) if len(err) > 1 else np.nan,
                         "n_seeds": len(err), "n_diverged": int(g.diverged.astype(bool).sum()),
                         "train_error": float(g.train_error.astype(float).mean()),
                         "train_loss": float(g.train_loss.astype(float).mean()),
                         "bold": marks[m][0], "p_value": marks[m][1], "n_settings": n_settings,
                         "tuning_runs": n_runs if m in TUNED else 0,
                         "epochs": float(g.epochs.iloc[0]), "seconds_mean": float(g.seconds.astype(float).mean()),
                         "data_original": bool(g.data_original.astype(bool).all())})
    return pd.DataFrame(rows)


def _cell(r: pd.Series, bold: tuple[str, str]) -> str:
    txt = f"{r['mean']:.2f} ± {r['std']:.2f}" if np.isfinite(r["std"]) else f"{r['mean']:.2f}"
    if r["n_diverged"]:
        txt += f" ({r['n_diverged']} div.)"
    return f"{bold[0]}{txt}{bold[1]}" if r["bold"] else txt


def markdown(t: pd.DataFrame) -> str:
    wls = _order(t.workload.unique(), WORKLOADS)
    methods = _order(t.method.unique(), METHODS)
    head = "| method | " + " | ".join(WORKLOAD_LABELS.get(w, w) for w in wls) + " |"
    lines = ["# Table 4: today's small workloads (issue 34)", "",
             ("Final test error (%), mean ± std over seeds; **bold**: best of its workload and every method not "
             f"significantly different from it (Welch's t-test, p = {ALPHA}). Written by `python -m analysis` from "
             "results/records/workloads (docs/table4.md: the workloads, budgets and subsets, and where vSGD loses)."),
             ("* CIFAR: approximate pixels (the JPEG copy of batch 1). SGD-mom: SGD with momentum 0.9 at the "
             "learning rate of its grid with the lowest mean test error (the grid's runs are its tuning cost, "
             "last rows). A blank cell: not run yet. (n div.): members whose loss became non-finite, counted as 100 %; "
             "with 3 seeds Welch's test cannot separate such a spread cell from the best, so it can be bold (as "
             "in Tables 2-3): read the count."), "", head, "|---" * (len(wls) + 1) + "|"]
    for m in methods:
        cells = []
        for w in wls:
            r = t[(t.workload == w) & (t.method == m)]
            cells.append(_cell(r.iloc[0], ("**", "**")) if len(r) else "")
        lines.append(f"| {method_label(m)} | " + " | ".join(cells) + " |")
    for what, col in (("seeds", "n_seeds"), ("SGD-mom lr picked", "setting"), ("runs to tune SGD-mom", "tuning_runs")):
        cells = []
        for w in wls:
            sub = t[t.workload == w]
            if col == "n_seeds":
                cells.append(f"{sub.n_seeds.min()}-{sub.n_seeds.max()}" if sub.n_seeds.min() != sub.n_seeds.max()
                             else str(sub.n_seeds.min()))
            else:
                s = sub[sub.method == "sgdm"]
                cells.append(str(s[col].iloc[0]) if len(s) else "")
        lines.append(f"| *{what}* | " + " | ".join(cells) + " |")
    budget = ", ".join(f"{WORKLOAD_LABELS.get(w, w)} {t[t.workload == w].epochs.iloc[0]:g}" for w in wls)
    lines += ["", f"Budgets (epochs over the fixed subset): {budget}."]
    return "\n".join(lines) + "\n"


def latex(t: pd.DataFrame) -> str:
    wls = _order(t.workload.unique(), WORKLOADS)
    methods = _order(t.method.unique(), METHODS)
    out = ["\\begin{tabular}{l" + "r" * len(wls) + "}", "\\toprule",
           "method & " + " & ".join(WORKLOAD_LABELS.get(w, w).replace("*", "$^*$") for w in wls) + " \\\\",
           "\\midrule"]
    for m in methods:
        cells = []
        for w in wls:
            r = t[(t.workload == w) & (t.method == m)]
            cells.append(_cell(r.iloc[0], ("\\textbf{", "}")).replace("±", "$\\pm$") if len(r) else "")
        out.append(f"{method_label(m)} & " + " & ".join(cells) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(out)


def curves_figure(df: pd.DataFrame, t: pd.DataFrame, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.figures import RC, style

    wls = _order(df.benchmark.unique(), WORKLOADS)
    with plt.rc_context(RC):
        fig, axes = plt.subplots(1, len(wls), figsize=(2.3 * len(wls), 2.6), squeeze=False)
        handles = {}
        for ax, wl in zip(axes[0], wls):
            for m in _order(df[df.benchmark == wl].optimizer.unique(), METHODS):
                if is_variant(m):  # the table's history rows; the figures show the current defaults
                    continue
                pick = t[(t.workload == wl) & (t.method == m)]
                g = df[(df.benchmark == wl) & (df.optimizer == m)]
                g = g[g.apply(_setting, axis=1) == pick.setting.iloc[0]]
                pts = pd.DataFrame([p for c in g.curve for p in c])
                if pts.empty:
                    continue
                mean = pts.groupby("epoch").test_error.mean()
                st = style(m) if m != "sgdm" else {"color": "#2ca02c", "ls": "--"}
                st = {k: v for k, v in st.items() if k in ("color", "ls", "linestyle", "lw", "marker")}
                (h,) = ax.plot(mean.index, mean.to_numpy(), lw=1.2 if m.startswith("vsgd") else 0.8, **st)
                handles[method_label(m)] = h
            ax.set_title(WORKLOAD_LABELS.get(wl, wl))
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("test error (%)")
        fig.tight_layout(rect=(0, 0, 1, 0.93))
        fig.legend(handles.values(), handles.keys(), loc="upper center", ncol=min(7, len(handles)),
                   bbox_to_anchor=(0.5, 0.0), frameon=False)
        fig.suptitle("Table 4 workloads: test error during training (mean over seeds; a diverged member drops out after its "
                     "last point; SGD-mom at its picked lr)")
        return save_png_pdf(fig, out, "table4_curves")


def _name_column(ax, named: list[tuple[float, float, str]], x_text: float) -> None:
    """Label points in a column at ``x_text``, each label at its point's height where the labels do not collide
    (at least a line apart, spread upwards from the lowest, shifted down as a whole if they leave the axes),
    with a thin line from label to point: clustered points stay readable."""
    if not named:
        return
    lo, hi = ax.get_ylim()
    gap = 0.085 * (hi - lo)
    ys, prev = [], -np.inf
    for mean, _, _ in sorted(named):
        prev = max(mean, prev + gap)
        ys.append(prev)
    over = ys[-1] - (hi - 0.03 * (hi - lo))
    if over > 0:
        ys = [y - over for y in ys]
    for (mean, x, text), y in zip(sorted(named), ys):
        ax.annotate(text, (x, mean), xytext=(x_text, y), textcoords="data", fontsize=6, va="center",
                    arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "#999999", "shrinkA": 0, "shrinkB": 2})
    ax.set_ylim(lo, hi)


def tuning_cost_figure(df: pd.DataFrame, t: pd.DataFrame, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.figures import RC

    wls = _order(t.workload.unique(), WORKLOADS)
    with plt.rc_context(RC):
        fig, axes = plt.subplots(1, len(wls), figsize=(2.3 * len(wls), 2.6), squeeze=False)
        for ax, wl in zip(axes[0], wls):
            sub = t[(t.workload == wl) & ~t.method.map(is_variant)]
            free = [m for m in METHODS if m not in TUNED and not is_variant(m)]
            named = []  # (mean, x, label) of the points named in a column to their right
            for _, r in sub.iterrows():  # tuning-free methods side by side around x = 1 (so that none hides another)
                x = r.n_settings + (0.06 * (free.index(r.method) - len(free) / 2) if r.method in free else 0.0)
                vs = r.method.startswith("vsgd")
                ax.errorbar(x, r["mean"], yerr=r["std"] if np.isfinite(r["std"]) else None, fmt="o",
                            ms=5 if vs else 3.5, color="black" if vs else ("#2ca02c" if r.method == "sgdm" else "#7f7f7f"),
                            capsize=1.5, lw=0.7)
                if r.method == "sgdm":
                    ax.annotate("SGD-mom", (x, r["mean"]), fontsize=6, xytext=(3, 0), textcoords="offset points",
                                va="center")
                elif vs or r.method == "adam":
                    named.append((r["mean"], x, method_label(r.method)))
            g = df[(df.benchmark == wl) & (df.optimizer == "sgdm")]
            if len(g):  # every grid setting, as if it had been picked blind (one run of the search)
                m = g.assign(err=np.where(g.diverged.astype(bool), 100.0, g.test_error.astype(float))).groupby("hp_lr").err.mean()
                ax.scatter(np.full(len(m), 1.5), m.to_numpy(), marker="x", s=14, color="#2ca02c", lw=0.8)
            ax.set_xticks(range(1, 6))
            ax.set_xlim(0.4, 5.5)
            _name_column(ax, named, x_text=2.0)
            ax.set_title(WORKLOAD_LABELS.get(wl, wl))
            ax.set_xlabel("settings tried (x seeds)")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("final test error (%)")
        fig.suptitle("Tuning cost, Table 4 family: black = vSGD, grey = Adam and the PyPI tuning-free optimizers (1 setting);\n"
                     "green = SGD with momentum (o: at its best lr, after its whole grid; x at 1.5: each lr of the grid "
                     "alone)", fontsize=7)
        fig.tight_layout(rect=(0, 0, 1, 0.9))
        return save_png_pdf(fig, out, "table4_tuning_cost")


def write_all(store: Path | None, out: Path) -> list[Path]:
    """Table 4 and its figures; nothing (and a note) when the family has no records."""
    from experiments import results

    df = load(store)
    if df.empty:
        log.info("table4: no records of the workload family yet (python -m experiments.run experiment=table4)")
        return []
    t = table(df)
    out = Path(out)
    written = [results.write_atomic(out / "table4.md", markdown(t)),
               results.write_atomic(out / "table4.tex", latex(t)),
               results.write_atomic(out / "table4.csv", t.to_csv(index=False, float_format="%.6g"))]
    written += curves_figure(df, t, out / "figures")
    written += tuning_cost_figure(df, t, out / "figures")
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=PROJECT_ROOT / "results")
    a = ap.parse_args(argv)
    for p in write_all(a.store, a.out):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
