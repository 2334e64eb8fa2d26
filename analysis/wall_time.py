"""What the reproduction cost: wall time of every Table 2/3 cell and every Table 1 grid, from the store.

    python -m analysis.wall_time [--store PATH] [--out results]

Each record's ``seconds`` is the wall time of its chunk (the members trained together in lock-step)
divided by the members in it, so a sum over records is the wall time those records took. Tables 2/3
use the records `tables.table23_records` selects (the paper's Table 1 setting, or every seed of a
tuning-free method). A cell with fewer seeds than the paper's 10 is projected to 10 at its measured
mean per seed. A grid tried in part is projected to its full size x 2 seeds (``common.TUNING_SEEDS``): the
members still to run at the rate the current code measured for that rule and network at the runner's chunk
size (``benchmarks/roofline.csv``: member-updates/s at ``runner_K``, by ``benchmarks/throughput.py``'s timing,
on the quiet CPU), or, for a rule it did not measure, at the grid's own mean per member in the records; the
records' mean alone is kept beside it (many of those runs are older code, and beside other jobs).
Projections are labelled as such, and methods the paper ran that have no record at all are listed, not
guessed. Writes ``results/wall_time.{md,csv}``.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import common, devices, tables
from analysis.common import label, log

PAPER_SEEDS = 10  # Tables 2, 3: "averaged over 10 runs"
RATES = common.PROJECT_ROOT / "benchmarks" / "roofline.csv"  # measured member-updates/s of the current code
GPU_RATES = common.PROJECT_ROOT / "benchmarks" / "roofline_h100.csv"  # the same on a lent H100 (session 25)


def measured_rates(path: Path = RATES) -> dict[tuple[str, str], float]:
    """{(benchmark, rule): member-updates/s} at the chunk size the runner picks on the CPU (``K == runner_K``),
    from a throughput CSV; {} when the file is missing."""
    if not Path(path).is_file():
        log.warning(f"{path} not found: the Table 1 projection uses the records' own rates only")
        return {}
    t = pd.read_csv(path)
    t = t[(t.K == t.runner_K) & (t.device == "cpu")]
    return {(r.benchmark, r.rule): float(r.updates_per_s) for r in t.itertuples()}


def gpu_rates(path: Path = GPU_RATES) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """{(benchmark, rule): [(K, member-updates/s), ...]} measured on a GPU (``benchmarks/gpu_check.sh``'s
    roofline); {} when the file is missing."""
    if not Path(path).is_file():
        return {}
    t = pd.read_csv(path)
    out: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for r in t[t.device.astype(str).str.startswith("cuda")].itertuples():
        out.setdefault((r.benchmark, r.rule), []).append((int(r.K), float(r.updates_per_s)))
    return {k: sorted(v) for k, v in out.items()}


def rate_at(measured: list[tuple[int, float]], k: int) -> float:
    """Member-updates/s at chunk size ``k`` from rates measured at a few K (sorted): linear in K between two
    measured K (a rate per member grows with K until the step is bandwidth-bound), the nearest measurement
    outside them."""
    if k <= measured[0][0]:
        return measured[0][1]
    for (k0, r0), (k1, r1) in itertools.pairwise(measured):
        if k <= k1:
            return r0 + (r1 - r0) * (k - k0) / (k1 - k0)
    return measured[-1][1]


def gpu_seconds(left: int, steps: float, measured: list[tuple[int, float]] | None) -> float:
    """Seconds for ``left`` members of ``steps`` updates each, in one chunk, at :func:`rate_at` ``left``; NaN
    without a measurement."""
    if not measured:
        return np.nan
    return left * steps / rate_at(measured, left) if left and np.isfinite(steps) else 0.0


_hours = common.duration_text


def table23_time(inp: tables.Inputs, t1: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (benchmark, method) of Tables 2/3: seeds, measured seconds, projection to 10 seeds."""
    recs = tables.table23_records(inp, t1)
    rows = []
    for (bench, method), g in recs.groupby(["benchmark", "optimizer"], sort=False):
        measured = float(g.seconds.sum())
        n = int(g.seed.nunique())
        # The cost per seed prices the rest on this project's CPU (analysis.coverage): from the CPU records
        # alone where a cell also has records from a GPU, whose seconds are not CPU seconds.
        cpu = g[devices.on_cpu(g)]
        priced = cpu if len(cpu) else g
        per_seed = float(priced.seconds.sum()) / int(priced.seed.nunique())
        counts = g.device.astype(str).value_counts(sort=False) if "device" in g else pd.Series(dtype=int)
        rows.append({"benchmark": bench, "method": method, "seeds": n, "seconds": measured,
                     "seconds_per_seed": per_seed,
                     "seconds_10_seeds": per_seed * max(n, PAPER_SEEDS),
                     "devices": ", ".join(f"{d} x{c}" if len(counts) > 1 else d for d, c in sorted(counts.items()))})
    return _ordered(pd.DataFrame(rows))


