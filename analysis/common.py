"""What every table and figure shares: reading the store, the paper's numbers, grids, and which records count.

The analysis reads only the results store (``experiments.results.load``; columns documented in
``experiments.results.COLUMNS``) and the published numbers in ``reference/``. Rules that decide which
records feed which table live here, once (docs/analysis.md explains them):

* **Tuning (Table 1)**: a method is *tuned* when it has a grid file ``conf/grid/<method>.yaml`` or a row
  in the paper's Table 1. Per benchmark and tuned method, each hyper-parameter setting is scored by its
  mean final test error over its first ``TUNING_SEEDS`` seeds (the paper: "averaged over 2 runs"); the
  lowest wins.
* **Tables 2 and 3**: for a tuned method, the records at the paper's Table 1 setting (hp values equal
  to the row of ``reference/paper_table1.csv``, gamma in units of 1/#train); where the paper gives no
  setting (e.g. SMD on CIFAR), our own Table 1 best, marked ``setting = ours``. For a tuning-free
  method (vSGD variants and anything else without a grid), all of its records; if the store holds
  several settings of it (e.g. a sensitivity study), the setting with the most seeds, with a note.
* Only records at the largest ``epochs`` present for a (benchmark, method) are used, so a short probe
  run never mixes with the full 6-epoch runs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger("analysis")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REFERENCE = PROJECT_ROOT / "reference"
GRID_DIR = PROJECT_ROOT / "conf" / "grid"

BENCHMARKS = ("M0", "M1", "M2", "C0", "C1", "CR")
MNIST = ("M0", "M1", "M2")
CIFAR = ("C0", "C1", "CR")
# the paper's column order (Tables 2, 3); any other method present follows, alphabetically
PAPER_METHODS = ("vsgd_l", "vsgd_b", "vsgd_g", "sgd", "adagrad", "smd", "amari", "almeida")
LABELS = {"vsgd_l": "vSGD-l", "vsgd_b": "vSGD-b", "vsgd_g": "vSGD-g", "vsgd_fd": "vSGD-fd", "sgd": "SGD",
          "adagrad": "AdaGrad", "smd": "SMD", "amari": "Amari", "almeida": "Almeida",
          # issue 9: today's tuning-free optimizers (config names in docs/beyond.md)
          "adam": "Adam", "dadapt_sgd": "D-Adapt SGD", "dadapt_adam": "D-Adapt Adam", "prodigy": "Prodigy",
          "sgd_schedulefree": "SF-SGD", "adamw_schedulefree": "SF-AdamW", "dog": "DoG", "cocob": "COCOB"}
# issue 9's tuning-free PyPI optimizers, in the issue's order (config names; docs/beyond.md)
BEYOND_METHODS = ("adam", "dadapt_sgd", "dadapt_adam", "prodigy", "sgd_schedulefree", "adamw_schedulefree", "dog",
                  "cocob")
# Sec. 7 and the last line of Table 3: tuning runs per method (used when conf/grid/<method>.yaml is absent)
PAPER_SETTINGS = {"vsgd_l": 1, "vsgd_b": 1, "vsgd_g": 1, "sgd": 68, "adagrad": 17, "smd": 476, "amari": 119,
                  "almeida": 119}
# paper_table1.csv column -> hyper-parameter name in our configs (gamma is already in units of 1/#train)
TABLE1_COLUMNS = {"eta0": "eta0", "gamma_times_ntrain": "gamma", "mu": "mu", "tau": "tau"}
TUNING_SEEDS = 2  # Sec. 7: best setting "as determined by their lowest test error (averaged over 2 runs)"


def label(method: str) -> str:
    return LABELS.get(method, method)


def method_order(methods: Iterable[str]) -> list[str]:
    methods = set(methods)
    return [m for m in PAPER_METHODS if m in methods] + sorted(methods - set(PAPER_METHODS))


def is_vsgd(method: str) -> bool:
    return method.startswith("vsgd")


# -- the published numbers ----------------------------------------------------------------------
def paper_table1(reference: Path = REFERENCE) -> dict[tuple[str, str], dict[str, float]]:
    """(benchmark, method) -> {hp name: value} of the paper's Table 1 (config units)."""
    path = Path(reference) / "paper_table1.csv"
    if not path.is_file():
        log.warning("no %s: Table 1 is compared with nothing", path)
        return {}
    df = pd.read_csv(path)
    out = {}
    for _, r in df.iterrows():
        out[(r.benchmark, r.method)] = {hp: float(r[c]) for c, hp in TABLE1_COLUMNS.items()
                                        if c in r and pd.notna(r[c])}
    return out


def paper_tables(reference: Path = REFERENCE) -> dict[tuple[str, str, str], float]:
    """(split 'train'|'test', benchmark, method) -> the paper's Table 2 / 3 value."""
    path = Path(reference) / "paper_tables.csv"
    if not path.is_file():
        log.warning("no %s: Tables 2 and 3 are compared with nothing", path)
        return {}
    df = pd.read_csv(path)
    return {(r.split, r.benchmark, r.method): float(r.value) for _, r in df.iterrows()}


