"""Supp. Figs. 9 and 10 of paper 1: vSGD's sensitivity to the slow-start constant C (App. E).

    supp_fig10_c_sensitivity  test error after epochs 1, 3 and 6 against C, vSGD-l/b/g on M0, M1, M2
                              (records of experiment=supp_fig10_c_sensitivity; C = d/10 drawn as a line,
                              our default runs and the paper's Table 3 value on it)
    supp_fig9_critical_c      the critical C of vSGD-l against the dimension d, with the line C = d/10:
                              the benchmarks (records of experiment=supp_fig9_critical_c) and XOR MLPs of
                              widths 2 .. 10^4 (<store>/synthetic/supp_fig9_xor.jsonl, committed as
                              results/records/synthetic/; synthetic/c_sensitivity.py)

Definitions (Supp. Fig. 9; results/README.md):

* **unstable** (:func:`unstable`): a run is unstable when the runner found its parameters non-finite
  (``diverged``) or when its training loss at some checkpoint of the run is non-finite or more than
  ``BLOWUP`` = 2 times its loss at step 0 (the checkpoint before any update, ``curve_at_start``). The
  paper's instability is "too large initial steps": such steps throw the loss up, far above where the run
  started, rather than to NaN (a tanh MLP with a softmax keeps finite gradients). A run that never moves
  keeps its initial loss (ratio 1), a stable one lowers it.
* **critical C** (:func:`critical_c`): the largest C of the grid at which at least 10 % of the runs are
  unstable (the paper's definition). When no C of the grid is, it lies below the grid (drawn as such);
  when the largest C is, it is at least that.

Also writes ``results/supp_fig9_critical_c.csv`` (per setup and C: runs, unstable runs; per setup the
critical C, d, the factor (d/10) / critical C, and the critical C under BLOWUP = 1.25 and 10 and under the
non-finite test alone) and ``results/supp_fig9_longer_runs.csv`` (the verdict of the short runs against
longer runs of the same members).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.common import LABELS, PROJECT_ROOT, paper_tables, save_png_pdf
from synthetic.c_sensitivity import sync_with_records

log = logging.getLogger("analysis")

BLOWUP = 2.0  # unstable: a checkpoint's training loss above BLOWUP x its loss at step 0
BLOWUP_ALTERNATIVES = (1.25, 10.0)  # reported beside: how much the critical C depends on the threshold
MIN_UNSTABLE = 0.1  # the paper: "the largest [C] for which at least 10% of the runs give rise to instability"
VARIANTS = ("vsgd_l", "vsgd_b", "vsgd_g")
FIG10_BENCHMARKS = ("M0", "M1", "M2")
FIG10_EPOCHS = (1.0, 3.0, 6.0)
FIG10_EXPERIMENT = "supp_fig10_c_sensitivity"
FIG9_EXPERIMENT = "supp_fig9_critical_c"
XOR_FILE = "supp_fig9_xor.jsonl"
COLORS = {"vsgd_l": "#1f77b4", "vsgd_b": "#2ca02c", "vsgd_g": "#d62728"}
EPOCH_ALPHA = {1.0: 0.3, 3.0: 0.6, 6.0: 1.0}


# -- definitions ----------------------------------------------------------------------------------
def loss_ratios(curve: Sequence[dict]) -> list[float]:
    """Training loss at each checkpoint after step 0 over the loss at step 0 (inf where not finite)."""
    if not curve or curve[0].get("step") != 0:
        raise ValueError("the curve has no checkpoint at step 0: run with curve_at_start=true")
    l0 = float(curve[0]["train_loss"])
    return [float(p["train_loss"]) / l0 if math.isfinite(float(p["train_loss"])) else math.inf for p in curve[1:]]


def unstable(curve: Sequence[dict], diverged: bool, blowup: float = BLOWUP, upto: int | None = None) -> bool:
    """The instability test (module docstring): non-finite parameters, or a checkpoint's training loss (up to
    step ``upto``) non-finite or above ``blowup`` x the loss at step 0. ``blowup=inf``: non-finite only."""
    if diverged:
        return True
    points = [p for p in curve[1:] if upto is None or p["step"] <= upto]
    return any(r > blowup for r in loss_ratios([curve[0], *points]))


def critical_c(frac_unstable: pd.Series, min_frac: float = MIN_UNSTABLE) -> tuple[float, str]:
    """(critical C, kind) from the share of unstable runs per C (index): the largest C with share >= min_frac.
    kind: "" (found), "below" (no C of the grid: value is the smallest C tried), "at least" (the largest C)."""
    s = frac_unstable.sort_index()
    hit = s[s >= min_frac - 1e-12]
    if hit.empty:
        return float(s.index[0]), "below"
    c = float(hit.index[-1])
    return c, "at least" if c == float(s.index[-1]) else ""


def rule_c(d: int) -> float:
    """The default C of the code and the paper's rule of thumb: max(1, d/10) (vsgd/vsgd.py)."""
    return max(1.0, d / 10.0)


