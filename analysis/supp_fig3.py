"""Supp. Fig. 3 of paper 1: learning curves of vSGD-l on M1 with 800 hidden units over 100 epochs.

Drawn from the records of ``python -m experiments.run experiment=supp_fig3_long`` (benchmark ``M1_800``): train
error (green) and test error (red) against epochs on a log axis, one line per seed, as in the paper's figure;
the paper's own number is one line of text (the average test error after 100 epochs, 1.87 %), drawn as a
dashed reference and labelled as the paper's. Checkpoints before the last are evaluated on the first 10 000
training images (the test set is 10 000 images, whole); the last point of each curve is on the full sets.

Outputs: ``supp_fig3_long_runs.png`` and ``supp_fig3_long_runs.csv`` (one row per finished seed, and a mean
row beside the paper's 1.87).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.common import log

BENCHMARK, OPTIMIZER, EPOCHS = "M1_800", "vsgd_l", 100.0
PAPER_TEST_ERROR = 1.87  # paper 1, Supp. Fig. 3 caption: "The average test error after 100 epochs is 1.87%."


def runs(store: Path) -> pd.DataFrame:
    """The finished 100-epoch runs (one row per seed, with its curve); empty when there are none."""
    from experiments import results

    if not Path(store).is_dir():
        raise FileNotFoundError(f"no results store at {store}")
    df = results.load(store, with_curves=True)
    if df.empty:
        return df
    keep = (df.benchmark == BENCHMARK) & (df.optimizer == OPTIMIZER) & (df.epochs == EPOCHS)
    return df[keep].sort_values("seed").reset_index(drop=True)


def summary(df: pd.DataFrame) -> pd.DataFrame:
    rows = [{"seed": int(r.seed), "train_error": r.train_error, "test_error": r.test_error, "diverged": bool(r.diverged),
             "source": "ours"} for r in df.itertuples()]
    if rows:
        rows.append({"seed": "mean", "train_error": df.train_error.mean(), "test_error": df.test_error.mean(),
                     "diverged": bool(df.diverged.any()), "source": f"ours ({len(df)} seeds)"})
    rows.append({"seed": "paper", "train_error": float("nan"), "test_error": PAPER_TEST_ERROR, "diverged": False,
                 "source": "paper 1, Supp. Fig. 3 caption (copied)"})
    return pd.DataFrame(rows)


def draw_all(store: Path, out: Path) -> list[Path]:
    df = runs(Path(store))
    if df.empty:
        raise FileNotFoundError(f"no finished 100-epoch {OPTIMIZER} run on {BENCHMARK} in {store} "
                                "(python -m experiments.run experiment=supp_fig3_long; it resumes where it stopped)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, r in enumerate(df.itertuples()):
        curve = pd.DataFrame(r.curve)
        style = ["-", "--", ":", "-."][i % 4]
        ax.plot(curve.epoch, curve.train_error, style, color="tab:green", label=f"train, seed {r.seed}")
        ax.plot(curve.epoch, curve.test_error, style, color="tab:red", label=f"test, seed {r.seed}")
    ax.axhline(PAPER_TEST_ERROR, color="0.4", lw=0.8, ls=(0, (4, 3)),
               label=f"paper: mean test error after 100 epochs ({PAPER_TEST_ERROR} %)")
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=0.01)  # log above 0.01 %, linear below: a train error of 0 stays drawn
    ax.set_xlabel("epochs (log scale)")
    ax.set_ylabel("error (%, log scale above 0.01)")
    mean_test = df.test_error.mean()
    ax.set_title(f"Supp. Fig. 3: vSGD-l on M1 with 800 hidden units, {len(df)} seed(s)\n"
                 f"ours after 100 epochs: test {mean_test:.2f} % (mean), paper {PAPER_TEST_ERROR} %", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png = out / "supp_fig3_long_runs.png"
    fig.savefig(png, dpi=120)
    plt.close(fig)
    csv = out / "supp_fig3_long_runs.csv"
    summary(df).to_csv(csv, index=False)
    log.info("Supp. Fig. 3: %d seed(s), mean test error %.2f (paper %.2f)", len(df), mean_test, PAPER_TEST_ERROR)
    return [png, csv]