# -- grids --------------------------------------------------------------------------------------
def load_grid(method: str, grid_dir: Path = GRID_DIR) -> dict[str, list[float]] | None:
    """conf/grid/<method>.yaml as {hp: [values]}; None when there is no such file (or it is unreadable)."""
    path = Path(grid_dir) / f"{method}.yaml"
    if not path.is_file():
        return None
    try:
        from omegaconf import OmegaConf

        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as exc:  # noqa: BLE001 - a broken grid file must not stop the analysis
        log.warning("could not read %s (%s); treating %s as having no grid", path, exc, method)
        return None
    if isinstance(raw, dict) and set(raw) == {"grid"}:  # a file written without the @package header
        raw = raw["grid"]
    if not isinstance(raw, dict):
        return None
    return {k: [float(v) for v in vals] for k, vals in raw.items()
            if not str(k).startswith("_") and isinstance(vals, list)}


def grid_size(grid: dict[str, list[float]] | None) -> int | None:
    return None if grid is None else int(math.prod(len(v) for v in grid.values()))


def is_tuned(method: str, grids: dict[str, Any], table1: dict[tuple[str, str], Any]) -> bool:
    return grids.get(method) is not None or any(m == method for _, m in table1)


def n_settings(method: str, grids: dict[str, Any], table1: dict, df: pd.DataFrame | None = None) -> int | None:
    """Tuning runs a method needs: its grid size; 1 for a tuning-free method (the paper's claim for vSGD)."""
    if not is_tuned(method, grids, table1):
        return 1
    size = grid_size(grids.get(method))
    if size is not None:
        return size
    if method in PAPER_SETTINGS:
        return PAPER_SETTINGS[method]
    if df is not None and len(df):
        return int(df[df.optimizer == method].pipe(settings_frame).drop_duplicates().shape[0]) or None
    return None


# -- records ------------------------------------------------------------------------------------
def hp_columns(df: pd.DataFrame) -> list[str]:
    """The hp_<name> columns that hold a value for at least one row of ``df``."""
    return sorted(c for c in df.columns if c.startswith("hp_") and df[c].notna().any())


def settings_frame(df: pd.DataFrame) -> pd.DataFrame:
    cols = hp_columns(df)
    return df[cols].astype(float).round(12) if cols else pd.DataFrame(index=df.index)


def setting_key(df: pd.DataFrame) -> pd.Series:
    """One hashable key per row naming its hyper-parameter setting (NaN-safe, float noise removed)."""
    cols = hp_columns(df)
    if not cols:
        return pd.Series([()] * len(df), index=df.index, dtype=object)  # every row: the empty setting
    vals = df[cols].astype(float)
    return vals.apply(lambda r: tuple((c[3:], float(f"{v:.10g}")) for c, v in r.items() if pd.notna(v)), axis=1)


def duration_text(seconds: float) -> str:
    """A duration as the tables print it: "45 s", "12.5 min", "3.2 h"; "–" when unknown (NaN, inf)."""
    if not np.isfinite(seconds):
        return "–"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def setting_text(key: tuple) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in key) if key else "(defaults)"


def longest_epochs(df: pd.DataFrame) -> pd.DataFrame:
    """Rows at the largest `epochs` present per (benchmark, optimizer)."""
    if df.empty or "epochs" not in df or df.epochs.isna().all():
        return df
    ep = df.epochs.astype(float)
    top = ep.groupby([df.benchmark, df.optimizer]).transform("max")
    return df[np.isclose(ep, top)]


def prepare(df: pd.DataFrame) -> pd.DataFrame:
    """Normalise dtypes of a load() frame; add `setting` (hashable hp key)."""
    df = df.copy()
    if df.empty:
        df["setting"] = pd.Series(dtype=object)
        return df
    for c in ("train_error", "test_error", "train_loss", "test_loss", "epochs"):
        if c in df:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    df["diverged"] = df["diverged"].fillna(False).astype(bool) if "diverged" in df else False
    df["data_original"] = df["data_original"].fillna(True).astype(bool) if "data_original" in df else True
    df["seed"] = pd.to_numeric(df["seed"], errors="coerce")
    df["setting"] = setting_key(df)
    return df


def matches(row_hp: dict[str, float], setting: tuple, rtol: float = 1e-6) -> bool:
    """True when every hp in ``row_hp`` (the paper's) equals the setting's value of it."""
    d = dict(setting)
    return all(k in d and math.isclose(d[k], v, rel_tol=rtol, abs_tol=1e-15) for k, v in row_hp.items())


def save_png_pdf(fig, out: Path, stem: str, **savefig_kw) -> list[Path]:
    """Save `fig` as `out/stem.png` and `out/stem.pdf`, and close it.

    The PDF gets no CreationDate, so regenerating an unchanged figure leaves the committed file
    byte-identical (matplotlib's PNG carries no date to begin with).
    """
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    for p in paths:
        meta = {"CreationDate": None} if p.suffix == ".pdf" else None
        fig.savefig(p, bbox_inches="tight", metadata=meta, **savefig_kw)
    import matplotlib.pyplot as plt  # lazily: the table code imports this module before any matplotlib.use()

    plt.close(fig)
    return paths
