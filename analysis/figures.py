"""The figures of paper 1 from the results store (matplotlib, Agg; each as PNG and PDF).

    fig3_mnist       Fig. 3: train vs test error on M0 M1 M2, every setting we ran (seed mean), the best-tuned
                     setting large with a black edge, tuning-free methods large with a white edge; axes zoomed,
                     and under each panel a close-up of the best-tuned and tuning-free methods near the lowest.
    supp_fig4_cifar  Supp. Fig. 4: the same on C0 C1 CR.
    supp_fig5_all    Supp. Fig. 5: all six, zoomed out (log axes where a panel spans a decade or more). In all
                     three, a setting whose seeds all diverged is a cross beside the panel's top-right corner.
    supp_fig6_rates  Supp. Fig. 6: the median learning rate over the parameters (top row), and the min / max
                     (bottom row, the band between them shaded), over epochs on C0 and M0 (log-log), each the
                     median over seeds of a method at its Table 2/3 setting.
    supp_fig7_test / supp_fig8_train
                     Supp. Figs. 7-8: final test / train error of every SGD and AdaGrad setting against eta0
                     (SGD's decay gamma by colour and marker) and the vSGD variants as horizontal lines; settings
                     that diverged or lie above the scale go in a band above it, one row per gamma (and AdaGrad);
                     a method run at one setting only is named under the panel's title.
    beyond_tuning_cost
                     Issue 9: per benchmark, final test error (mean +- std over seeds, the Table 3 setting)
                     against the number of settings its tuning must try (1 for a tuning-free method, the grid
                     size for a tuned one; each setting run at 2 seeds in our Table 1 grids); tuning-free
                     methods filled, tuned ones open.

Sizes are the paper's: a double-column figure is 6.75 in wide, fonts 7-8 pt. Every function returns the
files it wrote and writes nothing (a logged note) when its data is absent.
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.transforms import offset_copy

from analysis import common
from analysis.common import label, log
from analysis.tables import Inputs, table1, table23, table23_records

_save = common.save_png_pdf  # one name, so tests can capture the figure as it is saved

WIDTH = 6.75  # inches: the paper's text width (two columns)
STYLE = {  # the paper's colours where it names them (SGD green, AdaGrad yellow, vSGD black)
    "sgd": {"color": "#2ca02c", "marker": "o"},
    "adagrad": {"color": "#e6b800", "marker": "o"},
    "smd": {"color": "#1f77b4", "marker": "s"},
    "amari": {"color": "#9467bd", "marker": "^"},
    "almeida": {"color": "#8c564b", "marker": "v"},
    "vsgd_l": {"color": "black", "marker": "o"},
    "vsgd_b": {"color": "#555555", "marker": "s"},
    "vsgd_g": {"color": "#999999", "marker": "D"},
    "vsgd_fd": {"color": "#d62728", "marker": "P"},
    # issue 9: today's tuning-free optimizers (fixed colours, so a method looks the same in every run)
    "adam": {"color": "#ff7f0e", "marker": "*"},
    "dadapt_sgd": {"color": "#17becf", "marker": "<"},
    "dadapt_adam": {"color": "#0b6e75", "marker": ">"},
    "prodigy": {"color": "#e377c2", "marker": "p"},
    "sgd_schedulefree": {"color": "#bcbd22", "marker": "h"},
    "adamw_schedulefree": {"color": "#6b6b00", "marker": "H"},
    "dog": {"color": "#8c1d40", "marker": "d"},
    "cocob": {"color": "#4a90d9", "marker": "X"},
}
OTHER = ["#17becf", "#bcbd22", "#e377c2", "#7f7f7f", "#ff7f0e"]
RC = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7, "xtick.labelsize": 7,
      "ytick.labelsize": 7, "figure.dpi": 100, "savefig.dpi": 150, "axes.grid": True, "grid.alpha": 0.25,
      "grid.linewidth": 0.5}


def style(method: str) -> dict:
    if method in STYLE:
        return STYLE[method]
    return {"color": OTHER[hash(method) % len(OTHER)], "marker": "X"}


def _log_axis(axis, subs: tuple = (1, 2, 5), numticks: int = 12) -> None:
    """Log scale with plain-number labels at 1, 2, 5 x 10^k (no overlapping 10^x minor labels)."""
    from matplotlib import ticker

    axis.set_major_locator(ticker.LogLocator(base=10, subs=subs, numticks=numticks))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}".replace("e-0", "e-").replace("e+0", "e")))
    axis.set_minor_formatter(ticker.NullFormatter())


def _eta_axis(axis, values) -> None:
    """An eta0 axis: 1 and 3 x 10^k over a narrow range; over a whole grid (1e-7 .. 10), at most 5 decades
    labelled, so that the labels never overlap."""
    v = np.asarray([x for x in values if np.isfinite(x) and x > 0])
    span = np.log10(v.max() / v.min()) if len(v) else 0.0
    if span <= 2:
        _log_axis(axis, subs=(1, 3))
    else:
        _log_axis(axis, subs=(1,), numticks=5)


def _width(ncols: int) -> float:
    """Figure width for ncols panels: the paper's text width for 3, proportionally less (not below 2/3)."""
    return WIDTH * max(ncols, 2) / 3