def table1_time(inp: tables.Inputs, rates: dict[tuple[str, str], float] | None = None) -> pd.DataFrame:
    """One row per (benchmark, tuned method): grid members run, measured seconds, projection to the full grid.

    ``seconds_full_grid_rates``: measured + the members still to run (``seconds_left``) at ``rates``
    (:func:`measured_rates`; the records' mean per member for a rule it lacks); ``seconds_full_grid``: the
    whole grid at the records' mean per member alone."""
    rates = measured_rates() if rates is None else rates
    on_gpu = gpu_rates()
    rows = []
    df = inp.df
    for (bench, method), g in df.groupby(["benchmark", "optimizer"], sort=False):
        if not inp.tuned(method):
            continue
        g = tables.tuning_records(g)  # the tuning runs: the first 2 seeds of each setting, as Table 1 scores them
        size = common.grid_size(inp.grids.get(method))
        cpu = g[devices.on_cpu(g)]  # a GPU's seconds are not this CPU's: price the rest from the CPU's records
        per_member = float((cpu if len(cpu) else g).seconds.mean())
        measured = float(g.seconds.sum())
        left = max(0, size * common.TUNING_SEEDS - len(g)) if size else 0
        rate = rates.get((bench, method))
        steps = float(g.steps.iloc[0]) if "steps" in g and g.steps.notna().any() else np.nan
        from_rate = rate is not None and np.isfinite(steps)
        rest = left * (steps / rate if from_rate else per_member)
        rows.append({"benchmark": bench, "method": method, "settings": int(g.setting.nunique()),
                     "grid_size": size, "members": len(g), "seconds": measured,
                     "members_left": left, "updates_per_s": rate if from_rate else np.nan,
                     "seconds_left": rest if size else np.nan,
                     "seconds_full_grid": per_member * size * common.TUNING_SEEDS if size else np.nan,
                     "seconds_full_grid_rates": measured + rest if size else np.nan,
                     "seconds_left_gpu": gpu_seconds(left, steps, on_gpu.get((bench, method))) if size else np.nan})
    return _ordered(pd.DataFrame(rows))


def with_cost_left(inp: tables.Inputs, t1: pd.DataFrame) -> pd.DataFrame:
    """Table 1 with what each row's grid has left to run, projected as ``table1_time`` projects it (issue 33: a
    row copied from the paper says what searching it would cost): ``seconds_left_cpu`` (one quiet CPU job, at
    the current code's measured rates) and ``seconds_left_h100`` (where an H100 measured the rule)."""
    grids = table1_time(inp)
    if t1.empty or grids.empty:
        return t1
    cost = grids[["benchmark", "method", "seconds_left", "seconds_left_gpu"]].rename(
        columns={"seconds_left": "seconds_left_cpu", "seconds_left_gpu": "seconds_left_h100"})
    return t1.drop(columns=["seconds_left_cpu", "seconds_left_h100"], errors="ignore").merge(
        cost, on=["benchmark", "method"], how="left")


def _ordered(t: pd.DataFrame) -> pd.DataFrame:
    if t.empty:
        return t
    order = {m: i for i, m in enumerate(common.method_order(t.method.unique()))}
    bench = {b: i for i, b in enumerate(common.BENCHMARKS)}
    return t.sort_values(["benchmark", "method"], key=lambda s: s.map(bench if s.name == "benchmark" else order),
                         ignore_index=True)


def not_run(inp: tables.Inputs, t23: pd.DataFrame) -> dict[str, list[str]]:
    """Per benchmark, the paper's Table 2/3 methods with no record in Tables 2/3 (nothing to project from)."""
    have = set(zip(t23.benchmark, t23.method)) if len(t23) else set()
    missing: dict[str, list[str]] = {}
    for _split, bench, method in sorted(inp.paper):  # keys: (split, benchmark, method)
        if (bench, method) not in have and method not in missing.get(bench, []):
            missing.setdefault(bench, []).append(method)
    return {b: common.method_order(missing[b]) for b in common.BENCHMARKS if b in missing}


