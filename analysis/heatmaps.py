"""Heatmaps of the 1-D suite (paper 2 Figs. 5-6), drawn from ``<store>/synthetic/suite_1d.npz``.

One square per (algorithm setting and minibatch size n, test case): x = updates on a log2 scale
(1, 2, 4, ..., 1024), y = the runs sorted at each checkpoint (best on top), colour = loss gain
log10(initial / current expected loss): white = the initial loss, blue = lower, red = worse. As in the
paper, the colour scale is shared within a column (test case) and differs between columns: it spans
+-(95th percentile of that column's positive gains, at most 3). Rows come in pairs, n = 1 above n = 10.

    python -m analysis.heatmaps [--store PATH] [--out figures]

Input columns expected (written by ``synthetic.suite_1d.save``): ``gain[row, case, run, checkpoint]``,
``row_algorithm``, ``row_setting``, ``row_n``, ``case_function``, ``case_A``, ``case_sigma2``, ``checkpoints``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import TwoSlopeNorm

from synthetic import suite_1d

CMAP = plt.get_cmap("RdBu")  # red = worse than the start, white = the start, blue = better


GAIN_CAP = 3.0  # colour saturates at 1000x lower loss (f_rectlin has no minimum: gains grow without bound)


def column_scales(gain: np.ndarray, q: float = 95.0) -> np.ndarray:
    """Colour range per case: the q-th percentile of the column's positive finite gains, within [1e-3, GAIN_CAP]."""
    out = np.empty(gain.shape[1])
    for c in range(gain.shape[1]):
        g = gain[:, c].ravel()
        pos = g[np.isfinite(g) & (g > 0)]
        out[c] = min(max(np.percentile(pos, q) if pos.size else 1e-3, 1e-3), GAIN_CAP)
    return out


def square_rgb(g: np.ndarray, vmax: float) -> np.ndarray:
    """One square: ``g[runs, checkpoints]`` -> RGB [runs, checkpoints, 3], runs sorted per checkpoint (best on top)."""
    s = -np.sort(-np.nan_to_num(g, nan=-np.inf, neginf=-1e30, posinf=1e30), axis=0)
    norm = TwoSlopeNorm(vmin=-vmax, vcenter=0.0, vmax=vmax)
    return CMAP(norm(np.clip(s, -vmax, vmax)))[..., :3]


# Page layout shared with analysis.unit_suite_figures: the squares' pixels are fitted into DATA_W inches, so that
# 7-8 pt labels stay legible when the figure is shown whole (about 11-14 in wide at 150 dpi)
DATA_W = 9.0  # inches of squares, at most
DPI = 150
ALGORITHMS = {"vsgd_exact": "vSGD-l, exact curvature"}  # the suite's rows not in analysis.common.LABELS
HP = {"eta0": "η0", "gamma": "γ"}


def row_name(setting, n: int) -> str:
    """A 1-D suite row in the papers' names, from its label ``sgd(eta0=0.1, gamma=1)``: ``SGD η0=0.1 γ=1, n=10``."""
    from analysis.common import label

    name = ALGORITHMS.get(setting.algorithm, label(setting.algorithm))
    inner = setting.label[len(setting.algorithm):].strip("()")
    for k, v in HP.items():
        inner = inner.replace(f"{k}=", f"{v}=")
    inner = inner.replace(", ", " ")
    return f"{name} {inner}, n={n}" if inner else f"{name}, n={n}"


def image_figure(img: np.ndarray, top_in: float, left_in: float, data_w: float = DATA_W):
    """A figure for an image of squares (pixels: its height x width): the image at most ``data_w`` in wide and as
    tall as its pixels in proportion, ``left_in`` for the row labels, ``top_in`` for the title and column labels
    (above) and the colour bar at the right. Returns (figure, image axes, colour-bar axes)."""
    h_px, w_px = img.shape[:2]
    scale = data_w / w_px  # inches per pixel, both ways
    w, h = w_px * scale, h_px * scale
    bottom_in, right_in = 1.0, 1.3
    fig = plt.figure(figsize=(left_in + w + right_in, top_in + h + bottom_in))
    W, H = fig.get_figwidth(), fig.get_figheight()
    ax = fig.add_axes((left_in / W, bottom_in / H, w / W, h / H))
    bar_h = min(h, 3.0)
    cax = fig.add_axes(((left_in + w + 0.25) / W, (bottom_in + (h - bar_h) / 2) / H, 0.12 / W, bar_h / H))
    return fig, ax, cax