def unit(bench: str) -> str:
    return "reconstruction error" if bench == "CR" else "error (%)"


# -- data the figures share ---------------------------------------------------------------------
def setting_means(inp: Inputs) -> pd.DataFrame:
    """One row per (benchmark, method, setting): seed-mean train / test error, diverged share, best flag, and
    whether Table 1 counts the grid as searched in full."""
    df = inp.df
    if df.empty:
        return pd.DataFrame()
    g = df.groupby(["benchmark", "optimizer", "setting"], sort=False)
    out = g.agg(train=("train_error", "mean"), test=("test_error", "mean"), n=("seed", "size"),
                diverged=("diverged", "mean")).reset_index()
    t1 = table1(inp)
    best = {(r.benchmark, r.method): r.setting_key for _, r in t1.iterrows()}
    searched = {(r.benchmark, r.method): bool(r.searched) for _, r in t1.iterrows()} if "searched" in t1 else {}
    out["best"] = [best.get((b, m)) == s for b, m, s in zip(out.benchmark, out.optimizer, out.setting)]
    out["searched"] = [searched.get((b, m), False) for b, m in zip(out.benchmark, out.optimizer)]  # Table 1's word
    out["tuned"] = [inp.tuned(m) for m in out.optimizer]
    for name in ("eta0", "gamma"):
        out[name] = [dict(s).get(name, np.nan) for s in out.setting]
    return out


def _legend(fig, handles: dict, ncol: int | None = None) -> None:
    """One legend for the whole figure, below the panels, as many columns as the figure's width holds."""
    if handles:
        fits = max(2, int(fig.get_figwidth() / 1.1))  # about 1.1 in per entry at 7 pt
        fig.legend(list(handles.values()), list(handles.keys()), loc="upper center",
                   ncol=min(len(handles), ncol or fits, fits),
                   frameon=False, bbox_to_anchor=(0.5, 0.0), handletextpad=0.3, columnspacing=1.0)


# -- Fig. 3 and Supp. Figs. 4-5: train vs test --------------------------------------------------
BEST_TUNED = "large, black edge: best-tuned setting"
TUNING_FREE = "large, white edge: tuning-free"
DIVERGED = "settings whose seeds all diverged (top-left corner: their number)"


def _zoom(values: np.ndarray, focus: np.ndarray) -> tuple[float, float]:
    """Axis limits around the region of interest: from the lowest point up to twice the spread of the focus
    points (best-tuned settings, tuning-free methods) or of the better half of all points, whichever is more."""
    values = values[np.isfinite(values)]
    lo = float(np.min(values))
    hi_f = max(float(np.max(focus)) if len(focus) else lo, float(np.median(values)))
    span = max(hi_f - lo, 1e-2 * max(abs(hi_f), 1e-9))
    return lo - 0.15 * span, hi_f + span


def close_up(focus: pd.DataFrame) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """(x limits, y limits) of the close-up under a zoomed panel: the best-tuned and tuning-free points whose
    test error is at most lowest + 2 x (median - lowest) of theirs, padded by 8 % of their spread each way;
    None for fewer than two such points."""
    test = focus.test.to_numpy(float)
    if len(test) < 2:
        return None
    lo = float(np.min(test))
    near = focus[test <= lo + 2 * (float(np.median(test)) - lo) + 1e-12]
    if len(near) < 2:
        return None

    def pad(v: pd.Series) -> tuple[float, float]:
        a, b = float(v.min()), float(v.max())
        d = max(0.08 * (b - a), 0.01 * max(abs(b), 1e-9))
        return a - d, b + d

    return pad(near.train), pad(near.test)


def _draw_settings(ax, sub: pd.DataFrame, handles: dict) -> None:
    """Every setting of a panel: small markers; a tuned method's best setting large with a black edge, a
    tuning-free method's one setting large with a white edge (the legend's two large-marker entries)."""
    for method in common.method_order(sub.optimizer.unique()):
        s, st = sub[sub.optimizer == method], style(method)
        free = common.is_vsgd(method) or not s.tuned.iloc[0]
        if free:
            h = ax.scatter(s.train, s.test, s=70, marker=st["marker"], color=st["color"], edgecolor="white",
                           linewidth=0.8, zorder=5)
        else:
            rest, best = s[~s.best], s[s.best]
            h = ax.scatter(rest.train, rest.test, s=14, marker=st["marker"], color=st["color"], alpha=0.7,
                           linewidth=0, zorder=3)
            if len(best):
                ax.scatter(best.train, best.test, s=120, marker=st["marker"], color=st["color"],
                           edgecolor="black", linewidth=0.8, zorder=4)
        handles.setdefault(label(method) + (" (no tuning)" if free else ""), h)


def _mark_diverged(ax, fig, gone: pd.DataFrame, handles: dict) -> None:
    """Settings whose seeds all diverged (no finite error to plot): per method, one cross in its colour inside the
    panel's top-left corner with the number of such settings beside it, one line per method, so that they are
    counted, not dropped, however many there are (one cross per setting ran past the figure's edge once a grid
    had dozens). Each line's label names the method."""
    for k, (method, n) in enumerate(gone.groupby("optimizer", sort=True).size().items()):
        tr = offset_copy(ax.transAxes, fig=fig, x=7.0, y=-7.0 - 10.0 * k, units="points")
        ax.plot([0.0], [1.0], marker="X", ls="none", ms=6, mfc=style(method)["color"], mec="black", mew=0.5,
                clip_on=False, zorder=7, transform=tr, label=f"diverged: {method}")
        ax.text(0.0, 1.0, f"{n} diverged", transform=offset_copy(tr, fig=fig, x=6.0, y=0.0, units="points"),
                fontsize=5.5, va="center", ha="left", zorder=7)
        handles.setdefault(DIVERGED, Line2D([], [], marker="X", ls="none", ms=6, mfc="gray", mec="black", mew=0.5))


