"""Figures of the noisy-quadratic experiments (paper 1 Fig. 2, Supp. Figs. 1-2) from the stored arrays.

    python -m analysis.quadratic_figures [--store STORE] [--out results/figures]

Reads ``<store>/synthetic/{supp_fig1_quadratic,fig2_nonstationary,supp_fig2_bowl}.npz`` (written by
synthetic/quadratic.py) and writes PNG and PDF of each one present. Losses are the excess expected
loss J(theta) - J(theta*) (eq. 2), medians over runs; rates are medians over runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from analysis.common import save_png_pdf
from experiments.data import PROJECT_ROOT

DEFAULT_OUT = PROJECT_ROOT / "results" / "figures"
STYLE = {  # method name -> matplotlib style; vSGD red circles and the oracle black dashes, as in the paper
    "vsgd": {"color": "tab:red", "marker": "o", "markersize": 3, "markevery": 0.04, "lw": 1.2, "label": "vSGD"},
    "oracle": {"color": "black", "ls": "--", "lw": 1.4, "label": "oracle (eq. 5)"},
}
PALETTE = ["tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:olive"]


def _style(name: str, i: int) -> dict:
    if name in STYLE:
        return STYLE[name]
    label = name.replace("sgd_", "SGD ").replace("/t", "/t")
    return {"color": PALETTE[i % len(PALETTE)], "lw": 1.0, "label": label}


def _loss_and_rates(arrays, title: str, log_x: bool, jumps=None, memory: bool = False):
    """Median loss and median rate over time; with ``memory``, a third panel with vSGD's median tau."""
    methods = [str(m) for m in arrays["methods"]]
    memory = memory and "vsgd/tau" in arrays
    if memory:
        fig, (ax_l, ax_r, ax_m) = plt.subplots(3, 1, figsize=(6.5, 8.0), sharex=True,
                                               gridspec_kw={"height_ratios": [1, 1, 0.6]})
    else:
        fig, (ax_l, ax_r) = plt.subplots(2, 1, figsize=(6.5, 6.0), sharex=True)
    for i, m in enumerate(methods):
        st = _style(m, i)
        loss = np.median(arrays[f"{m}/loss"], axis=1)
        rate = np.median(arrays[f"{m}/rate"].reshape(arrays[f"{m}/rate"].shape[0], -1), axis=1)
        t_loss = np.arange(loss.size) + (1 if log_x else 0)
        t_rate = np.arange(rate.size) + 1
        ax_l.plot(t_loss, loss, **st)
        ax_r.plot(t_rate, np.where(rate > 0, rate, np.nan), **{**st, "label": None})
    axes = (ax_l, ax_r)
    if memory:
        tau = np.median(arrays["vsgd/tau"][..., 0], axis=1)
        ax_m.plot(np.arange(tau.size) + 1, tau, **{**STYLE["vsgd"], "label": None})
        ax_m.set_ylabel("vSGD memory τ\n(median, Sec. 4.2)")
        axes = (ax_l, ax_r, ax_m)
    for ax in axes:
        ax.set_yscale("log")
        if log_x:
            ax.set_xscale("log")
        if jumps is not None:
            for j in jumps[1:]:
                ax.axvline(j, color="0.8", lw=0.8, zorder=0)
        ax.grid(True, which="major", alpha=0.3)
    ax_l.set_ylabel("median excess loss  J(θ) − J(θ*)")
    ax_r.set_ylabel("median learning rate η")
    axes[-1].set_xlabel("samples (updates)")
    ax_l.set_title(title, fontsize=10)
    ax_l.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def supp_fig1(arrays, out: Path) -> list[Path]:
    fig = _loss_and_rates(arrays, "Stationary noisy quadratic (h = 1), median of "
                          f"{arrays['vsgd/loss'].shape[1]} runs (paper 1 Supp. Fig. 1)", log_x=True)
    return save_png_pdf(fig, out, "supp_fig1_quadratic", dpi=150)


def fig2(arrays, out: Path) -> list[Path]:
    fig = _loss_and_rates(arrays, "Non-stationary noisy quadratic: θ* jumps every "
                          f"{int(arrays['jumps'][1])} steps (paper 1 Fig. 2), median of "
                          f"{arrays['vsgd/loss'].shape[1]} runs", log_x=False, jumps=arrays["jumps"], memory=True)
    return save_png_pdf(fig, out, "fig2_nonstationary", dpi=150) + (fig2_zoom(arrays, out) if len(arrays["jumps"]) > 1 else [])