def n_params(benchmark: str) -> int:
    """d of a benchmark from conf/benchmark/<name>.yaml: sum of fan_in x fan_out + fan_out over layers."""
    import yaml

    layers = yaml.safe_load((PROJECT_ROOT / "conf" / "benchmark" / f"{benchmark.lower()}.yaml").read_text())["layers"]
    return int(sum(a * b + b for a, b in itertools.pairwise(layers)))


# -- data ------------------------------------------------------------------------------------------
def _records(store: Path) -> pd.DataFrame:
    from experiments import results

    if not Path(store).is_dir():
        raise FileNotFoundError(f"no results store at {store}")
    df = results.load(store, with_curves=True)
    if df.empty or "hp_c" not in df:
        return df.iloc[0:0]
    return df[df.optimizer.isin(VARIANTS)].copy()


def fig9_runs(store: Path) -> pd.DataFrame:
    """One row per run of Supp. Fig. 9: setup, family, d, c, seed, length (updates), unstable (+ variants)."""
    rows = []
    df = _records(store)
    if not df.empty:
        df = df[(df.experiment == FIG9_EXPERIMENT) & (df.optimizer == "vsgd_l")]
    for r in df.itertuples():
        rows.append({"setup": r.benchmark, "family": "benchmark", "d": n_params(r.benchmark), "c": float(r.hp_c),
                     "seed": int(r.seed), "updates": int(r.steps),
                     "diverged": bool(r.diverged), "curve": r.curve})
    path = Path(store) / "synthetic" / XOR_FILE
    sync_with_records(path, Path(store))  # a fresh clone's store gets the committed runs (results/records/synthetic)
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                rows.append({"setup": r["setup"], "family": "xor", "d": int(r["d"]), "c": float(r["hp"]["c"]),
                             "seed": int(r["seed"]), "updates": int(r["steps"]), "diverged": bool(r["diverged"]),
                             "curve": r["curve"]})
    if not rows:
        raise FileNotFoundError(f"no Supp. Fig. 9 runs in {store} (experiment={FIG9_EXPERIMENT}, synthetic/{XOR_FILE})")
    out = pd.DataFrame(rows)
    out["short"] = out.updates == out.groupby("setup").updates.transform("min")  # longer runs: the check
    out["max_ratio"] = [max(loss_ratios(c), default=1.0) for c in out.curve]
    out["unstable"] = [unstable(c, d) for c, d in zip(out.curve, out.diverged)]
    for k in BLOWUP_ALTERNATIVES:
        out[f"unstable_{k:g}"] = [unstable(c, d, k) for c, d in zip(out.curve, out.diverged)]
    out["unstable_nonfinite"] = [unstable(c, d, math.inf) for c, d in zip(out.curve, out.diverged)]
    return out


