"""The results store: one JSON record per finished member, written atomically.

Layout: ``STORE/<benchmark>/<optimizer>/<config_hash>.json``. A record is written to a temporary
file in the same folder and renamed into place (``os.replace`` is atomic on POSIX), so a reader or a
killed writer never leaves a half-written record, and any number of processes (a Hydra multirun, jobs
on a cluster sharing a folder) can write side by side without a lock: two writers of the same
member write the same content under the same name. Why files and not SQLite: nothing to lock or
corrupt, records are diff-able and rsync-able between machines, and the count (thousands) is small.

The key, ``config_hash``, is a hash of the member's resolved config: benchmark (name, layers, loss,
L2, epochs), optimizer name, hyper-parameters, seed, data md5 and ``RESULTS_VERSION`` (bumped when a
change alters numbers, so older records are not silently mixed in).

The store is a working folder and is not in git; a checkout on another machine (or a new session's
clone) does not have it. What is committed is ``results/records/<benchmark>/<optimizer>.jsonl``: the
same records, one JSON line each (curves included), sorted by ``config_hash``. :func:`sync` makes
the store and the records hold the same members (their union); the runner calls it when it starts
and after every chunk, and ``python -m analysis`` when it starts, both only for the project's own
store (a ``store=PATH`` of a test or a cluster job is synced by hand with ``python -m
experiments.results --store PATH``). So a clone restores every committed member into its store
before it trains or analyses, and ``git add results/records`` is all it takes to keep a run.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.data import PROJECT_ROOT

RESULTS_VERSION = 1
DEFAULT_STORE = PROJECT_ROOT / "store"
DEFAULT_RECORDS = PROJECT_ROOT / "results" / "records"

# Columns of load(): documented here, relied on by analysis/.
COLUMNS = {
    "benchmark": "benchmark name as in the paper: M0 M1 M2 C0 C1 CR",
    "optimizer": "rule name: sgd adagrad almeida amari smd vsgd_l vsgd_b vsgd_g vsgd_fd ...",
    "seed": "member seed (init and sample order)",
    "train_error": "final training error: percent (classification) or mean 1/2||x-y||^2 (CR)",
    "test_error": "final test error, same units",
    "train_loss": "final mean data loss on the training set (no L2 term)",
    "test_loss": "final mean data loss on the test set",
    "diverged": "True when the member's parameters became non-finite (errors then 100 / inf)",
    "diverged_step": "the divergence check that found it (every 1000 steps), else NaN",
    "seconds": "wall time of the member's chunk divided by the members in it",
    "device": "cpu / cuda device name",
    "data_md5": "identifier of the source data files (md5 of their md5s)",
    "data_original": "True when the data files have the original md5s",
    "config_hash": "the record's key",
    "epochs": "epochs trained",
    "experiment": "experiment name that produced the record (informational, not in the key)",
    "hp_<name>": "one column per hyper-parameter, in config units (gamma per 1/#train)",
    "curve": "list of checkpoint dicts (step, epoch, train/test error and loss on subsets, rate min/median/max)",
}


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and an atomic rename, so a
    reader, or a writer killed half-way, never sees a half-written file (the store's records, its stamp,
    its failures, the committed records files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # readable like the rest of the checkout (mkstemp makes it 0600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class StoreVersionError(RuntimeError):
    """The store was written by a results version this code does not write."""


def check_store(store: Path) -> None:
    """Stamp a new store with RESULTS_VERSION; refuse one written by another version.

    A store mixing versions would silently mix numbers computed by different code, so instead of
    guessing, the run stops and says how to go on.
    """
    store = Path(store)
    stamp = store / "RESULTS_VERSION"
    if stamp.is_file():
        found = stamp.read_text().strip()
        if found != str(RESULTS_VERSION):
            raise StoreVersionError(
                f"The results store {store} was written by results version {found}; this code writes version "
                f"{RESULTS_VERSION}, whose numbers may differ. Use a new store (store=PATH), or move the old one aside."
            )
        return
    write_atomic(stamp, f"{RESULTS_VERSION}\n")


def failure_path(store: Path, benchmark: str, optimizer: str, chash: str) -> Path:
    return Path(store) / "failed" / benchmark / optimizer / f"{chash}.json"


def write_failure(store: Path, benchmark: str, optimizer: str, chash: str, info: Mapping[str, Any]) -> Path:
    """Record that a member's chunk failed (out of memory, say); a rerun skips it unless asked to retry."""
    return write_atomic(failure_path(store, benchmark, optimizer, chash), json.dumps(dict(info), default=str))