def _log_ticks(axis, values: pd.Series, horizontal: bool) -> None:
    """Log-axis labels that do not collide: 1, 2, 5 x 10^k over up to 1.3 decades on x (2.2 on y, whose labels
    stack), 1 and 3 x 10^k up to 2.2 decades on x, one label a decade beyond."""
    decades = float(np.log10(values.max() / values.min()))
    _log_axis(axis, subs=(1, 2, 5) if decades <= (1.3 if horizontal else 2.2) else (1, 3) if decades <= 2.2 else (1,))


def _diagonal(ax, handles: dict) -> None:
    lims = [max(ax.get_xlim()[0], ax.get_ylim()[0]), min(ax.get_xlim()[1], ax.get_ylim()[1])]
    if lims[0] < lims[1]:
        diag, = ax.plot(lims, lims, ls=":", color="gray", lw=0.8, zorder=1)
        handles.setdefault("train = test", diag)


def _far_to_top_edge(ax, fig, far: pd.DataFrame, handles: dict) -> None:
    """Best-tuned / tuning-free points far above the others: triangles on the top edge, at their train error or,
    past the right edge, at the right edge 8 pt apart."""
    x_max, top, right = ax.get_xlim()[1], ax.get_ylim()[1], 0
    for r in far.sort_values("train").itertuples():
        st, dx = style(r.optimizer), -8.0 * right if r.train > x_max else 0.0
        right += r.train > x_max
        ax.plot([min(r.train, x_max)], [top], marker="^", ls="none", ms=6, mec=st["color"],
                mfc="white" if r.tuned else st["color"], clip_on=False, zorder=6,
                transform=offset_copy(ax.transData, fig=fig, x=dx, y=0.0, units="points"))
        handles.setdefault("off scale (top edge)", Line2D([], [], marker="^", ls="none", mfc="white", mec="gray"))