def critical_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per setup (short runs): d, the rule's C, the critical C (and kind), the factor (d/10) / critical C,
    the C grid with runs and unstable runs per C, and the critical C under the other thresholds."""
    out = []
    short = runs[runs.short]
    for setup, g in short.groupby("setup", sort=False):
        d = int(g.d.iloc[0])
        by_c = g.groupby("c")
        crit, kind = critical_c(by_c.unstable.mean())
        row = {"setup": setup, "family": g.family.iloc[0], "d": d, "rule_c": rule_c(d), "critical_c": crit,
               "kind": kind, "factor": rule_c(d) / crit, "updates": int(g.updates.iloc[0]),
               "seeds_min": int(by_c.size().min()),
               "grid": " ".join(f"{c:g}" for c in by_c.size().index),
               "unstable_per_c": " ".join(f"{int(u)}/{int(n)}" for u, n in zip(by_c.unstable.sum(), by_c.size()))}
        for col in [f"unstable_{k:g}" for k in BLOWUP_ALTERNATIVES] + ["unstable_nonfinite"]:
            c2, k2 = critical_c(by_c[col].mean())
            row[f"critical_c_{col.removeprefix('unstable_')}"] = f"{'<' if k2 == 'below' else '>=' if k2 else ''}{c2:g}"
        out.append(row)
    t = pd.DataFrame(out)
    return t.sort_values(["d", "setup"]).reset_index(drop=True) if len(t) else t


def longer_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The short runs' verdict against longer runs of the same (setup, C, seed): per (setup, C, length)."""
    short = runs[runs.short].set_index(["setup", "c", "seed"])
    rows = []
    for (setup, c, n), g in runs[~runs.short].groupby(["setup", "c", "updates"]):
        s = short.reindex(pd.MultiIndex.from_arrays([g.setup, g.c, g.seed]))
        both = s.unstable.notna().to_numpy()
        rows.append({"setup": setup, "c": c, "short_updates": int(s.updates.dropna().iloc[0]) if both.any() else None,
                     "long_updates": int(n), "runs": int(both.sum()),
                     "unstable_short": int(s.unstable[both].sum()), "unstable_long": int(g.unstable[both].sum()),
                     "verdicts_differ": int((s.unstable[both].astype(bool).to_numpy()
                                             != g.unstable[both].to_numpy()).sum())})
    return pd.DataFrame(rows)


def fig10_points(store: Path) -> pd.DataFrame:
    """Test error at epochs 1, 3, 6 per (benchmark, variant, C, epoch): mean over seeds, n, n diverged.
    C = 0 rows (the default, max(1, d/10)) are the default runs, reported at C = d/10."""
    df = _records(store)
    if df.empty:
        raise FileNotFoundError("no vSGD records in the store")
    df = df[df.benchmark.isin(FIG10_BENCHMARKS) & np.isclose(df.epochs.astype(float), 6.0)]
    df = df[(df.experiment == FIG10_EXPERIMENT) | (df.hp_c.astype(float) == 0.0)]
    if not (df.experiment == FIG10_EXPERIMENT).any():
        raise FileNotFoundError(f"no records of experiment={FIG10_EXPERIMENT} in the store")
    rows = []
    for r in df.itertuples():
        d = n_params(r.benchmark)
        c = float(r.hp_c) if float(r.hp_c) > 0 else rule_c(d)
        at = {round(float(p["epoch"]), 6): float(p["test_error"]) for p in (r.curve or [])}
        for e in FIG10_EPOCHS:
            err = at.get(e, 100.0 if r.diverged else math.nan)  # a diverged run: 100 % (the runner's convention)
            rows.append({"benchmark": r.benchmark, "optimizer": r.optimizer, "c": c, "default": float(r.hp_c) == 0.0,
                         "epoch": e, "test_error": err, "diverged": bool(r.diverged), "seed": int(r.seed),
                         "cpu_seconds": float(r.seconds) if r.device == "cpu" else math.nan})
    pts = pd.DataFrame(rows)
    return (pts.groupby(["benchmark", "optimizer", "default", "c", "epoch"])
            .agg(test_error=("test_error", "mean"), n=("seed", "size"), diverged=("diverged", "sum"),
                 cpu_seconds=("cpu_seconds", "mean")).reset_index())