def config_hash(key: Mapping[str, Any]) -> str:
    blob = json.dumps({**key, "results_version": RESULTS_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def record_path(store: Path, benchmark: str, optimizer: str, chash: str) -> Path:
    return Path(store) / benchmark / optimizer / f"{chash}.json"


def write_record(store: Path, record: Mapping[str, Any]) -> Path:
    """Write one record atomically (temp file + rename)."""
    path = record_path(store, record["benchmark"], record["optimizer"], record["config_hash"])
    return write_atomic(path, json.dumps(record, default=_jsonable))


def _jsonable(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x)}")


def exists(store: Path, benchmark: str, optimizer: str, chash: str) -> bool:
    return record_path(store, benchmark, optimizer, chash).is_file()


def iter_records(store: Path | str | None = None) -> Iterable[dict[str, Any]]:
    store = Path(store) if store else DEFAULT_STORE
    for path in sorted(p for p in store.glob("*/*/*.json") if p.parts[-3] != "failed"):
        if path.name.startswith(".tmp-"):
            continue  # a write that was interrupted before its rename: not a record
        try:
            with open(path) as f:
                yield json.load(f)
        except (OSError, json.JSONDecodeError):
            continue  # a foreign or damaged file is skipped, never fatal for the analysis


def load(store: Path | str | None = None, *, with_curves: bool = False) -> pd.DataFrame:
    """One row per finished member; columns in :data:`COLUMNS` (``curve`` only with ``with_curves``)."""
    rows = []
    for rec in iter_records(store):
        row = {k: v for k, v in rec.items() if k not in ("hp", "curve") or (k == "curve" and with_curves)}
        for name, value in rec.get("hp", {}).items():
            row[f"hp_{name}"] = value
        rows.append(row)
    base = [c for c in COLUMNS if c not in ("hp_<name>", "curve")]
    if not rows:
        return pd.DataFrame(columns=base)
    df = pd.DataFrame(rows)
    for c in base:
        if c not in df:
            df[c] = pd.NA
    return df


# -- the committed copy: results/records/<benchmark>/<optimizer>.jsonl -----------------------------
def records_for(store: Path | str, records: Path | str | None = "auto") -> Path | None:
    """The records folder a store is synced with: ``"auto"`` is results/records for the project's own
    store and none for any other (a test's, a cluster job's); None (or "null") is none; a path is itself."""
    if records in (None, False, "none", "null"):
        return None
    if records == "auto":
        return DEFAULT_RECORDS if Path(store) == DEFAULT_STORE else None
    return Path(records).expanduser()


def records_file(records: Path, benchmark: str, optimizer: str) -> Path:
    return Path(records) / benchmark / f"{optimizer}.jsonl"


def _read_lines(path: Path) -> dict[str, str]:
    """config_hash -> JSON line of a records file; damaged lines are skipped (the store may still have them)."""
    out: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                out[json.loads(line)["config_hash"]] = line
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return out


def sync(store: Path | str, records: Path | str, *, only: tuple[str, str] | None = None) -> tuple[int, int]:
    """Give the store and the committed records the same members (their union); return (added to the
    records, restored into the store). ``only=(benchmark, optimizer)`` limits it to one pair (the runner,
    after each chunk). Both folders carry a RESULTS_VERSION stamp; a mismatch raises StoreVersionError.

    A records file is rewritten whole (sorted, atomic rename), so two processes syncing the same pair at
    once can drop each other's additions from the file, never from their stores: the next sync adds them.
    """
    store, records = Path(store), Path(records)
    check_store(store)
    check_store(records)
    if only is not None:
        pairs = {only}
    else:
        pairs = {(p.parts[-2], p.parts[-1]) for p in store.glob("*/*") if p.is_dir() and p.parts[-2] != "failed"}
        pairs |= {(p.parent.name, p.stem) for p in records.glob("*/*.jsonl")}
    added = restored = 0
    for bench, opt in sorted(pairs):
        path = records_file(records, bench, opt)
        lines = _read_lines(path)
        in_store = {p.stem: p for p in (store / bench / opt).glob("*.json") if not p.name.startswith(".tmp-")}
        for chash, line in lines.items():
            if chash not in in_store:
                write_record(store, json.loads(line))
                restored += 1
        new = {}
        for chash, p in in_store.items():
            if chash in lines:
                continue
            try:
                new[chash] = json.dumps(json.loads(p.read_text()), sort_keys=True, separators=(",", ":"))
            except (OSError, json.JSONDecodeError):
                continue  # a damaged store file is not archived
        if new:
            lines.update(new)
            added += len(new)
            write_atomic(path, "".join(lines[h] + "\n" for h in sorted(lines)))
    return added, restored


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m experiments.results", description=sync.__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=DEFAULT_STORE, help="results store (default: <project>/store)")
    ap.add_argument("--records", type=Path, default=DEFAULT_RECORDS, help="default: <project>/results/records")
    args = ap.parse_args(argv)
    try:
        added, restored = sync(args.store, args.records)
    except StoreVersionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{added} members added to {args.records}, {restored} restored into {args.store}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
