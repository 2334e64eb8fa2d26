"""Which cells of the committed tables the committed per-member records back, and what is left to run.

    python -m analysis.coverage [--records results/records] [--results results] [--write | --commands [--to-target] | --commit]

The committed tables (``results/table{1,2,3}.csv``) were written by ``python -m analysis`` from a store;
``results/records/`` is the committed copy of the store (docs/architecture.md). This computes Tables 1-3
from the records alone (the same analysis code, in a temporary store) and compares each cell with the
committed one:

* Tables 2/3 (one row per benchmark and method: both tables share their members): seeds in the
  committed table, seeds in the records, and the paper's 10.
* Table 1 (one row per benchmark and tuned method): grid settings tried, in the table and in the records.
  A row of one setting (the paper's, where the grid was too costly to run) is the first two seeds of
  its Table 2/3 cell: its command and cost are that cell's.
* Cells no run has produced yet (issue 9's tuning-free optimizers and vSGD-fd on every benchmark) are
  listed as ``not run``.

A cell is ``covered`` (the records have exactly the table's members), ``partial``, ``missing``, ``stale``
(the records have more than the table: run ``python -m analysis``), ``new`` (records, no table cell) or
``not run``.
CPU time still to run is estimated from ``results/wall_time.csv`` (the committed measured cost per seed,
per grid member): an estimate, labelled as such. Cells no run has measured take the microbenchmark rate of
``benchmarks/beyond_throughput.csv`` where it has one (marked ≈), else ``?``.
``--commands`` prints the commands that restore what is missing, cheapest first; ``--commands --to-target``,
once nothing is missing, those that bring every Table 2/3 cell to 3 seeds, then to 10. ``--write`` writes
``results/coverage.md`` (``python -m analysis`` writes it too, after the tables);
``--commit`` writes it and git-commits it with the records, while runs go on
(``./reproduce.sh restore`` in the background, a commit every half hour);
``tests/test_committed_results.py`` checks that file is current and that every covered cell has the
committed numbers.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import common, tables
from analysis.common import label
from analysis.wall_time import PAPER_SEEDS  # Tables 2, 3: "averaged over 10 runs"

THROUGHPUT = common.PROJECT_ROOT / "benchmarks" / "beyond_throughput.csv"
STATUS_ORDER = ("stale", "partial", "missing", "new", "not run", "covered")
EXPECTED = ("vsgd_fd", *common.BEYOND_METHODS)  # Tables 2+/3+ on every benchmark (issue 9)
FIRST_PASS_SEEDS = 3  # --to-target fills every cell to this many seeds (a spread, a significance test) first


def tables_from_records(records: Path) -> dict[int, pd.DataFrame]:
    """Tables 1-3 as the analysis computes them from the records folder alone (an empty dict if none)."""
    from experiments import results

    if not any(Path(records).glob("*/*.jsonl")):
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        results.sync(Path(tmp), records)
        inp = tables.Inputs.from_frame(results.load(tmp))
    t1 = tables.table1(inp)
    return {1: t1} | {number: tables.table23(inp, split, t1) for number, split in tables.SPLITS.items()}


def _status(committed: float, records: float) -> str:
    if np.isnan(committed):
        return "not run" if np.isnan(records) or records == 0 else "new"
    if np.isnan(records) or records == 0:
        return "missing"
    return "covered" if records == committed else ("stale" if records > committed else "partial")


def throughput_seconds_per_seed(path: Path = THROUGHPUT) -> dict[tuple[str, str], float]:
    """(benchmark, optimizer) -> seconds per member from the microbenchmark of the PyPI optimizers' step
    (its ``fast+compile`` rows: the runner's path), for cells no run has measured yet."""
    if not Path(path).is_file():
        return {}
    t = pd.read_csv(path)
    t = t[t.variant == "fast+compile"]
    return {(r.benchmark, r.optimizer): r.steps_per_member / r.updates_per_s_wall for r in t.itertuples()}


def coverage(ours: dict[int, pd.DataFrame], results_dir: Path, throughput: Path = THROUGHPUT) -> pd.DataFrame:
    """One row per cell: table ("1" or "2/3"), benchmark, method, unit, committed, records, status,
    target, cpu_s_restore (to the committed count) and cpu_s_target (to the target), estimated (whether
    the cost is a microbenchmark's, not a run's), and the command."""
    wall_csv = Path(results_dir) / "wall_time.csv"
    wall = pd.read_csv(wall_csv) if wall_csv.is_file() else pd.DataFrame(
        columns=["benchmark", "method", "seeds", "seconds_per_seed", "seconds", "settings"])
    micro = throughput_seconds_per_seed(throughput)
    rows = []
    for table, count, frame in (("2/3", "n_seeds", 2), ("1", "n_settings_tried", 1)):
        # Table 1: settings tried, and the picked setting's seeds (a setting may be in with one seed)
        cols = ["benchmark", "method", count] + (["n_seeds"] if table == "1" else [])
        committed = pd.read_csv(results_dir / f"table{frame}.csv")
        if table == "2/3":  # a cell at our own grid's pick (§) is restored at that setting, not the paper's
            ours_pick = committed.get("setting_source", pd.Series("", index=committed.index)) == "ours"
            committed["pick"] = committed.get("setting", pd.Series("", index=committed.index)).where(ours_pick, "")
            committed = committed.drop_duplicates(["benchmark", "method"])[cols + ["pick"]]
        else:
            committed = committed[cols]
        mine = ours.get(frame)
        if mine is None or count not in mine:  # e.g. no tuned method in the store: no Table 1
            mine = pd.DataFrame(columns=cols)
        mine = mine[cols]
        both = committed.merge(mine, on=["benchmark", "method"], how="outer", suffixes=("_committed", "_records"))
        if table == "2/3":
            expected = pd.DataFrame([(b, m) for b in common.BENCHMARKS for m in EXPECTED], columns=["benchmark", "method"])
            both = both.merge(expected, on=["benchmark", "method"], how="outer")
        for r in both.itertuples(index=False):
            c, n = float(getattr(r, f"{count}_committed")), float(getattr(r, f"{count}_records"))
            n0 = 0.0 if np.isnan(n) else n
            if table == "2/3":
                cost = wall[(wall.benchmark == r.benchmark) & (wall.method == r.method) & wall.seeds.notna()]
                unit_s = float(cost.seconds_per_seed.iloc[0]) if len(cost) else micro.get((r.benchmark, r.method), np.nan)
                estimated = not len(cost) and (r.benchmark, r.method) in micro
                target = max(PAPER_SEEDS, c if not np.isnan(c) else 0)
                restore = unit_s * max(0.0, (c if not np.isnan(c) else 0) - n0)
                to_target = unit_s * max(0.0, target - n0)
            else:
                cost = wall[(wall.benchmark == r.benchmark) & (wall.method == r.method) & wall.seeds.isna()]
                unit_s = float(cost.seconds.iloc[0] / cost.settings.iloc[0]) if len(cost) else np.nan
                estimated = False
                target = c
                restore = to_target = unit_s * max(0.0, (c if not np.isnan(c) else 0) - n0)
                if c == 1:  # the paper's setting only: seeds 0-1 of the Table 2/3 cell, counted there
                    restore, to_target = 0.0, 0.0
            status = _status(c, n)
            if table == "1" and status == "covered":  # same settings: the picked one's seeds decide
                status = _status(float(r.n_seeds_committed), float(r.n_seeds_records))
            pick = r.pick if table == "2/3" and isinstance(r.pick, str) else ""
            rows.append({"table": table, "benchmark": r.benchmark, "method": r.method,
                         "unit": "seeds" if table == "2/3" else "settings", "committed": c, "records": n0,
                         "status": status, "target": target, "cpu_s_restore": restore,
                         "cpu_s_target": to_target, "estimated": estimated, "pick": pick,
                         # restore a committed cell at its own seeds first: more seeds make it stale (see markdown)
                         "command": command(table, r.benchmark, r.method, c if table == "2/3" and c > 0 else PAPER_SEEDS,
                                            pick)})
    df = pd.DataFrame(rows)
    # a one-setting Table 1 row is trained by its Table 2/3 cell's command
    cmd23 = {(r.benchmark, r.method): r.command for r in df[df.table == "2/3"].itertuples()}
    via = (df.table == "1") & (df.committed == 1)
    df.loc[via, "command"] = [cmd23.get((b, m), c) for b, m, c in zip(df[via].benchmark, df[via].method, df[via].command)]
    order = {b: i for i, b in enumerate(common.BENCHMARKS)}
    return df.sort_values(["table", "benchmark", "method"], key=lambda s: s.map(order) if s.name == "benchmark" else s,
                          ascending=[False, True, True], ignore_index=True)


def command(table: str, benchmark: str, method: str, target: float, pick: str = "") -> str:
    """The runner command that trains the cell's missing members (members already stored are skipped). ``pick``:
    the setting of a Table 2/3 cell at our own grid's pick (§; ``setting`` of ``table2.csv``, e.g. ``"eta0=0.003,
    tau=1000"``), which the command gives as overrides: ``experiment=table2`` would train the paper's setting."""
    b = benchmark.lower()
    if table == "1":
        return f"python -m experiments.run experiment=table1 benchmark={b} optimizer={method}"
    if pick:
        overrides = " ".join(f"optimizer.{kv.strip()}" for kv in pick.split(","))
        return f"python -m experiments.run benchmark={b} optimizer={method} {overrides} seeds={int(target)}"
    experiment = "table2" if method in common.PAPER_METHODS else "beyond_tables"
    return f"python -m experiments.run experiment={experiment} benchmark={b} optimizer={method} seeds={int(target)}"


def _hours(s: float) -> str:
    return "?" if np.isnan(s) else "–" if s == 0 else common.duration_text(s)



def _count(x: float) -> str:
    return "–" if np.isnan(x) else f"{x:.0f}"


def markdown(df: pd.DataFrame) -> str:
    """results/coverage.md: the totals, then every cell that is not covered, then the covered ones."""
    todo = df[df.status != "covered"]
    unknown = df[df.cpu_s_target.isna()]
    micro = df[df.estimated]
    out = ["# Which committed table cells the committed records back (`python -m analysis.coverage --write`)", "",
           "Computed from `results/records/` and `results/table{1,2,3}.csv`; CPU times are estimates from",
           "`results/wall_time.csv` (measured cost per seed or grid member, one CPU thread).", "",
           f"- cells: {len(df)}; covered {int((df.status == 'covered').sum())}, "
           + ", ".join(f"{s} {int((df.status == s).sum())}" for s in STATUS_ORDER[:-1] if (df.status == s).any()),
           f"- to restore every committed cell: about {df.cpu_s_restore.sum() / 3600:.1f} CPU-hours",
           "- commands restore a committed cell at its own seeds and setting (a cell at our own grid's pick, §, at",
           "  that pick, given as overrides: `experiment=table2` would train the paper's setting); a cell with more",
           "  seeds in the records than in the table is stale, and `python -m analysis` rewrites every table from",
           "  the records, so raise seeds",
           "  (`./reproduce.sh complete`: it refuses until then) only once every cell is covered.",
           f"- to bring every Table 2/3 cell to the paper's {PAPER_SEEDS} seeds and restore every Table 1 row at its "
           "committed settings (a Table 1 row's target is the settings it has, not the paper's full grid, whose cost "
           f"`wall_time.md` projects): about {df.cpu_s_target.sum() / 3600:.1f} CPU-hours"
           + (f" ({micro.cpu_s_target.sum() / 3600:.1f} of them for {len(micro)} cells never run, marked ≈: "
              "seconds per seed from the microbenchmark `benchmarks/beyond_throughput.csv`, not from a run)"
              if len(micro) else "")
           + (f", plus {len(unknown)} cell{'s' * (len(unknown) != 1)} never measured (`?`)" if len(unknown) else ""), "",
           "| table | benchmark | method | unit | committed | records | status | target | CPU to restore | CPU to target | command |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in pd.concat([todo, df[df.status == "covered"]]).itertuples(index=False):
        out.append(f"| {r.table} | {r.benchmark} | {label(r.method)} | {r.unit} | {_count(r.committed)} | "
                   f"{_count(r.records)} | {r.status} | {_count(r.target)} | {_hours(r.cpu_s_restore)} | "
                   f"{'≈ ' if r.estimated else ''}{_hours(r.cpu_s_target)} | `{r.command}` |")
    return "\n".join(out) + "\n"


def lost_cells(new: dict[int, pd.DataFrame], results_dir: Path) -> pd.DataFrame:
    """The cells of the tables already in ``results_dir`` that tables ``new`` ({1: Table 1, 2: Table 2})
    lack or hold with fewer members: what writing ``new`` over them would lose (none if no tables yet)."""
    results_dir = Path(results_dir)
    if not all((results_dir / f"table{n}.csv").is_file() for n in (1, 2)) or not new:
        return pd.DataFrame(columns=["table", "benchmark", "method", "committed", "records", "status"])
    df = coverage(new, results_dir)
    return df[df.status.isin(["missing", "partial"])]


def restore_commands(df: pd.DataFrame) -> list[str]:
    """The commands that restore every committed cell the records do not back, cheapest first, once each
    (a Table 1 row of one setting comes with its Table 2/3 cell's command)."""
    todo = df[df.status.isin(["missing", "partial"])]
    return _cheapest_first(todo.command, todo.cpu_s_restore)


def _cheapest_first(commands, seconds) -> list[str]:
    """Each command once, at the cost of its dearest cell, cheapest first; cells of unknown cost last."""
    cost = pd.Series(np.asarray(seconds, dtype=float), index=list(commands)).fillna(np.inf)
    return list(cost.groupby(level=0, sort=False).max().sort_values(kind="stable").index)


def target_commands(df: pd.DataFrame) -> list[str]:
    """The commands that bring every Table 2/3 cell to its target seeds (the paper's 10), breadth first: every
    cell below ``FIRST_PASS_SEEDS`` to that many first, then every cell to its target; within each pass
    cheapest first and cells of unknown cost last, once each. So a stopped queue leaves no blank cell that
    a cheap raise could have filled. Only once every committed cell is backed: a raised cell is stale
    until ``python -m analysis`` rewrites the tables from the records, which it can do without losing a
    cell only when none is missing or partial. Raises ValueError naming those cells otherwise."""
    behind = df[df.status.isin(["missing", "partial"])]
    if len(behind):
        cells = ", ".join(f"{r.benchmark} {label(r.method)} (Table {r.table})" for r in behind.itertuples())
        raise ValueError(f"{len(behind)} committed cells are not backed by the records yet: {cells}. Run "
                         "`./reproduce.sh restore` first (then `python -m analysis`): a table with raised seeds "
                         "cannot be regenerated while they are missing.")
    todo = df[(df.table == "2/3") & (df.records < df.target)]
    first = todo[todo.records < FIRST_PASS_SEEDS]
    per_seed = first.cpu_s_target / (first.target - first.records)
    return (_cheapest_first([command("2/3", r.benchmark, r.method, FIRST_PASS_SEEDS, r.pick) for r in first.itertuples()],
                            per_seed * (FIRST_PASS_SEEDS - first.records))
            + _cheapest_first([command("2/3", r.benchmark, r.method, r.target, r.pick) for r in todo.itertuples()],
                              todo.cpu_s_target))


def pick_commands(inp: tables.Inputs, seeds: int = PAPER_SEEDS) -> list[str]:
    """The commands that bring each baseline to ``seeds`` seeds at our own grid's pick, for every Table 1 row
    ``inp`` (a store's members) has searched in full (Tables 2/3 report those cells at our pick, §): the grids
    give a pick 2 seeds, and ``experiment=table2`` trains the paper's setting. What ``./reproduce.sh
    table1/table2/all`` runs after their experiments; a pick already at ``seeds`` gives no command."""
    t1 = tables.table1(inp)
    if t1.empty:
        return []
    cmds = []
    for r in t1[t1.searched.astype(bool)].itertuples():
        recs = inp.df[(inp.df.benchmark == r.benchmark) & (inp.df.optimizer == r.method)]
        have = recs[(recs.setting == r.setting_key) & np.isclose(recs.epochs.astype(float), float(r.epochs))]
        if have.seed.nunique() < seeds:
            cmds.append(command("2/3", r.benchmark, r.method, seeds, common.setting_text(r.setting_key)))
    return cmds


def write(records: Path, results_dir: Path) -> tuple[Path, str, pd.DataFrame]:
    """Write <results_dir>/coverage.md for the records folder; return its path, its text and the cells."""
    from experiments import results

    df = coverage(tables_from_records(records), Path(results_dir))
    md = markdown(df)
    return results.write_atomic(Path(results_dir) / "coverage.md", md), md, df


def _stamp(records: Path) -> list[tuple[str, int, int]]:
    """What changes when a run adds members to the records (they are rewritten by an atomic rename)."""
    stats = ((str(p), p.stat()) for p in Path(records).glob("*/*.jsonl"))
    return sorted((name, st.st_mtime_ns, st.st_size) for name, st in stats)


def commit(records: Path, results_dir: Path, tries: int = 5) -> str | None:
    """Rewrite <results_dir>/coverage.md for the records and commit the two (those paths only, whatever else
    is staged) in the git repository that holds them; return the commit message, or None when neither
    changed. Runs may add members meanwhile (``./reproduce.sh restore``): the report is written and staged
    again until the records stood still from before it was computed until they were staged, so the commit
    never pairs records with an older report. After ``tries`` busy attempts it raises and commits nothing
    (the last attempt's paths stay staged; the next call commits them with a fresh report)."""
    records, results_dir = Path(records).resolve(), Path(results_dir).resolve()

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(results_dir), *args], check=True, capture_output=True,
                                  text=True).stdout
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"`git {' '.join(args)}` failed in {results_dir}: {exc.stderr.strip()}") from None

    for _ in range(tries):  # records unchanged from before the report until after they are staged
        before = _stamp(records)
        path, _, df = write(records, results_dir)
        git("add", "--", str(records), str(path))
        if _stamp(records) == before:
            break
    else:
        raise RuntimeError(f"{records} changed during each of {tries} attempts to write coverage.md; "
                           "run `python -m analysis.coverage --commit` again (or once the runs are done)")
    changed = git("diff", "--cached", "--name-only", "--", str(records), str(path)).split()
    if not changed:
        return None
    cells = sorted({"/".join(Path(f).parts[-2:]).removesuffix(".jsonl") for f in changed if f.endswith(".jsonl")})
    committed = df[~df.status.isin(["not run", "new"])]
    left = (f"about {df.cpu_s_restore.sum() / 3600:.1f} CPU-hours to restore the rest" if df.cpu_s_restore.sum()
            else f"about {df.cpu_s_target.sum() / 3600:.1f} CPU-hours to bring every cell to {PAPER_SEEDS} seeds")
    msg = (f"records: {', '.join(cells) or 'coverage.md only'}; {int((committed.status == 'covered').sum())} of "
           f"{len(committed)} committed cells backed, {left}")
    git("commit", "-q", "-m", msg, "--", str(records), str(path))
    return msg