# -- figures ---------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_fig10(store: Path, out: Path) -> list[Path]:
    plt = _plt()
    from matplotlib.lines import Line2D

    pts = fig10_points(store)
    paper = paper_tables()
    grid = pts[~pts.default]
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.9))
    for ax, bench in zip(axes, FIG10_BENCHMARKS):
        d = n_params(bench)
        ax.axvline(rule_c(d), color="black", lw=1, ls=":", zorder=1)
        ax.text(rule_c(d), 0.99, f" C = d/10\n = {rule_c(d):,.0f}", transform=ax.get_xaxis_transform(), fontsize=7,
                va="top", ha="left")
        sub = grid[grid.benchmark == bench]
        ax.set_title(f"{bench} (d = {d:,})", fontsize=9)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(0.3, 3e8)
        ax.set_xticks([1, 1e2, 1e4, 1e6, 1e8])
        ax.set_xlabel("C (slow-start constant)")
        if sub.empty:
            per_seed = pts[(pts.benchmark == bench) & pts.default].cpu_seconds.mean()  # a 6-epoch run on the CPU
            need = 9 * 2 * len(VARIANTS) * per_seed / 3600
            ax.text(0.5, 0.5, "not run" + (f"\nprojected: {need:.0f} CPU-hours\n(9 C x 2 seeds x 3 variants,\n"
                                           f"{per_seed / 60:.0f} min per run)" if math.isfinite(need) else ""),
                    transform=ax.transAxes, ha="center", va="center", fontsize=8,
                    bbox={"facecolor": "white", "edgecolor": "none"})
            ax.set_yticks([])
            ax.minorticks_off()
            continue
        for opt in VARIANTS:
            for e in FIG10_EPOCHS:
                s = sub[(sub.optimizer == opt) & (sub.epoch == e)].sort_values("c")
                if len(s):
                    ax.plot(s.c, s.test_error, "-o", color=COLORS[opt], alpha=EPOCH_ALPHA[e], ms=3.5, lw=1.2)
            dflt = pts[(pts.benchmark == bench) & pts.default & (pts.optimizer == opt) & (pts.epoch == 6.0)]
            if len(dflt):
                ax.plot(dflt.c, dflt.test_error, "*", color=COLORS[opt], ms=9, mec="black", mew=0.5, zorder=5)
            if ("test", bench, opt) in paper:
                ax.plot([rule_c(d) * 1.6], [paper["test", bench, opt]], "D", mfc="none", mec=COLORS[opt], ms=6,
                        mew=1.2, zorder=5)
        low = 0.8 * sub.test_error.min()
        ax.set_ylim(low, 100)
        ticks = [t for t in (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 100) if t >= low]
        ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        n = sub.groupby("optimizer").n.max()
        ax.set_title(f"{bench} (d = {d:,})\nseeds per C: " + ", ".join(
            f"{LABELS[o].removeprefix('vSGD')} {int(n[o]) if o in n else 'not run'}" for o in VARIANTS), fontsize=9)
    axes[0].set_ylabel("test error (%), log scale")
    handles = [Line2D([], [], color=COLORS[o], marker="o", ms=3.5, label=LABELS[o]) for o in VARIANTS]
    handles += [Line2D([], [], color="grey", alpha=EPOCH_ALPHA[e], lw=3, label=f"after epoch {e:g}") for e in FIG10_EPOCHS]
    handles += [Line2D([], [], ls="", marker="*", color="grey", mec="black", ms=9,
                       label="our default runs (C = d/10, 10 seeds), epoch 6"),
                Line2D([], [], ls="", marker="D", mfc="none", mec="grey", ms=6,
                       label="paper, Table 3 (C = d/10), epoch 6 (drawn right of the line)")]
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=7.5, frameon=False)
    fig.suptitle("Supp. Fig. 10: test error against the slow-start constant C (vSGD-l, -b, -g; mean over seeds)",
                 fontsize=10)
    fig.subplots_adjust(left=0.07, right=0.98, top=0.8, bottom=0.3, wspace=0.22)
    return save_png_pdf(fig, out, "supp_fig10_c_sensitivity", dpi=150)


def _num(x: float) -> str:
    """Two significant digits, without an exponent up to 10^5."""
    return f"{x:.2g}" if x < 100 else f"{float(f'{x:.2g}'):,.0f}"