def scatter_panels(inp: Inputs, benches: list[str], out: Path, stem: str, title: str, zoom: bool) -> list[Path]:
    """Train vs test error of every setting, a panel per benchmark. zoom: the region of interest, and under each
    panel a close-up of the best-tuned and tuning-free methods (:func:`close_up`; its area dashed above)."""
    sm = setting_means(inp)
    if sm.empty:
        log.info("%s skipped: the store is empty", stem)
        return []
    wanted, benches = benches, [b for b in benches if b in set(sm.benchmark)]
    if not benches:
        log.info("%s skipped: no records for %s", stem, ", ".join(wanted))
        return []
    with plt.rc_context(RC):
        ncols = min(3, len(benches))
        nrows = int(np.ceil(len(benches) / ncols)) * (2 if zoom else 1)  # zoom: a row of close-ups under each row
        fig, axes = plt.subplots(nrows, ncols, figsize=(_width(ncols), 2.35 * nrows + 0.35), squeeze=False)
        step = 2 if zoom else 1
        panels = [(axes[step * (i // ncols), i % ncols], axes[step * (i // ncols) + 1, i % ncols] if zoom else None)
                  for i in range(len(benches))]
        handles = {BEST_TUNED: Line2D([], [], marker="o", ls="none", ms=10, mfc="lightgray", mec="black", mew=0.8),
                   TUNING_FREE: Line2D([], [], marker="o", ls="none", ms=8, mfc="gray", mec="white", mew=0.8)}
        for (ax, below), bench in zip(panels, benches):
            at = sm[sm.benchmark == bench]
            ok = np.isfinite(at.train) & np.isfinite(at.test) & (at.diverged < 1)
            sub = at[ok]
            _mark_diverged(ax, fig, at[~ok], handles)
            if sub.empty:
                ax.set_title(f"{bench}: no finite runs")
                continue
            _draw_settings(ax, sub, handles)
            if zoom:  # around the best-tuned and tuning-free points; those far off (_far_cut) on the top edge
                focus = sub[sub.best | ~sub.tuned]
                far = focus[focus.test > _far_cut(focus.test.to_numpy())]
                focus = focus.drop(far.index)
                ax.set_xlim(*_zoom(sub.train.to_numpy(), focus.train.to_numpy()))
                ax.set_ylim(*_zoom(sub.test.to_numpy(), focus.test.to_numpy()))
                _far_to_top_edge(ax, fig, far, handles)
                lims = close_up(focus)
                if lims is None:
                    below.axis("off")
                else:
                    _draw_settings(below, sub, {})
                    below.set_xlim(*lims[0])
                    below.set_ylim(*lims[1])
                    _diagonal(below, handles)
                    (x0, x1), (y0, y1) = lims
                    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ls="--",
                                                              lw=0.7, color="0.35", zorder=6))
                    below.set_title(f"{bench}: close-up of the dashed box")
                    below.set_xlabel(f"train {unit(bench)}")
                    below.set_ylabel(f"test {unit(bench)}")
            else:
                for values, axis, set_scale, horizontal in ((sub.train, ax.xaxis, ax.set_xscale, True),
                                                             (sub.test, ax.yaxis, ax.set_yscale, False)):
                    if (values > 0).all() and values.max() > 10 * values.min():  # log only over a decade or more
                        set_scale("log")
                        _log_ticks(axis, values, horizontal)
            _diagonal(ax, handles)
            ax.set_title(bench_title(inp, bench))
            ax.set_xlabel(f"train {unit(bench)}")
            ax.set_ylabel(f"test {unit(bench)}")
        for ax in axes.flat:  # the panels no benchmark filled
            if not any(ax is a or ax is b for a, b in panels):
                ax.axis("off")
        fig.suptitle(title, y=1.0)
        fig.tight_layout(rect=(0, 0, 1, 0.97))
        # the conventions last, after the methods
        handles = {k: h for k, h in handles.items() if k not in (BEST_TUNED, TUNING_FREE)} | {
            BEST_TUNED: handles[BEST_TUNED], TUNING_FREE: handles[TUNING_FREE]}
        _legend(fig, handles, ncol=4)
        return _save(fig, out, stem)


def sub_all_original(inp: Inputs, bench: str) -> bool:
    return bool(inp.df[inp.df.benchmark == bench].data_original.all())


def bench_title(inp: Inputs, bench: str) -> str:
    """A panel's title: the benchmark, and "(approx. data)" when its records are not on the original files."""
    return bench if sub_all_original(inp, bench) else f"{bench} (approx. data)"


def _finish(fig, axes, n_used: int, title: str) -> None:
    """Hide the panels beyond the first n_used, add the title, lay out with room for the legend below."""
    for ax in list(axes.flat)[n_used:]:
        ax.axis("off")
    fig.suptitle(title, y=1.0)
    fig.tight_layout(rect=(0, 0, 1, 0.97))  # the legend goes below, inside the tight bbox


def fig3_mnist(inp: Inputs, out: Path) -> list[Path]:
    return scatter_panels(inp, list(common.MNIST), out, "fig3_mnist_train_vs_test",
                          "Fig. 3: train vs test error on MNIST, every setting we ran", True)


def supp_fig4_cifar(inp: Inputs, out: Path) -> list[Path]:
    return scatter_panels(inp, list(common.CIFAR), out, "supp_fig4_cifar_train_vs_test",
                          "Supp. Fig. 4: train vs test error on CIFAR, every setting we ran", True)


def supp_fig5_all(inp: Inputs, out: Path) -> list[Path]:
    present = [b for b in common.BENCHMARKS if len(inp.df) and b in set(inp.df.benchmark)]
    return scatter_panels(inp, present, out, "supp_fig5_all_train_vs_test",
                          "Supp. Fig. 5: train vs test error, all benchmarks, zoomed out", False)


# -- Supp. Fig. 6: learning rates over time ------------------------------------------------------
RATES = ("rate_min", "rate_median", "rate_max")


def rate_curves(recs: pd.DataFrame) -> pd.DataFrame:
    """Per checkpoint epoch: the median over the records of rate_min, rate_median and rate_max (the min, median
    and max over the parameters; rate_median NaN where a record has none)."""
    rows = []
    for curve in recs.get("curve", pd.Series(dtype=object)):
        if not isinstance(curve, list):
            continue
        for p in curve:
            if p.get("rate_min") is not None and p.get("rate_max") is not None and p.get("epoch", 0) > 0:
                med = p.get("rate_median")
                rows.append((float(p["epoch"]), float(p["rate_min"]), np.nan if med is None else float(med),
                             float(p["rate_max"])))
    if not rows:
        return pd.DataFrame(columns=["epoch", *RATES])
    d = pd.DataFrame(rows, columns=["epoch", *RATES])
    d = d[np.isfinite(d.rate_min) & np.isfinite(d.rate_max) & (d.rate_min > 0) & (d.rate_max > 0)]
    return d.groupby(d.epoch.round(9)).median().reset_index(drop=True).sort_values("epoch")


def supp_fig6_rates(inp: Inputs, out: Path) -> list[Path]:
    """Top row: the median of the learning rates over the parameters; bottom row: their min (dashed) and max
    (solid), the band between them shaded. Per method the median over seeds at its Tables 2/3 setting; C0 left, M0 right."""
    if inp.df.empty or "curve" not in inp.df:
        log.info("supp_fig6 skipped: no learning-rate curves (load the store with curves)")
        return []
    recs = table23_records(inp)
    benches = [b for b in ("C0", "M0") if b in set(recs.benchmark)]
    panels = {b: {m: rate_curves(g) for m, g in recs[recs.benchmark == b].groupby("optimizer")} for b in benches}
    panels = {b: {m: c for m, c in d.items() if len(c)} for b, d in panels.items()}
    panels = {b: d for b, d in panels.items() if d}
    if not panels:
        log.info("supp_fig6 skipped: no rate_min / rate_max in the curves of C0 or M0")
        return []
    with plt.rc_context(RC):
        fig, axes = plt.subplots(2, len(panels), figsize=(WIDTH if len(panels) > 1 else _width(1), 5.0),
                                 squeeze=False, sharex="col")
        handles = {}
        for j, (bench, curves) in enumerate(panels.items()):
            top, bottom = axes[0, j], axes[1, j]
            for method in common.method_order(curves):
                c, st = curves[method], style(method)
                med = c[np.isfinite(c.rate_median) & (c.rate_median > 0)]
                h, = top.plot(med.epoch, med.rate_median, marker=st["marker"], color=st["color"], ms=3.5, lw=1.2)
                bottom.fill_between(c.epoch, c.rate_min, c.rate_max, color=st["color"], alpha=0.08, linewidth=0)
                bottom.plot(c.epoch, c.rate_max, marker=st["marker"], color=st["color"], ms=3.5, lw=1)
                bottom.plot(c.epoch, c.rate_min, marker=st["marker"], color=st["color"], ms=3.5, lw=1, ls="--",
                            mfc="white")
                handles.setdefault(label(method), h)
            for ax, what in ((top, "median learning rate"), (bottom, "learning rate (solid: max, dashed: min)")):
                ax.set_xscale("log")
                ax.set_yscale("log")
                _log_axis(ax.xaxis)
                ax.set_ylabel(what)
            top.set_title(f"{bench_title(inp, bench)}: median rate")
            bottom.set_title(f"{bench_title(inp, bench)}: min and max rate")
            bottom.set_xlabel("epoch")
        order = [label(m) for m in common.method_order({m for d in panels.values() for m in d})]
        handles = {k: handles[k] for k in order if k in handles}
        _finish(fig, axes, axes.size, "Supp. Fig. 6: learning rates over time (each the median over seeds)")
        _legend(fig, handles)
        return _save(fig, out, "supp_fig6_learning_rates")


# -- Supp. Figs. 7-8: every SGD / AdaGrad setting against vSGD -----------------------------------
# SGD's decay gamma (per 1/#train): a hue and a marker each, told apart in grey print too; AdaGrad keeps its yellow
GAMMA_STYLE = [("#2ca02c", "o"), ("#17becf", "s"), ("#1f4e9c", "^"), ("#9467bd", "D"), ("#8c564b", "v")]


def tuning_series(tuned: pd.DataFrame) -> list[tuple[str, float, pd.DataFrame]]:
    """(method, gamma, its settings) per series of a panel: SGD once per decay gamma, then AdaGrad (gamma NaN)."""
    out = []
    for method in ("sgd", "adagrad"):
        s = tuned[tuned.optimizer == method]
        gammas = sorted(s.gamma.dropna().unique()) if method == "sgd" else []
        out += [(method, g, s[s.gamma == g]) for g in gammas] or ([(method, np.nan, s)] if len(s) else [])
    return out


def _series_style(method: str, gamma: float, gammas: list[float]) -> tuple[str, str, str]:
    """(colour, marker, legend name) of a series; gammas: every SGD gamma of the figure, so that a gamma looks the
    same in every panel."""
    if method == "sgd" and not np.isnan(gamma):
        colour, marker = GAMMA_STYLE[gammas.index(gamma) % len(GAMMA_STYLE)]
        return colour, marker, f"{label(method)} γ={_frac(gamma)}/#train"
    return style(method)["color"], "o", label(method)


def tuning_panels(inp: Inputs, out: Path, split: str, stem: str, title: str) -> list[Path]:
    """Per benchmark, the final error of every SGD / AdaGrad setting against eta0 (one shared eta0 range, so a
    method run at one setting is one point on the whole axis, not a sweep), vSGD as horizontal lines. Settings
    above the scale or diverged go in a band above it, a row per series (SGD per gamma, AdaGrad), so that each has
    its own place and can be counted."""
    sm = setting_means(inp)
    if sm.empty:
        log.info("%s skipped: the store is empty", stem)
        return []
    wanted = sm[sm.optimizer.isin(["sgd", "adagrad"]) | sm.optimizer.map(common.is_vsgd)]
    benches = [b for b in common.BENCHMARKS if b in set(wanted.benchmark)
               and wanted[wanted.benchmark == b].optimizer.isin(["sgd", "adagrad"]).any()]
    if not benches:
        log.info("%s skipped: no SGD or AdaGrad settings in the store", stem)
        return []
    every = wanted[wanted.optimizer.isin(["sgd", "adagrad"]) & wanted.eta0.notna()]
    gammas = sorted(every[every.optimizer == "sgd"].gamma.dropna().unique())
    eta = every.eta0[every.eta0 > 0]
    xlim = (float(eta.min()) / 3, float(eta.max()) * 3) if len(eta) else (1e-3, 1.0)
    with plt.rc_context(RC):
        ncols = min(3, len(benches))
        nrows = int(np.ceil(len(benches) / ncols))
        fig, axes = plt.subplots(nrows, ncols, figsize=(_width(ncols), 2.5 * nrows + 0.4), squeeze=False)
        handles = {}
        for ax, bench in zip(axes.flat, benches):
            sub = wanted[wanted.benchmark == bench]
            tuned = sub[sub.optimizer.isin(["sgd", "adagrad"]) & sub.eta0.notna()]
            free = sub[sub.optimizer.map(common.is_vsgd)]
            ok = tuned[(tuned.diverged == 0) & np.isfinite(tuned[split])]
            focus = np.concatenate([free[split].to_numpy(), ok[ok.best][split].to_numpy()])
            focus = focus[np.isfinite(focus)]
            allv = np.concatenate([ok[split].to_numpy(), focus])
            if len(allv) == 0:
                ax.set_title(f"{bench}: every run diverged")
                continue
            lo = float(np.min(allv))
            top_f = float(np.max(focus)) if len(focus) else float(np.median(allv))
            top_f = max(top_f, float(np.median(allv)))
            top = top_f + 1.5 * max(top_f - lo, 0.05 * abs(top_f) + 1e-9)
            bottom = lo - 0.1 * (top - lo)
            series = tuning_series(tuned)
            over_rows = [k for k, (_, _, part) in enumerate(series)
                         if ((part.diverged > 0) | ~(part[split] <= top)).any()]
            row_h = 0.055 * (top - bottom)  # the off-scale band: one row per series with settings in it
            single = []  # methods run at one setting here: no grid, nothing tuned
            partial = []  # grids not run in full yet
            for k, (method, gamma, part) in enumerate(series):
                colour, marker, name = _series_style(method, gamma, gammas)
                inside = part[(part.diverged == 0) & (part[split] <= top)]
                over = part[~part.index.isin(inside.index)]
                h = ax.scatter(inside.eta0, inside[split], s=16, color=colour, marker=marker, edgecolor="black",
                               linewidth=0.3, zorder=3)
                handles.setdefault(name, h)
                if len(over):
                    y = top + row_h * (over_rows.index(k) + 0.5)
                    slow, div = over[over.diverged == 0], over[over.diverged > 0]
                    ax.scatter(slow.eta0, np.full(len(slow), y), s=13, marker=marker, facecolor="white",
                               edgecolor=colour, linewidth=1.0, clip_on=False, zorder=4)
                    ax.scatter(div.eta0, np.full(len(div), y), s=16, marker="x", color=colour, linewidth=1.2,
                               clip_on=False, zorder=4)
                n_settings = int((tuned.optimizer == method).sum())
                size = common.grid_size(inp.grids.get(method))
                if n_settings == 1:
                    single.append(label(method))
                    continue
                if size and not part.searched.any():  # Table 1: not searched in full, so no pick; the title says so
                    partial.append(f"{label(method)}: {n_settings} of {size} settings so far")
                    continue
                best = inside[inside.best]
                ax.scatter(best.eta0, best[split], s=60, facecolor="none", edgecolor="black", linewidth=0.9,
                           zorder=4)
            for method in common.method_order(free.optimizer.unique()):
                v = float(free[free.optimizer == method][split].iloc[0])
                st = style(method)
                if np.isfinite(v) and v <= top:
                    h = ax.axhline(v, color=st["color"], lw=1.1, ls=(0, (4, 1.5)), zorder=2)
                    handles.setdefault(label(method) + " (no tuning)", h)
            if over_rows:
                ax.axhspan(top, top + row_h * len(over_rows), color="0.92", zorder=0, lw=0)
                ax.axhline(top, color="0.5", lw=0.6, zorder=1)
            ax.set_ylim(bottom, top + row_h * len(over_rows))
            ax.set_yticks([t for t in ax.get_yticks() if bottom <= t <= top])
            ax.set_xscale("log")
            ax.set_xlim(*xlim)
            _eta_axis(ax.xaxis, every.eta0)
            ax.set_xlabel("η0")
            ax.set_ylabel(f"{split} {unit(bench)}")
            uniq = list(dict.fromkeys(single))  # named under the title: a single point is not a sweep
            notes = ([f"{' and '.join(uniq)}: the paper's setting only"] if uniq else []) + list(dict.fromkeys(partial))
            ax.set_title("\n".join([bench_title(inp, bench), *notes]), fontsize=7 if notes else 8)
        handles.setdefault("best-tuned setting (of a grid we ran)",
                           ax.scatter([], [], s=60, facecolor="none", edgecolor="black"))
        handles.setdefault("off scale (band at the top, open)", Line2D([], [], marker="o", ls="none", mfc="white",
                                                                      mec="gray"))
        handles.setdefault("diverged (band at the top, cross)", Line2D([], [], marker="x", ls="none", color="gray"))
        _finish(fig, axes, len(benches), title)
        _legend(fig, handles, ncol=4)
        return _save(fig, out, stem)


def _frac(x: float) -> str:
    from fractions import Fraction

    f = Fraction(x).limit_denominator(12)
    return f"{x:g}" if abs(float(f) - x) > 1e-6 else str(f)


def supp_fig7_test(inp: Inputs, out: Path) -> list[Path]:
    return tuning_panels(inp, out, "test", "supp_fig7_test_all_settings",
                         "Supp. Fig. 7: final test error of every SGD / AdaGrad setting against vSGD")


def supp_fig8_train(inp: Inputs, out: Path) -> list[Path]:
    return tuning_panels(inp, out, "train", "supp_fig8_train_all_settings",
                         "Supp. Fig. 8: final train error of every SGD / AdaGrad setting against vSGD")


# -- Beyond the paper (issue 9): test error against the settings each method's tuning must try ----------
def tuning_cost_points(inp: Inputs) -> pd.DataFrame:
    """One row per (benchmark, method) of Table 3 -- the tables' own record selection (the paper's Table 1
    setting or our best for a tuned method, the tuning-free method's records) and their ``n_settings``
    (common.n_settings: the grid size of conf/grid/<method>.yaml, 1 for a tuning-free method) -- with
    ``tuned`` added. Columns used by the figure: benchmark, method, n_settings, mean, std, n_seeds, tuned."""
    if inp.df.empty:
        return pd.DataFrame()
    t = table23(inp, "test")
    if t.empty:
        return t
    t = t.assign(n_settings=pd.to_numeric(t.n_settings, errors="coerce"), tuned=[inp.tuned(m) for m in t.method])
    unknown = t[t.n_settings.isna()]
    for _, r in unknown.iterrows():  # a tuned method without grid file, paper count or settings in the store
        log.info("beyond_tuning_cost: %s %s has no known number of settings to try; left out", r.benchmark, r.method)
    return t[t.n_settings.notna()].reset_index(drop=True)


COST_AXIS = "settings to try (1 = tuning-free; else the grid size)"


def _dodge(k: int, step: float = 5.0, width: float = 40.0) -> np.ndarray:
    """Horizontal offsets in points for k markers sharing one x (centred; at most `width` points in all)."""
    if k < 2:
        return np.zeros(k)
    step = min(step, width / (k - 1))
    return (np.arange(k) - (k - 1) / 2) * step


def _cost_order(pts: pd.DataFrame) -> list[str]:
    """Methods by cost (settings to try); within a cost the vSGD variants, then issue 9's PyPI optimizers in the
    issue's order, then the tables' order."""
    n = pts.drop_duplicates("method").set_index("method").n_settings
    beyond = {m: i for i, m in enumerate(common.BEYOND_METHODS)}
    return sorted(common.method_order(n.index),
                  key=lambda m: (n[m], not common.is_vsgd(m), beyond.get(m, len(beyond))))


def _far_cut(values: np.ndarray) -> float:
    """Errors above this are far off the others (a diverged run at 100 %, a method several times worse) and go
    on the top edge of a panel, so that the cluster near the best stays readable. cut = max(lowest + 10 x
    (median - lowest), 3 x median) over the finite values: an error must be both far from the best relative to
    the spread of the typical methods and three times the typical one to leave the scale (vSGD-g's 4.1 %
    beside 2.4 % on M1 stays on it; a diverged 100 % beside 7.5 % on M0 does not)."""
    m = values[np.isfinite(values)]
    if not len(m) or m.min() < 0:
        return np.inf
    low, med = float(m.min()), float(np.median(m))
    return max(low + 10 * (med - low), 3 * med)


def _cost_ylim(mean: np.ndarray, std: np.ndarray) -> tuple[float, float, float]:
    """(bottom, top, cut) of a panel: means above `cut` (:func:`_far_cut`) go on the top edge."""
    finite = np.isfinite(mean)
    if not finite.any():
        return 0.0, 1.0, np.inf
    cut = _far_cut(mean)
    inside = finite & (mean <= cut)
    err = np.nan_to_num(std, nan=0.0)
    lo, hi = float(np.min(mean[inside] - err[inside])), float(np.max(mean[inside] + err[inside]))
    # one point (or all equal): +-5 % of the value, not +-0.2 % (a 2.16 would get an axis 2.157..2.163)
    pad = 0.08 * (hi - lo) if hi - lo >= 0.02 * abs(hi) else 0.05 * abs(hi) + 1e-9
    return lo - pad, hi + pad * (3 if (~inside).any() else 1), cut  # room below the edge markers


def beyond_tuning_cost(inp: Inputs, out: Path) -> list[Path]:
    """Issue 9: final test error against the settings each method's tuning must try (``n_settings``: settings,
    not runs; a grid of ours runs each setting at 2 seeds), one panel per benchmark present.

    x is exactly ``n_settings`` (log axis); methods sharing an x (all tuning-free ones at 1, Amari and
    Almeida at 119) are spread sideways by a few points on the page, not in data units. y: mean final test
    error over seeds at the Tables 2/3 setting, bars +- one std over seeds. A mean far above the others
    (``_cost_ylim``) is a triangle on the top edge (filled or open as its method), a non-finite one (a diverged CR run) a cross there;
    their values are in Table 3.
    """
    stem = "beyond_tuning_cost"
    pts = tuning_cost_points(inp)
    benches = [b for b in common.BENCHMARKS if len(pts) and b in set(pts.benchmark)]
    if not benches:
        log.info("%s skipped: no records for Tables 2/3 on %s in the store", stem, " ".join(common.BENCHMARKS))
        return []
    from matplotlib import ticker

    pts = pts[pts.benchmark.isin(benches)]
    order = _cost_order(pts)
    xs = sorted(set(pts.n_settings.astype(int)))
    with plt.rc_context(RC):
        ncols = min(2, len(benches))  # two wide panels a row: the tuning-free strip at x = 1 needs the room
        nrows = int(np.ceil(len(benches) / ncols))
        fig, axes = plt.subplots(nrows, ncols, figsize=(WIDTH if ncols > 1 else _width(1), 2.3 * nrows + 0.4),
                                 squeeze=False)
        xlim = (min(xs) / 6.0, max(xs) * 2.5)
        xlabels = _cost_tick_labels(xs, xlim, axes[0, 0], fig)
        handles: dict[str, object] = {}
        for ax, bench in zip(axes.flat, benches):
            sub = pts[pts.benchmark == bench].set_index("method")
            sub = sub.loc[[m for m in order if m in sub.index]].reset_index()
            bottom, top, cut = _cost_ylim(sub["mean"].to_numpy(float), sub["std"].to_numpy(float))
            for n, group in sub.groupby("n_settings", sort=True):
                for dx, (_, r) in zip(_dodge(len(group)), group.iterrows()):
                    st = style(r.method)
                    tr = offset_copy(ax.transData, fig=fig, x=float(dx), y=0.0, units="points")
                    name = label(r.method) + (f" ({int(n)} settings)" if r.tuned else " (no tuning)")
                    if np.isfinite(r["mean"]) and r["mean"] <= cut:
                        err = r["std"] if np.isfinite(r["std"]) else 0.0
                        h = ax.errorbar([n], [r["mean"]], yerr=[[err], [err]], fmt=st["marker"], color=st["color"],
                                        mfc="white" if r.tuned else st["color"], mec=st["color"],
                                        ms=6 if st["marker"] == "*" else 4.5, mew=1.1 if r.tuned else 0.5,
                                        elinewidth=0.8, capsize=1.5, transform=tr, zorder=4 if r.tuned else 5,
                                        label=r.method)
                    else:  # off the scale: on the top edge, as in Supp. Figs. 7-8
                        over = bool(np.isfinite(r["mean"]))
                        h, = ax.plot([n], [top], marker="^" if over else "x", ls="none", ms=5,
                                     mfc="white" if r.tuned else st["color"], mec=st["color"], mew=1.1,
                                     transform=tr, clip_on=False, zorder=5, label=r.method)
                        key = "off scale (top edge)" if over else "non-finite mean (top edge)"
                        handles.setdefault(key, Line2D([], [], marker="^" if over else "x", ls="none", mfc="white",
                                                       mec="gray"))
                        # in the legend the method keeps its own marker (an error-bar handle, where one is drawn)
                        h = Line2D([], [], marker=st["marker"], ls="none", color=st["color"],
                                   mfc="white" if r.tuned else st["color"], mec=st["color"], ms=4.5)
                    if name not in handles or isinstance(handles[name], Line2D):
                        handles[name] = h
            ax.set_xscale("log")
            ax.set_xlim(*xlim)
            ax.set_xticks(xs, xlabels)
            ax.xaxis.set_minor_locator(ticker.NullLocator())
            ax.set_ylim(bottom, top)
            ax.set_xlabel(COST_AXIS)
            ax.set_ylabel(f"test {unit(bench)}")
            ax.set_title(bench_title(inp, bench))
        _finish(fig, axes, len(benches),
                "Beyond the paper: final test error (mean ± std over seeds) against the settings tuning must try")
        every = pts.drop_duplicates("method").set_index("method")
        names = [label(m) + (f" ({int(every.n_settings[m])} settings)" if every.tuned[m] else " (no tuning)")
                 for m in order]
        handles = {k: handles[k] for k in names + [k for k in handles if k not in names] if k in handles}
        _legend(fig, handles, ncol=4)
        return _save(fig, out, stem)


def _cost_tick_labels(xs: list[int], xlim: tuple[float, float], ax, fig) -> list[str]:
    """Tick labels for the x values: a label that would touch the previous one on its line goes one line
    lower (the values that matter most, 68 and 119 on the paper's grids, are only 0.24 decades apart);
    measured on the page for this axis width and log range (7 pt digits, about 0.64 em wide)."""
    width_in = ax.get_position().width * fig.get_figwidth()
    per_decade = width_in / np.log10(xlim[1] / xlim[0])
    digit_in = 0.64 * plt.rcParams["xtick.labelsize"] / 72
    last: dict[int, int] = {}  # line -> the value last labelled on it
    labels = []
    for x in xs:
        for line in (0, 1):
            prev = last.get(line)
            need = 0.0 if prev is None else (len(f"{x:g}") + len(f"{prev:g}")) / 2 * digit_in + 0.06
            if prev is None or np.log10(x / prev) * per_decade >= need:
                last[line] = x
                labels.append("\n" * line + f"{x:g}")
                break
        else:
            labels.append("")  # a third crowded value: the tick without a label (its cost is in the legend)
    return labels


ALL = (fig3_mnist, supp_fig4_cifar, supp_fig5_all, supp_fig6_rates, supp_fig7_test, supp_fig8_train,
       beyond_tuning_cost)


def write_all(inp: Inputs, out: Path) -> list[Path]:
    """Every figure whose data is there; a figure that fails does not cost the others, but is raised at the end."""
    out = Path(out)
    written, failed = [], []
    for f in ALL:
        try:
            written += f(inp, out)
        except Exception:  # logged with its traceback, re-raised below
            logging.getLogger("analysis").exception("figure %s failed", f.__name__)
            failed.append(f.__name__)
    if failed:
        raise FigureError(f"figures failed: {', '.join(failed)} (tracebacks above); the others were written", written)
    return written


class FigureError(RuntimeError):
    def __init__(self, msg: str, written: list[Path]):
        super().__init__(msg)
        self.written = written
