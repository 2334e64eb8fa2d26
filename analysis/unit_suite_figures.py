"""Figures of the unit-test suite (synthetic/unit_suite.py), drawn from ``<store>/synthetic/unit_suite.npz``.

Heatmaps in the style of the 1-D suite (paper 2 Figs. 5-6): one small square per (optimizer, case);
x = updates on a log2 scale (1, 2, 4, ...), y = the runs sorted at each checkpoint (best on top),
colour = log10(initial / current loss): white = the initial loss, blue = lower, red = higher; a run
that became non-finite (or whose optimizer raised) is the deepest red. The colour range is shared
within a column (a case) and spans +-(95th percentile of the column's positive gains), as in the
1-D suite's figures. Optimizers run with fewer runs (one instance per member) are stretched to the
same height.

    python -m analysis.unit_suite_figures [--npz <store>/synthetic/unit_suite.npz] [--out DIR]

Writes ``unit_suite_1d_<noise>.png`` (columns: prototypes x scales), ``unit_suite_nd.png``
(multivariate compositions) and ``unit_suite_summary.png`` (fraction of cases improved / unstable).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import TwoSlopeNorm

from analysis.common import label
from analysis.heatmaps import DATA_W, DPI, column_colorbar, image_figure
from synthetic import unit_suite

CMAP = plt.get_cmap("RdBu")  # red = worse than the start, white = the start, blue = better
CELL_H = 24  # pixels per square (runs are resampled to this height)
PX_PER_CKPT = 2


def column_scale(g: np.ndarray, q: float = 95.0) -> float:
    pos = g[np.isfinite(g) & (g > 0)]
    return float(max(np.percentile(pos, q) if pos.size else 0.1, 0.1))


def square_rgb(g: np.ndarray, vmax: float) -> np.ndarray:
    """``g[runs, checkpoints]`` (NaN rows = runs not made) -> RGB [CELL_H, checkpoints * PX, 3]."""
    g = g[~np.isnan(g).all(axis=1)]
    s = -np.sort(-np.nan_to_num(g, nan=-np.inf, neginf=-1e30, posinf=1e30), axis=0)  # best run on top
    s = s[np.linspace(0, s.shape[0] - 1, CELL_H).round().astype(int)]
    norm = TwoSlopeNorm(vmin=-vmax, vcenter=0.0, vmax=vmax)
    rgb = CMAP(norm(np.clip(s, -vmax, vmax)))[..., :3]
    return np.repeat(rgb, PX_PER_CKPT, axis=1)


KIND = {"rule": "our rule", "torch": "PyPI"}


def display_name(optimizer: str) -> str:
    """An optimizer as the tables and papers name it (analysis.common.LABELS): ``vsgd_l`` -> ``vSGD-l``."""
    return label(optimizer)


def draw_grid(res: unit_suite.SuiteResult, cols: list[int], path: Path, title: str, group_of) -> Path:
    O, T = len(res.optimizers), len(res.checkpoints)
    cell_w = T * PX_PER_CKPT
    col_x, x = [], 0
    for j, c in enumerate(cols):
        if j > 0:
            x += 8 if group_of(res.cases[c]) != group_of(res.cases[cols[j - 1]]) else 2
        col_x.append(x)
        x += cell_w
    row_y = [i * (CELL_H + 4) for i in range(O)]
    img = np.ones((row_y[-1] + CELL_H, x, 3))
    scales = []
    for j, c in enumerate(cols):
        vmax = column_scale(res.gain[:, c, :, -1])
        scales.append(vmax)
        for o in range(O):
            img[row_y[o]:row_y[o] + CELL_H, col_x[j]:col_x[j] + cell_w] = square_rgb(res.gain[o, c], vmax)
    fig, ax, cax = image_figure(img, top_in=1.9, left_in=2.3, data_w=min(DATA_W * 1.3, x / 90))
    ax.imshow(img, interpolation="nearest", aspect="auto")
    ax.set_yticks(np.array(row_y) + CELL_H / 2)
    runs = [int((~np.isnan(res.gain[o, 0, :, -1])).sum()) for o in range(O)]
    ax.set_yticklabels([f"{display_name(n)} ({KIND.get(k, k)}, {r} runs)" for n, k, r in
                        zip(res.optimizers, res.kinds, runs)], fontsize=7.5)
    ax.set_xticks(np.array(col_x) + cell_w / 2)
    ax.set_xticklabels([f"{_col_label(res.cases[c])}  s={v:.2g}" for c, v in zip(cols, scales)], rotation=90,
                       fontsize=6.5)
    for j, c in enumerate(cols):  # group names above the first column of each group
        if j == 0 or group_of(res.cases[c]) != group_of(res.cases[cols[j - 1]]):
            ax.text(col_x[j], -6, group_of(res.cases[c]), fontsize=7.5, rotation=30, ha="left", va="bottom")
    ax.tick_params(length=0)
    column_colorbar(fig, cax)
    ax.set_title(title + f"\nx: updates 1..{res.checkpoints[-1]} (log2); y: runs sorted; colour: log10(initial/current "
                 "loss), white = initial, blue = better, red = worse; scale s per column (colour bar)", fontsize=8.5,
                 pad=44)
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return path


def _col_label(c: unit_suite.Case) -> str:
    if c.composition:
        return f"{c.composition}{' ns-' + c.nonstationary if c.nonstationary else ''} {c.noise}"
    return f"A={c.scale:g}"


def draw_summary(res: unit_suite.SuiteResult, path: Path) -> Path:
    """Per optimizer (display names, as in the tables): the fraction of cases improved and unstable."""
    table = unit_suite.summary(res)
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(table) + 1.2))
    y = np.arange(len(table))
    ax.barh(y - 0.2, table.improved, height=0.4, color="tab:blue", label="improved (median run: loss >= 21 % lower)")
    ax.barh(y + 0.2, table.unstable, height=0.4, color="tab:red", label="unstable (>= 25 % of runs 10x worse or non-finite)")
    ax.set_yticks(y)
    ax.set_yticklabels([display_name(o) for o in table.optimizer])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"fraction of the {len(res.cases)} cases")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"Unit-test suite, {res.checkpoints[-1]} updates, optimizers at their defaults", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_all(store: Path | None, out: Path) -> list[Path]:
    """All unit-suite figures from ``<store>/synthetic/unit_suite.npz`` (``python -m analysis`` calls this),
    and its tables (``unit_suite_summary.{md,csv}``, per case, per prototype) beside the figures folder ``out``
    (``results/`` when ``out`` is ``results/figures``)."""
    from experiments.results import DEFAULT_STORE

    npz = Path(store or DEFAULT_STORE) / "synthetic" / "unit_suite.npz"
    res = unit_suite.load(npz)
    return draw_result(res, out) + list(unit_suite.write_tables(res, Path(out).parent, label=display_name).values())


def draw_npz(npz: Path, out: Path) -> list[Path]:
    return draw_result(unit_suite.load(npz), out)


def draw_result(res: unit_suite.SuiteResult, out: Path) -> list[Path]:
    out = Path(out)
    paths = []
    for noise in unit_suite.NOISES:
        cols = [i for i, c in enumerate(res.cases) if c.dim == 1 and c.noise == noise]
        if cols:
            cols.sort(key=lambda i: (list(unit_suite.PROTOTYPES).index(res.cases[i].prototype), res.cases[i].scale))
            paths.append(draw_grid(res, cols, out / f"unit_suite_1d_{noise}.png",
                                   f"1-D prototypes, noise: {noise} (columns: scale A within each prototype)",
                                   lambda c: c.prototype))
    cols = [i for i, c in enumerate(res.cases) if c.dim > 1]
    if cols:
        paths.append(draw_grid(res, cols, out / "unit_suite_nd.png", "Multivariate compositions (D = 2, A = 1)",
                               lambda c: c.prototype))
    paths.append(draw_summary(res, out / "unit_suite_summary.png"))
    return paths


def main() -> None:
    from experiments.results import DEFAULT_STORE

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--npz", type=Path, default=DEFAULT_STORE / "synthetic" / "unit_suite.npz")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    for p in draw_npz(args.npz, args.out or args.npz.parent / "figures"):
        print(p)


if __name__ == "__main__":
    main()