def markdown(t23: pd.DataFrame, t1: pd.DataFrame, missing: dict[str, list[str]]) -> str:
    lines = ["# Wall time of the reproduction (from the results store)", "",
             ("Each record's `seconds` is its chunk's wall time divided by the members in the chunk; sums are wall "
             "time. Where the CPU was shared with other jobs, these are upper bounds. *Projected* columns scale "
             f"the measured mean per seed (Tables 2/3: to {PAPER_SEEDS} seeds) or per member (Table 1: to the full "
             f"grid x {common.TUNING_SEEDS} seeds); they are estimates, not measurements."), ""]
    if len(t23):
        lines += ["## Tables 2 and 3 (`./reproduce.sh table2`)", "",
                  ("*Per seed* and the projection use the CPU records where a cell also has records from a GPU "
                   "(*device* counts the seeds each device ran); *measured* sums them all."), "",
                  "| Benchmark | Method | seeds | measured | per seed | 10 seeds (projected) | device |",
                  "|---|---|---|---|---|---|---|"]
        for r in t23.itertuples():
            proj = _hours(r.seconds_10_seeds) if r.seeds < PAPER_SEEDS else "(measured)"
            lines.append(f"| {r.benchmark} | {label(r.method)} | {r.seeds} | {_hours(r.seconds)} | "
                         f"{_hours(r.seconds_per_seed)} | {proj} | {r.devices} |")
        paper_methods = t23[[m in set(common.PAPER_METHODS) for m in t23.method]]
        lines += ["", (f"Measured so far (the paper's methods): **{_hours(paper_methods.seconds.sum())}**; "
                  f"the same cells at {PAPER_SEEDS} seeds (projected): **{_hours(paper_methods.seconds_10_seeds.sum())}**.")]
        others = t23[[m not in set(common.PAPER_METHODS) for m in t23.method]]
        if len(others):
            lines.append(f"Issue 9's columns (vSGD-fd and the PyPI optimizers): {_hours(others.seconds.sum())} measured, "
                         f"{_hours(others.seconds_10_seeds.sum())} at {PAPER_SEEDS} seeds (projected).")
        if missing:
            lines.append("Not run at all, so not in the projection: " + "; ".join(
                f"{b}: {', '.join(label(m) for m in ms)}" for b, ms in missing.items()) + ".")
        lines.append("")
    if len(t1):
        lines += ["## Table 1: the tuning grids (`./reproduce.sh table1`)", "",
                  ("*Left* is the members still to run, priced at *rate*: the member-updates/s the current code "
                   "measured for that rule and network at the runner's chunk size (`benchmarks/roofline.csv`, "
                   "one thread, quiet CPU); where it has no rate (–), at the grid's own mean per member in the "
                   "records. The last column prices the whole grid at the records' mean alone (older code for "
                   "most partial grids, and often beside another job). *Left on one H100* prices the members left "
                   "at the rate the same code measured on a lent NVIDIA H100 (`benchmarks/roofline_h100.csv`, "
                   "`benchmarks/gpu_check.sh`) for a chunk of all the members left, linear in K between the K it "
                   "measured; – where the H100 did not measure the rule and network."), "",
                  ("| Benchmark | Method | settings run / grid | members | measured | left | rate (/s) | "
                   "full grid x 2 seeds (projected) | from the records alone | left on one H100 (projected) |"),
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in t1.itertuples():
            size = "?" if pd.isna(r.grid_size) else int(r.grid_size)
            rate = "–" if pd.isna(r.updates_per_s) else f"{r.updates_per_s:,.0f}"
            lines.append(f"| {r.benchmark} | {label(r.method)} | {r.settings} / {size} | {r.members} | "
                         f"{_hours(r.seconds)} | {r.members_left} | {rate} | {_hours(r.seconds_full_grid_rates)} | "
                         f"{_hours(r.seconds_full_grid)} | {_hours(r.seconds_left_gpu)} |")
        gpu = t1[t1.seconds_left_gpu.notna() & (t1.members_left > 0)]
        lines += ["", (f"Measured: **{_hours(t1.seconds.sum())}**; the grids above in full (projected): "
                  f"**{_hours(np.nansum(t1.seconds_full_grid_rates))}**, of which {_hours(np.nansum(t1.seconds_left))} is "
                  f"still to run ({_hours(np.nansum(t1.seconds_full_grid))} for the full grids at the "
                  "records' own rates). The records at the paper's setting count in both tables (its first 2 seeds "
                  "are tuning runs too). The rates are of one job alone on a quiet CPU: two jobs at once take "
                  "longer each (docs/architecture.md, \"Two jobs at once\")."
                  + (f" What the H100 measured prices {', '.join(f'{b} {label(m)}' for b, m in zip(gpu.benchmark, gpu.method))}"
                     f" at {_hours(gpu.seconds_left_gpu.sum())} on one H100 against {_hours(gpu.seconds_left.sum())} "
                     "on this CPU (projected both)." if len(gpu) else "")), ""]
    return "\n".join(lines)


def write_all(inp: tables.Inputs, out: Path, t1: pd.DataFrame | None = None) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if inp.df.empty or "seconds" not in inp.df:
        log.warning("no records with wall times: results/wall_time.* not written")
        return []
    t23 = table23_time(inp, t1)
    grids = table1_time(inp)
    both = pd.concat([t23.assign(table="2-3"), grids.assign(table="1")], ignore_index=True)
    paths = [out / "wall_time.csv", out / "wall_time.md"]
    both.to_csv(paths[0], index=False)
    paths[1].write_text(markdown(t23, grids, not_run(inp, t23)))
    return paths


def main(argv: list[str] | None = None) -> None:
    tables.cli(write_all, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
