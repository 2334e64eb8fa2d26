"""Every table and figure the results store allows, in one command.

    python -m analysis [--store PATH] [--out results] [--allow-fewer]

Reads the store after syncing it with the committed records (results/records, for the default store).
Writes results/table{1,2,3}.{md,tex,csv}, results/table4.{md,tex,csv} (the workload family, analysis/table4.py), results/fidelity.{md,csv}, results/ranking.csv,
results/wall_time.{md,csv}, results/devices.{md,csv} (cells run on two devices), results/coverage.md (with the committed records) and the figures
(results/figures/*.png|pdf), then draws the figures of the other analysis modules when they exist
(``analysis.quadratic_figures``, ``analysis.heatmaps``: their ``draw_all(store, out)`` or ``main(store, out)``;
the contract is in docs/analysis.md). Anything whose data is absent is skipped with a note.
Records that cannot be read are counted and named. Over committed tables (results/) that hold more members
than the store, nothing from the records is written unless ``--allow-fewer``.
Exit status 1 when some part failed (the others are still written).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import subprocess
import sys
import time
from pathlib import Path

from analysis import coverage, devices, fidelity, figures, table4, tables, wall_time
from analysis.common import PROJECT_ROOT, log

# modules of other issues: draw_all(store, out) or main(store, out) -> list[Path] | None (see call_external)
EXTERNAL = ("analysis.quadratic_figures", "analysis.heatmaps", "analysis.paper2_figs", "analysis.unit_suite_figures",
            "analysis.c_sensitivity", "analysis.supp_fig3")


def call_external(mod, store: Path, out: Path) -> list[Path] | None:
    """Draw another module's figures: ``draw_all(store, out)`` or ``main(store, out)``; a command-line
    ``main(argv)`` is called as ``main(["--store", store, "--out", out])`` (docs/analysis.md)."""
    if callable(getattr(mod, "draw_all", None)):
        return mod.draw_all(store, out)
    main = getattr(mod, "main", None)
    if not callable(main):
        raise TypeError(f"{mod.__name__} has neither draw_all(store, out) nor main(store, out)")
    n_params = len(inspect.signature(main).parameters)
    if n_params >= 2:
        return main(store, out)
    if n_params == 1:
        before = {p: p.stat().st_mtime_ns for p in Path(out).glob("*.png")}
        main(["--store", str(store), "--out", str(out)])
        # a CLI main returns nothing: report the figures it wrote (not those other modules wrote before it)
        return sorted(p for p in Path(out).glob("*.png") if before.get(p) != p.stat().st_mtime_ns)
    raise TypeError(f"{mod.__name__}.main takes no arguments: give it draw_all(store, out) (docs/analysis.md)")


def committed(out: Path) -> bool:
    """Whether the tables in ``out`` are committed ones: tracked by git (results/, not a scratch folder or the
    git-ignored results/quick), or, outside a git checkout, the project's results/."""
    try:
        tracked = subprocess.run(["git", "-C", str(out), "ls-files", "--error-unmatch", "table1.csv", "table2.csv"],
                                 capture_output=True, timeout=60, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        tracked = False
    return tracked or Path(out).resolve() == (PROJECT_ROOT / "results").resolve()


def run(store: Path | None, out: Path, *, allow_fewer: bool = False) -> tuple[list[Path], list[str]]:
    """Write everything; return (files written, names of parts that failed). Over committed tables (see
    ``committed``) that hold more members than the store, the tables and figures are not written unless
    ``allow_fewer``; a part named "tables" fails instead."""
    from experiments import results

    store = Path(store) if store else results.DEFAULT_STORE
    out = Path(out)
    written: list[Path] = []
    failed: list[str] = []
    damaged: list[results.Damage] = []
    t0 = time.perf_counter()
    records = results.records_for(store)  # a fresh clone: restore the committed records (experiments/results.py)
    if records is not None:
        try:
            added, restored = results.sync(store, records, damaged=damaged)
            log.info("records: %d members restored from %s, %d added to it", restored, records, added)
        except results.StoreVersionError as exc:  # analyse the store as it is; say why the records were left out
            log.error("records not synced: %s", exc)
            failed.append("records")
            records = None  # and no coverage report against them
    if not store.is_dir():
        log.warning("no results store at %s: only figures from other modules (if any) can be drawn", store)
    df = (results.load(store, with_curves=True, damaged=damaged) if store.is_dir()
          else results.load(store / "-none-"))
    log.info("read %d records from %s in %.1fs", len(df), store, time.perf_counter() - t0)
    if damaged:  # each was reported where it was found; the count and places, once more, beside the tables
        log.warning("%d records could not be read and are not in the tables: %s", len(damaged),
                    "; ".join(f"{d.where} ({d.why})" for d in damaged))
    inp = tables.Inputs.from_frame(df)

    try:
        t1 = tables.table1(inp)
        if len(t1) and "seconds" in inp.df:  # a grid not searched in full says what searching it would cost
            t1 = wall_time.with_cost_left(inp, t1)
        tabs = {n: tables.table23(inp, split, t1) for n, split in tables.SPLITS.items()} if len(inp.df) else {}
        lost = coverage.lost_cells({1: t1} | tabs if tabs else {}, out)
        cells = ", ".join(f"{b} {m}" for b, m in zip(lost.benchmark[:6], lost.method[:6])) + (
            ", ..." if len(lost) > 6 else "")
        if len(lost) and not allow_fewer and committed(out):
            log.error("not written: the store holds fewer members than the committed tables in %s for %d cells "
                      "(%s), and tables from fewer members would replace them. `./reproduce.sh restore` re-runs "
                      "them (results/coverage.md); --allow-fewer writes them anyway.", out, len(lost), cells)
            failed.append("tables")
            return written, failed
        if len(lost):  # e.g. a fresh clone whose records do not back every committed cell yet
            log.warning("the store holds fewer members than the tables in %s for %d cells (%s); the tables "
                        "written now lack them. `./reproduce.sh restore` re-runs them (results/coverage.md); "
                        "`git checkout %s` brings committed files back.", out, len(lost), cells, out)
        written += tables.write_all(inp, out, t1, tabs)
        written += fidelity.write_all(tabs, out)
        written += wall_time.write_all(inp, out, t1)
        written += devices.write_all(inp, out, t1)  # cells whose seeds ran on two devices
        if records is not None:  # which of the tables just written the committed records back
            written.append(coverage.write(records, out)[0])
    except Exception:  # noqa: BLE001 - a failing part must not cost the others; reported and exit 1
        log.exception("tables failed")
        failed.append("tables")
    try:
        written += figures.write_all(inp, out / "figures")
    except figures.FigureError as exc:
        log.error("%s", exc)
        written += exc.written
        failed.append("figures")
    try:  # the second family (issue 34 s4): Table 4 and its figures from store/workloads (analysis/table4.py)
        written += table4.write_all(store, out)
    except Exception:  # noqa: BLE001 - a failing part must not cost the others; reported and exit 1
        log.exception("table4 failed")
        failed.append("table4")
    for name in EXTERNAL:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the module exists but one of its imports is missing: a real failure
                log.exception("%s could not be imported", name)
                failed.append(name)
            else:
                log.info("%s is not there: its figures are skipped", name)
            continue
        try:
            more = call_external(mod, store, out / "figures")
            written += [Path(p) for p in (more or [])]
        except FileNotFoundError as exc:  # its data is not in the store: a note, not a failure
            log.info("%s skipped: %s", name, exc)
        except Exception:  # noqa: BLE001 - another issue's module must not stop ours; reported, exit 1
            log.exception("%s.main failed", name)
            failed.append(name)
    return written, failed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis", description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=None, help="results store (default: <project>/store)")
    ap.add_argument("--out", type=Path, default=Path("results"), help="output folder (default: results)")
    ap.add_argument("-q", "--quiet", action="store_true", help="only warnings and the list of outputs")
    ap.add_argument("--allow-fewer", action="store_true", help="write the tables even over committed ones that "
                    "hold more members than the store (a fresh clone whose records lag them, say)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="[analysis] %(message)s")
    written, failed = run(args.store, args.out, allow_fewer=args.allow_fewer)
    tables_ = sorted(p for p in written if p.parent == args.out)
    figs = sorted(p for p in written if p.suffix == ".png")
    n_pdf = sum(p.suffix == ".pdf" for p in written)
    print(f"\nTables and summaries ({len(tables_)} files) in {args.out}/:")
    for p in tables_:
        print(f"  {p}")
    print(f"Figures ({len(figs)} PNG, {n_pdf} PDF beside them) in {args.out / 'figures'}/:")
    for p in figs:
        print(f"  {p}")
    if failed:
        print(f"FAILED: {', '.join(failed)} (see the messages above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