def main(argv: list[str] | None = None) -> int:
    from experiments import results

    ap = argparse.ArgumentParser(prog="python -m analysis.coverage", description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=Path, default=results.DEFAULT_RECORDS)
    ap.add_argument("--results", type=Path, default=common.PROJECT_ROOT / "results",
                    help="folder of the committed table{1,2,3}.csv and wall_time.csv")
    ap.add_argument("--write", action="store_true", help="write <results>/coverage.md")
    ap.add_argument("--commands", action="store_true",
                    help="print only the commands that restore the cells not backed, cheapest first (a shell script)")
    ap.add_argument("--to-target", action="store_true",
                    help="with --commands: the commands that bring every Table 2/3 cell to 10 seeds instead "
                         "(once every committed cell is backed)")
    ap.add_argument("--picks", type=Path, nargs="?", const=results.DEFAULT_STORE, metavar="STORE",
                    help="print the commands that bring every grid searched in full in STORE (default: the "
                         "project's store) to 10 seeds at its pick, as Tables 2/3 report it (§)")
    ap.add_argument("--commit", action="store_true",
                    help="write <results>/coverage.md and git-commit it with the records (those paths only)")
    args = ap.parse_args(argv)
    if args.commit:
        try:
            msg = commit(args.records, args.results)
        except RuntimeError as exc:  # records busy, or git refused: one line, nothing committed
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"committed: {msg}" if msg else "nothing to commit: the records and coverage.md are as committed")
        return 0
    if args.picks is not None:
        print("\n".join(pick_commands(tables.Inputs.from_frame(results.load(args.picks)))))
        return 0
    if args.to_target and not args.commands:
        ap.error("--to-target goes with --commands (python -m analysis.coverage --commands --to-target)")
    if args.commands:
        df = coverage(tables_from_records(args.records), args.results)
        try:
            print("\n".join(target_commands(df) if args.to_target else restore_commands(df)))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.write:  # the totals only; the cells are in the file
        path, md, _ = write(args.records, args.results)
        print("".join(line + "\n" for line in md.splitlines() if line.startswith(("- ", "  "))), end="")
        print(f"wrote {path}")
    else:
        print(markdown(coverage(tables_from_records(args.records), args.results)), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
