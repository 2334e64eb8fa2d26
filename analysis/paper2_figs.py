"""Paper 2 Figs. 1-2 from ``<store>/synthetic/paper2_figs.csv`` (written by ``synthetic.paper2``).

Expected columns: figure, p_nz, sigma, n, rule (eq4 | eq4_average | sgd), eta, relative_gain.

    python -m analysis.paper2_figs [--store PATH] [--out figures]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def draw_fig1(df: pd.DataFrame, path: Path) -> Path:
    """Panels from dense to sparse, as the paper's text reads its figure: "the ratio is 0.02 for n = 100 (left
    plot, low noise)" is the dense case (0.0200 here; 0.15 at p = 0.1, 0.68 at p = 0.01), the sparse ones follow."""
    d = df[df.figure == 1]
    ps = sorted(d.p_nz.unique(), reverse=True)
    fig, axes = plt.subplots(1, len(ps), figsize=(4 * len(ps), 3.4), sharey=True)
    for ax, p in zip(np.atleast_1d(axes), ps):
        for sigma, col in zip(sorted(d.sigma.unique()), ["tab:blue", "tab:green", "tab:red", "tab:purple"]):
            s = d[(d.p_nz == p) & (d.sigma == sigma)].sort_values("n")
            ax.plot(s.n, s.relative_gain.clip(lower=1e-4), "-", color=col, label=f"sigma={sigma:g}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(1e-3, 2)
        ax.set_title(f"non-zero fraction p = {p:g}" + (" (dense)" if p == 1 else ""), fontsize=9)
        ax.set_xlabel("minibatch size n")
        ax.grid(alpha=0.3, which="both")
    np.atleast_1d(axes)[0].set_ylabel("relative log-loss gain per sample")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.suptitle("Fig. 1 (paper 2): diminishing returns of minibatches, optimal rates of eq. 4 (eq. 3 when dense)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_fig2(df: pd.DataFrame, path: Path) -> Path:
    d = df[df.figure == 2]
    sigmas = sorted(d.sigma.unique())
    fig, axes = plt.subplots(1, len(sigmas), figsize=(3.6 * len(sigmas), 3.4), sharey=True)
    for ax, sigma in zip(np.atleast_1d(axes), sigmas):
        s = d[d.sigma == sigma]
        sgd = s[(s.rule == "sgd") & (s.relative_gain > 0)]
        ax.scatter(sgd.n, sgd.relative_gain, s=4, color="gold", label="fixed-rate SGD (40 rates, 0.01..100)")
        for rule, col, lab in (("eq4", "green", "eq. 4, current non-zero counts"),
                               ("eq4_average", "red", "eq. 4, long-term average sparsity")):
            r = s[s.rule == rule].sort_values("n")
            ax.plot(r.n, r.relative_gain.clip(lower=1e-4), "-", color=col, lw=2, label=lab)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(1e-3, 3)
        ax.set_title(f"sigma = {sigma:g}, p = {s.p_nz.iloc[0]:g}", fontsize=9)
        ax.set_xlabel("minibatch size n")
        ax.grid(alpha=0.3, which="both")
    np.atleast_1d(axes)[0].set_ylabel("relative log-loss gain per sample")
    np.atleast_1d(axes)[0].legend(fontsize=7, loc="lower left")
    fig.suptitle("Fig. 2 (paper 2): per-minibatch vs global sparsity in eq. 4, against fixed learning rates", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> None:
    from experiments import results

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=results.DEFAULT_STORE)
    ap.add_argument("--out", type=Path, default=Path("figures"))
    args = ap.parse_args(argv)
    df = pd.read_csv(args.store / "synthetic" / "paper2_figs.csv")
    print(draw_fig1(df, args.out / "paper2_fig1.png"))
    print(draw_fig2(df, args.out / "paper2_fig2.png"))


if __name__ == "__main__":
    main()