def column_colorbar(fig, cax) -> None:
    """The colour bar of per-column scales: one bar from -s to +s, s being each column's own scale (printed in the
    column's label), white at the initial loss."""
    from matplotlib.cm import ScalarMappable

    bar = fig.colorbar(ScalarMappable(TwoSlopeNorm(vmin=-1.0, vcenter=0.0, vmax=1.0), CMAP), cax=cax,
                       ticks=[-1, -0.5, 0, 0.5, 1])
    bar.ax.set_yticklabels(["−s (worse)", "−s/2", "0 (initial)", "s/2", "s (better)"], fontsize=7)
    bar.set_label("log10(initial / current loss)\ns: the column's scale (in its label)", fontsize=7)


def draw_heatmaps(res: dict, path: Path, *, rows: list[int] | None = None, title: str | None = None) -> Path:
    gain = res["gain"]
    rows = list(range(gain.shape[0])) if rows is None else rows
    # rows in pairs as in Fig. 6: each setting with n = 1 above n = 10, settings in their order of appearance
    first = {}
    for i, (s, _) in enumerate(res["rows"]):
        first.setdefault(s.label, i)
    rows = sorted(rows, key=lambda r: (first[res["rows"][r][0].label], res["rows"][r][1]))
    R, C, N, T = len(rows), gain.shape[1], gain.shape[2], gain.shape[3]
    scale = column_scales(gain)
    gap, group_gap, cell_w = 1, 3, T * 2  # each checkpoint drawn 2 pixels wide
    groups = [c.function for c in res["cases"]]
    col_x, x = [], 0
    for c in range(C):
        if c > 0:
            x += group_gap if groups[c] != groups[c - 1] else gap
        col_x.append(x)
        x += cell_w
    row_gap = [0] + [8 if res["rows"][rows[i]][0].algorithm != res["rows"][rows[i - 1]][0].algorithm else
                     (4 if res["rows"][rows[i]][0].label != res["rows"][rows[i - 1]][0].label else 1) for i in range(1, R)]
    cell_h = 20
    row_y = np.cumsum([g + (cell_h if i else 0) for i, g in enumerate(row_gap)])
    img = np.ones((row_y[-1] + cell_h, x, 3))
    for i, r in enumerate(rows):
        for c in range(C):
            sq = square_rgb(gain[r, c], scale[c])  # [N, T, 3]
            sq = sq[np.linspace(0, N - 1, cell_h).round().astype(int)]
            img[row_y[i]:row_y[i] + cell_h, col_x[c]:col_x[c] + cell_w] = np.repeat(sq, 2, axis=1)
    fig, ax, cax = image_figure(img, top_in=1.6 if title else 1.3, left_in=1.9)
    ax.imshow(img, interpolation="nearest", aspect="auto")
    ax.set_yticks(row_y + cell_h / 2)
    ax.set_yticklabels([row_name(*res["rows"][r]) for r in rows], fontsize=7.5)
    ax.set_xticks(np.array(col_x) + cell_w / 2)
    ax.set_xticklabels([f"A={c.A:g} σ²={c.s2:g}  s={v:.2g}" for c, v in zip(res["cases"], scale)], rotation=90,
                       fontsize=6.5)
    for f in dict.fromkeys(groups):
        idx = [i for i, g in enumerate(groups) if g == f]
        ax.text((col_x[idx[0]] + col_x[idx[-1]] + cell_w) / 2, -6, f"f_{f}", ha="center", va="bottom", fontsize=9)
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)
    column_colorbar(fig, cax)
    what = "excess loss (expected - optimal)" if res.get("measure", "expected") == "excess" else "expected loss"
    ax.set_title((title + "\n" if title else "") + f"1-D suite: gain log10(initial / current) of the {what}; x: "
                 "log2 updates 1..1024, y: runs sorted;\nwhite = initial, blue = better, red = worse; colour scale "
                 "s per column (colour bar)", fontsize=8.5, pad=24)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return path