def draw_fig9(store: Path, out: Path) -> list[Path]:
    plt = _plt()
    runs = fig9_runs(store)
    table = critical_table(runs)
    if table.empty:
        raise FileNotFoundError("no short Supp. Fig. 9 runs in the store")
    written = []
    csv = Path(out).parent / "supp_fig9_critical_c.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(csv, index=False, float_format="%.6g")
    written.append(csv)
    longer = longer_runs(runs)
    if len(longer):
        path = Path(out).parent / "supp_fig9_longer_runs.csv"
        longer.to_csv(path, index=False)
        written.append(path)

    fig, (ax, tab) = plt.subplots(1, 2, figsize=(10.0, 5.4), gridspec_kw={"width_ratios": [2.1, 1.0]})
    ds = np.logspace(0, 7, 50)
    ax.plot(ds, np.maximum(1.0, ds / 10), "k:", lw=1.2, label="C = d/10 (the rule; max(1, d/10) in the code)")
    ax.plot(ds, ds / 100, color="grey", ls="--", lw=0.8, label="C = d/100 (the paper: every critical C\n"
                                                                "at least a factor 10 below d/10)")
    grids = runs[runs.short].groupby("setup").c.apply(lambda s: sorted(set(s)))
    markers = {"M0": "o", "M1": "s", "M2": "D", "C0": "v", "C1": "^", "CR": "P"}
    lines = []
    for r in table.itertuples():
        xor = r.family == "xor"
        style = ({"marker": "*", "color": "green", "ms": 11} if xor
                 else {"marker": markers.get(r.setup, "o"), "color": "C0", "ms": 8})
        if r.kind == "below":  # never unstable on the grid: below its smallest C
            ax.annotate("", xy=(r.d, r.critical_c / 2.5), xytext=(r.d, r.critical_c),
                        arrowprops={"arrowstyle": "->", "color": style["color"], "lw": 1})
            ax.plot([r.d], [r.critical_c], ls="", mfc="none", mec=style["color"], marker=style["marker"], ms=style["ms"])
        else:
            above = [c for c in grids[r.setup] if c > r.critical_c]  # the threshold lies below the next C tried
            if above:
                ax.plot([r.d, r.d], [r.critical_c, above[0]], color=style["color"], lw=1, alpha=0.6)
            ax.plot([r.d], [r.critical_c], ls="", mec="black", mew=0.4, **style)
        if not xor:
            ax.annotate(r.setup, (r.d, r.critical_c), textcoords="offset points", xytext=(-4, 5), ha="right",
                        fontsize=8, color="C0")
        bound = {"below": "<", "at least": ">="}.get(r.kind, "")
        factor = {"below": ">", "at least": "<="}.get(r.kind, "")
        lines.append(f"{r.setup:<9} {r.d:>9,} {bound + f'{r.critical_c:g}':>7} {factor + _num(r.factor):>7}")
    ax.plot([], [], "*", color="green", ms=11, mec="black", mew=0.4, ls="", label="XOR, MLP [2, H, 2], H = 2 .. 10,000 (ours)")
    ax.plot([], [], "o", color="C0", ms=8, mec="black", mew=0.4, ls="", label="benchmarks (named)")
    if (table.kind == "below").any():
        ax.plot([], [], "*", mfc="none", mec="green", ms=11, ls="", label="never unstable on the grid")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("d (parameters)")
    ax.set_ylabel("critical C (largest C with >= 10 % unstable runs)")
    ax.set_xlim(4, 3e6)
    ax.set_ylim(0.1, 3e5)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("Supp. Fig. 9: critical C against d (vSGD-l)", fontsize=10)
    tab.axis("off")
    head = f"{'setup':<9} {'d':>9} {'crit. C':>7} {'factor':>7}"
    tab.text(0.0, 1.0, "\n".join([head, "-" * len(head), *lines]), family="monospace", fontsize=7.5, va="top",
             transform=tab.transAxes)
    lengths = ", ".join(f"{'benchmarks' if f == 'benchmark' else 'XOR'} {'/'.join(f'{u:,}' for u in sorted(set(g.updates)))}"
                        for f, g in table.groupby("family"))
    tab.text(0.0, 0.02, f"factor = (d/10) / critical C\n(the paper: at least 10 for\nevery setup of its Fig. 9)\n\n"
                        f"vSGD-l, {table.seeds_min.min()}+ seeds per C; a run is\nunstable when its training loss "
                        f"exceeds\n{BLOWUP:g} x its initial value or is not finite\n(results/README.md).\n"
                        f"Run length (updates):\n{lengths}.\nBar: up to the next C tried.",
             fontsize=7.5, va="bottom", transform=tab.transAxes)
    fig.tight_layout()
    return written + save_png_pdf(fig, out, "supp_fig9_critical_c", dpi=150)


def draw_all(store: Path, out: Path) -> list[Path]:
    """Both figures; one whose data is absent is skipped with a note (FileNotFoundError if both are)."""
    written: list[Path] = []
    missing = []
    for draw in (draw_fig10, draw_fig9):
        try:
            written += draw(Path(store), Path(out))
        except FileNotFoundError as exc:
            log.info("%s skipped: %s", draw.__name__, exc)
            missing.append(str(exc))
    if not written:
        raise FileNotFoundError("; ".join(missing))
    return written