def fig2_zoom(arrays, out: Path, before: int = 10, after: int = 80) -> list[Path]:
    """The steps around the jumps (after the first), aligned on the jump: median over runs, then over jumps,
    of the excess loss and of the rate; for vSGD also the oracle's eq. 5 rate at vSGD's own theta."""
    methods = [str(m) for m in arrays["methods"]]
    jumps = [int(j) for j in arrays["jumps"][1:] if j + after <= arrays["vsgd/rate"].shape[0]]
    k = np.arange(-before, after)
    fig, (ax_l, ax_r) = plt.subplots(2, 1, figsize=(6.5, 6.0), sharex=True)

    def aligned(a):  # [steps(+1), K, ...] -> median over runs at each step, then median over jumps
        med = np.median(a.reshape(a.shape[0], a.shape[1], -1)[..., 0], axis=1)
        return np.median(np.stack([med[j + k] for j in jumps]), axis=0)

    for i, m in enumerate(methods):
        st = _style(m, i)
        ax_l.plot(k, aligned(arrays[f"{m}/loss"]), **st)  # loss[t]: theta after t updates
        ax_r.plot(k, aligned(arrays[f"{m}/rate"]), **{**st, "label": None})  # rate[t]: the rate of update t
    if "vsgd/oracle_rate_at_theta" in arrays:
        ax_r.plot(k, aligned(arrays["vsgd/oracle_rate_at_theta"]), color="tab:red", ls=":", lw=1.2,
                  label="oracle's rate at vSGD's θ")
        ax_r.legend(fontsize=8, loc="lower right")
    for ax in (ax_l, ax_r):
        ax.set_yscale("log")
        ax.axvline(0, color="0.8", lw=0.8, zorder=0)
        ax.grid(True, which="major", alpha=0.3)
    ax_l.set_ylabel("median excess loss")
    ax_r.set_ylabel("median learning rate η")
    ax_r.set_xlabel("updates since the jump")
    ax_l.set_title(f"Fig. 2 around the jumps: median over {arrays['vsgd/loss'].shape[1]} runs, then over "
                   f"{len(jumps)} jumps", fontsize=10)
    ax_l.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return save_png_pdf(fig, out, "fig2_nonstationary_zoom", dpi=150)


def supp_fig2(arrays, out: Path) -> list[Path]:
    methods = [str(m) for m in arrays["methods"]]
    h, sigma = arrays["h"], arrays["sigma"]
    fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(11, 4.6), gridspec_kw={"width_ratios": [1.3, 1]})
    allt = np.concatenate([arrays[f"{m}/theta"][0] for m in methods])
    lo, hi = allt.min(axis=0), allt.max(axis=0)
    pad = 0.1 * (hi - lo) + 0.3
    g0, g1 = np.meshgrid(np.linspace(lo[0] - pad[0], hi[0] + pad[0], 200), np.linspace(lo[1] - pad[1], hi[1] + pad[1], 200))
    J = 0.5 * (h[0] * g0**2 + h[1] * g1**2)
    ax_t.contour(g0, g1, J, levels=np.geomspace(max(J.min(), 1e-2), J.max(), 12), colors="0.75", linewidths=0.6)
    markers = {"vsgd": "^", "oracle": None}
    for i, m in enumerate(methods):
        st = _style(m, i)
        traj = arrays[f"{m}/theta"][0]
        mk = markers.get(m, "x" if "/t" not in m else "o")
        idx = np.unique(np.geomspace(1, len(traj) - 1, 30).astype(int))  # log-spaced: early steps visible
        ax_t.plot(traj[:, 0], traj[:, 1], color=st["color"], lw=0.6, alpha=0.6, ls=st.get("ls", "-"))
        if mk:
            ax_t.plot(traj[idx, 0], traj[idx, 1], mk, color=st["color"], ms=3.5, mfc="none", label=st["label"])
        else:
            ax_t.plot([], [], color=st["color"], ls=st.get("ls", "-"), label=st["label"])
    ax_t.plot([0], [0], "k*", ms=10, label="θ*")
    ax_t.set_xlabel(f"θ₁ (curvature {h[0]:g})")
    ax_t.set_ylabel(f"θ₂ (curvature {h[1]:g})")
    ax_t.set_title(f"One run, {arrays[f'{methods[0]}/rate'].shape[0]} steps, noise σ = {sigma.tolist()}", fontsize=10)
    ax_t.legend(fontsize=8, loc="lower right")
    for i, m in enumerate(methods):
        loss = np.median(arrays[f"{m}/loss"], axis=1)
        ax_l.plot(np.arange(loss.size) + 1, loss, **_style(m, i))
    ax_l.set_xscale("log")
    ax_l.set_yscale("log")
    ax_l.set_xlabel("samples (updates)")
    ax_l.set_ylabel("median excess loss")
    ax_l.set_title(f"Median of {arrays['vsgd/loss'].shape[1]} runs", fontsize=10)
    ax_l.grid(True, alpha=0.3)
    fig.suptitle("2-D noisy bowl, curvatures 10x apart (paper 1 Supp. Fig. 2)", fontsize=11)
    return save_png_pdf(fig, out, "supp_fig2_bowl", dpi=150)


FIGURES = {"supp_fig1_quadratic": supp_fig1, "fig2_nonstationary": fig2, "supp_fig2_bowl": supp_fig2}


def draw_all(store: Path | None = None, out: Path | None = None) -> list[Path]:
    from experiments.results import DEFAULT_STORE

    store = Path(store) if store else DEFAULT_STORE
    out = Path(out) if out else DEFAULT_OUT
    written = []
    for name, draw in FIGURES.items():
        path = store / "synthetic" / f"{name}.npz"
        if path.exists():
            written += draw(dict(np.load(path)), out)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    for p in draw_all(args.store, args.out):
        print(p)


if __name__ == "__main__":
    main()