def draw_learning_curves(res: dict, path: Path, *, case: str = "abs A=1 s2=1", n: int = 1,
                         picks: tuple[str, ...] = ("sgd(eta0=0.1, gamma=1)", "vsgd_exact", "vsgd_fd"), trials: int = 8) -> Path:
    """Fig. 5: learning curves of ``trials`` runs of three algorithms on one case (left) beside their heatmap squares."""
    c = [cs.label for cs in res["cases"]].index(case)
    rows = [next(i for i, (s, nn) in enumerate(res["rows"]) if s.label == p and nn == n) for p in picks]
    cps = np.array(res["checkpoints"])
    cs = res["cases"][c]
    import torch

    A, s2 = torch.tensor(cs.A, dtype=torch.float64), torch.tensor(cs.s2, dtype=torch.float64)
    measure = res.get("measure", "expected")
    L0 = float(suite_1d.measured_loss(cs.function, A, s2, suite_1d.expected_loss(cs.function, A, s2, torch.tensor(1.0, dtype=torch.float64)),
                                      measure))
    scale = column_scales(res["gain"][:, c:c + 1])[0]
    fig = plt.figure(figsize=(11, 4))
    ax = fig.add_axes([0.07, 0.14, 0.5, 0.76])
    colours = ["tab:orange", "tab:red", "tab:blue"]
    styles = ["--", ":", "-"]
    for p, r, col, ls in zip(picks, rows, colours, styles):
        loss = L0 * 10.0 ** (-res["gain"][r, c].astype(np.float64))  # [runs, checkpoints]
        loss = np.where(np.isfinite(loss), loss, np.nan)
        for k in range(trials):
            ax.plot(cps, loss[k], ls, color=col, alpha=0.35, lw=0.8)
        ax.plot(cps, np.nanmean(loss[:trials], axis=0), ls, color=col, lw=2.5, label=p)
    ax.axhline(L0, color="grey", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("updates")
    ax.set_ylabel("expected loss" if measure == "expected" else "excess loss E f(theta) - min E f")
    ax.set_title(f"f_{cs.function}, A={cs.A:g}, sigma^2={cs.s2:g}, n={n}: {trials} runs each, mean bold", fontsize=9)
    ax.legend(fontsize=8)
    for j, (p, r) in enumerate(zip(picks, rows)):
        a = fig.add_axes([0.63, 0.66 - 0.26 * j, 0.22, 0.22])
        a.imshow(square_rgb(res["gain"][r, c], scale), aspect="auto", interpolation="nearest")
        a.set_xticks(range(len(cps)))
        a.set_xticklabels([str(int(np.log2(s))) for s in cps] if j == len(picks) - 1 else [], fontsize=6)
        a.set_yticks([])
        a.set_ylabel(p, fontsize=7, rotation=0, ha="right", va="center")
        if j == len(picks) - 1:
            a.set_xlabel("log2 updates", fontsize=7)
    cax = fig.add_axes([0.88, 0.14, 0.015, 0.76])
    fig.colorbar(plt.cm.ScalarMappable(TwoSlopeNorm(vmin=-scale, vcenter=0, vmax=scale), CMAP), cax=cax,
                 label="log10(initial / current loss)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    from experiments import results

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=results.DEFAULT_STORE)
    ap.add_argument("--out", type=Path, default=Path("figures"))
    ap.add_argument("--table", action="store_true", help="only print vSGD-fd's per-case table (median final gain, red cells)")
    args = ap.parse_args(argv)
    res = suite_1d.load(args.store / "synthetic" / "suite_1d.npz")
    if args.table:
        print(f"vsgd_fd, gain of the {res.get('measure', 'expected')} loss")
        print(suite_1d.acceptance_table(res).to_string(float_format=lambda x: f"{x:.4g}"))
        return
    print(draw_heatmaps(res, args.out / "suite_1d_heatmap.png"))
    fd_rows = [i for i, (s, _) in enumerate(res["rows"]) if s.algorithm in ("vsgd_fd", "vsgd_exact")]
    print(draw_heatmaps(res, args.out / "suite_1d_heatmap_vsgd.png", rows=fd_rows,
                        title="vSGD-l on the exact curvature and vSGD-fd rows of the 1-D suite (n = 1 above n = 10)"))
    print(draw_learning_curves(res, args.out / "suite_1d_curves.png"))


if __name__ == "__main__":
    main()
