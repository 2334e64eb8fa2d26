"""The results store: one JSON record per finished member, written atomically.

Layout: ``STORE/<benchmark>/<optimizer>/<config_hash>.json``. A record is written to a temporary
file in the same folder and linked into place (``os.link``: atomic and exclusive on POSIX), so a reader or a
killed writer never leaves a half-written record, and any number of processes (a Hydra multirun, jobs
on a cluster sharing a folder) can write side by side without a lock: of two writers of the same
member the first record stays. Why files and not SQLite: nothing to lock or
corrupt, records are diff-able and rsync-able between machines, and the count (thousands) is small.

A record counts as done only if it parses, has the required fields, sits under its own name and its
``config_hash`` is its content's (:func:`problem_of`); a damaged one is reported once with its path (and
line), moved aside to ``damaged/`` (never deleted), and its member trained again. ``python -m
experiments.results --verify`` checks every file and line and that the store and the records agree.

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

import fcntl
import functools
import hashlib
import itertools
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # as experiments.data has it, without importing torch

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
    its failures, the committed records files). A write that fails (a full disk: ``OSError(ENOSPC)``)
    leaves no temporary file behind and raises."""
    _publish(Path(path), text, replace=True)
    return Path(path)


def write_new(path: Path, text: str) -> bool:
    """Like :func:`write_atomic`, but a file already at ``path`` is kept (a hard link instead of a rename:
    atomic and exclusive), so of two writers of one record the first wins and a finished record is never
    rewritten. Returns whether ``text`` was written."""
    return _publish(Path(path), text, replace=False)


def _publish(path: Path, text: str, *, replace: bool) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # readable like the rest of the checkout (mkstemp makes it 0600)
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links: a rename, exclusive only up to this check
            if path.exists():
                return False
            os.replace(tmp, path)
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)


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


def member_key(benchmark: str, network: Mapping[str, Any], *, epochs: float, optimizer: str, hp: Mapping[str, Any],
               seed: int, data_md5: str, dtype: str) -> dict[str, Any]:
    """What ``config_hash`` covers: the benchmark and its ``network`` (layers, loss, l2, l2_biases), the
    epochs, the rule and its hyper-parameters, the seed, the data and the dtype."""
    return {"benchmark": benchmark, **network, "epochs": epochs, "optimizer": optimizer, "hp": dict(hp), "seed": seed,
            "data_md5": data_md5, "dtype": dtype}


def network_of(bench: Mapping[str, Any]) -> dict[str, Any]:
    """The network fields of ``member_key`` from a ``conf/benchmark/<name>.yaml`` config."""
    return {"layers": list(bench["layers"]), "loss": bench["loss"], "l2": float(bench["l2"]),
            "l2_biases": bool(bench.get("l2_biases", False))}


def record_path(store: Path, benchmark: str, optimizer: str, chash: str) -> Path:
    return Path(store) / benchmark / optimizer / f"{chash}.json"


def write_record(store: Path, record: Mapping[str, Any], *, replace: bool = True) -> Path:
    """Write one record atomically (temp file + rename); ``replace=False`` keeps a record already there."""
    path = record_path(store, record["benchmark"], record["optimizer"], record["config_hash"])
    text = json.dumps(record, default=_jsonable)
    if replace:
        return write_atomic(path, text)
    write_new(path, text)
    return path


def _jsonable(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x)}")


# -- what counts as a record: it parses, has the fields, and its config_hash is its content's -------------
REQUIRED = ("benchmark", "optimizer", "seed", "config_hash", "train_error", "test_error")
KEY_FIELDS = ("hp", "epochs", "data_md5", "dtype")  # with the benchmark's network: what config_hash covers
NOT_BENCHMARKS = frozenset({"failed", "damaged", "synthetic", "partial", "workloads"})  # store folders that hold no records (workloads: Table 4's family, its own store)
_MD5 = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Damage:
    """A record that cannot be used: ``where`` is a path (a store file) or ``path:line`` (a records line)."""

    where: str
    why: str


@functools.cache
def benchmark_network(benchmark: str) -> dict[str, Any] | None:
    """``network_of`` the benchmark's config in conf/benchmark/ (None when there is none); not to be changed."""
    path = PROJECT_ROOT / "conf" / "benchmark" / f"{benchmark.lower()}.yaml"
    if not path.is_file():
        return None
    from omegaconf import OmegaConf

    return network_of(OmegaConf.to_container(OmegaConf.load(path), resolve=True))


def content_hash(rec: Mapping[str, Any], network: Mapping[str, Any] | None = None) -> str | None:
    """The config_hash of a record's own fields, with the benchmark's ``network`` (by default from
    conf/benchmark/), or None where it cannot be computed: a record without the key fields, one of made-up
    data (tests' fixtures: their data_md5 is no md5), or of a benchmark without a config."""
    if any(k not in rec for k in KEY_FIELDS) or not isinstance(rec["hp"], dict):
        return None
    if network is None:
        if not (isinstance(rec["data_md5"], str) and _MD5.fullmatch(rec["data_md5"])):
            return None
        network = benchmark_network(str(rec["benchmark"]))
        if network is None:
            return None
    return config_hash(member_key(rec["benchmark"], network, epochs=rec["epochs"], optimizer=rec["optimizer"],
                                  hp=rec["hp"], seed=rec["seed"], data_md5=rec["data_md5"], dtype=rec["dtype"]))


def problem_of(rec: Any, *, name: str | None = None, pair: tuple[str, str] | None = None,
               network: Mapping[str, Any] | None = None) -> str | None:
    """Why a parsed record cannot be used, or None. ``name``: its file's config_hash; ``pair``: the
    (benchmark, optimizer) it is filed under; ``network``: the runner's, which makes the key fields required."""
    if not isinstance(rec, dict):
        return f"not a JSON object but a {type(rec).__name__}"
    missing = [k for k in (*REQUIRED, *(KEY_FIELDS if network is not None else ())) if k not in rec]
    if missing:
        return f"no {', '.join(missing)}"
    if name is not None and rec["config_hash"] != name:
        return f"its config_hash {rec['config_hash']!r} is not its file's name"
    if pair is not None and (rec["benchmark"], rec["optimizer"]) != pair:
        return f"a record of {rec['benchmark']} {rec['optimizer']} filed under {pair[0]} {pair[1]}"
    want = content_hash(rec, network)
    if want is not None and want != rec["config_hash"]:
        return (f"its config_hash {rec['config_hash']} is not its content's ({want}): a key field (seed, hp, "
                "epochs, ...) was changed")
    return None


def read_record(path: Path, network: Mapping[str, Any] | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """A store file's record and why it cannot be used (None when it can)."""
    path = Path(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"
    try:
        rec = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg}: character {exc.pos} of {len(text)}; cut short?)"
    return rec, problem_of(rec, name=path.stem, pair=(path.parent.parent.name, path.parent.name), network=network)


_REPORTED: set[tuple[str, bool]] = set()  # (where, left in place)
_ASIDE = itertools.count()


def report(damage: Damage, moved_to: Path | None, damaged: list[Damage] | None = None) -> None:
    """Say on stderr that a record is damaged and where it went (once per process: once when it is left
    out, once when it is moved aside); collect it in ``damaged``."""
    if damaged is not None:
        damaged.append(damage)
    if (damage.where, moved_to is None) in _REPORTED:
        return
    _REPORTED.add((damage.where, moved_to is None))
    fate = (f"moved to {moved_to}; its member is trained again by the next run of its job unless a copy is restored"
            if moved_to is not None else "left out (the next run of its job moves it aside and trains it again)")
    print(f"warning: damaged record {damage.where}: {damage.why}; {fate}.", file=sys.stderr, flush=True)


def aside_path(root: Path, path: Path) -> Path:
    """Where a damaged file (or a records file's damaged lines) under ``root`` is kept: ``root/damaged/``,
    the same relative path, a time stamp, the process and a counter (never overwritten, never deleted)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    rel = Path(path).relative_to(root)
    return root / "damaged" / rel.parent / f"{rel.name}.{stamp}-{os.getpid()}-{next(_ASIDE)}"


def set_aside(root: Path, path: Path, why: str, damaged: list[Damage] | None = None) -> Path | None:
    """Move a damaged file out of the way (``aside_path``) and report it; None when another process did."""
    dest = aside_path(root, path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(path, dest)
    except FileNotFoundError:
        return None
    report(Damage(str(path), why), dest, damaged)
    return dest


def finished(store: Path, benchmark: str, optimizer: str, chash: str, network: Mapping[str, Any] | None = None,
             damaged: list[Damage] | None = None) -> bool:
    """Whether the store holds a sound record of the member: it parses, has the fields, and its config_hash
    is its name and its content's (with the job's ``network``). A damaged one is moved aside and reported,
    and the member counts as not finished."""
    path = record_path(store, benchmark, optimizer, chash)
    if not os.path.lexists(path):
        return False
    _, problem = read_record(path, network)
    if problem is None:
        return True
    set_aside(Path(store), path, problem, damaged)
    return False


def store_files(store: Path | str) -> list[Path]:
    """The record files of a store, ``<benchmark>/<optimizer>/<config_hash>.json`` (no temporary files)."""
    return sorted(p for p in Path(store).glob("*/*/*.json")
                  if p.parts[-3] not in NOT_BENCHMARKS and not p.name.startswith(".tmp-"))


def iter_records(store: Path | str | None = None, damaged: list[Damage] | None = None) -> Iterable[dict[str, Any]]:
    """The store's sound records; a damaged one is reported (stderr, and in ``damaged``) and left out."""
    for path in store_files(Path(store) if store else DEFAULT_STORE):
        rec, problem = read_record(path)
        if problem is not None:
            report(Damage(str(path), problem), None, damaged)
            continue
        yield rec


def load(store: Path | str | None = None, *, with_curves: bool = False,
         damaged: list[Damage] | None = None) -> pd.DataFrame:
    """One row per finished member; columns in :data:`COLUMNS` (``curve`` only with ``with_curves``).
    Records that cannot be read are reported on stderr and appended to ``damaged``."""
    rows = []
    for rec in iter_records(store, damaged):
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


@dataclass
class Lines:
    """A records file read and checked: its sound lines by config_hash (line number, text), its damaged
    lines (line number, text, why), and why the whole file could not be read (None when it could)."""

    good: dict[str, tuple[int, str]]
    bad: list[tuple[int, str, str]]
    unreadable: str | None = None


def read_lines(path: Path, pair: tuple[str, str]) -> Lines:
    out = Lines({}, [])
    if not os.path.lexists(path):
        return out
    try:
        text = Path(path).read_bytes().decode()
    except (OSError, UnicodeDecodeError) as exc:
        out.unreadable = f"unreadable ({getattr(exc, 'strerror', None) or exc})"
        return out
    if text and not text.endswith("\n"):
        text += "\n"  # a last line cut short is checked like any other
    for n, line in enumerate(text.splitlines(), 1):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            out.bad.append((n, line, f"not valid JSON ({exc.msg}: character {exc.pos} of {len(line)}; cut short?)"))
            continue
        problem = problem_of(rec, pair=pair)
        if problem is None and rec["config_hash"] in out.good:
            first, same = out.good[rec["config_hash"]]
            if same == line:
                continue  # the same line twice loses nothing when one goes
            problem = f"a second, different record of {rec['config_hash']} (the first is line {first})"
        if problem is not None:
            out.bad.append((n, line, problem))
        else:
            out.good[rec["config_hash"]] = (n, line)
    return out


@contextmanager
def locked(path: Path):
    """An exclusive lock (fcntl.flock on ``.tmp-<name>.lock`` beside ``path``) held while a records file is
    read and rewritten: concurrent syncs of one pair (two runners, a multirun, two analyses) take turns, so
    none drops another's lines. The kernel releases it when a process dies, kill -9 included."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".tmp-{path.name}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class DamagedLineError(ValueError):
    """A line of a JSON-lines file that is not a whole record (a run cut off mid-write leaves one)."""


def _json_lines(path: Path, key: Callable[[dict], Hashable]):
    """(line number, line, its key or the reason it has none) for each non-empty line of ``path``."""
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                yield n, line, key(json.loads(line)), None
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                yield n, line, None, f"{type(exc).__name__}: {exc}"


def _keyed_lines(path: Path, key: Callable[[dict], Hashable]) -> dict[Hashable, str]:
    """The lines of ``path`` by ``key`` (the first of repeats kept); a damaged line raises DamagedLineError."""
    out: dict[Hashable, str] = {}
    for n, line, k, why in (_json_lines(path, key) if path.is_file() else ()):
        if why is not None:
            raise DamagedLineError(
                f"{path}, line {n}, is not a whole record ({why}); nothing was changed. Delete that line (a run "
                "stopped mid-write leaves a partial last line) and run again: the run trains only what no file holds.")
        out.setdefault(k, line)
    return out


def sync_lines(store_file: Path | str, records_file: Path | str, key: Callable[[dict], Hashable]) -> tuple[int, int]:
    """Give a store's JSON-lines file of runs outside the per-member layout (Supp. Fig. 9's XOR runs,
    ``<store>/synthetic/``) and its committed copy (``<records>/synthetic/``) the same runs, their union by
    ``key``; return (added to the records, restored into the store). Each file keeps its order and gets the
    other's new lines at its end, written atomically under the records file's lock (``locked``); a damaged
    line in either stops it before anything is written (DamagedLineError, naming the line)."""
    store_file, records_file = Path(store_file), Path(records_file)
    with locked(records_file):
        in_store, in_records = _keyed_lines(store_file, key), _keyed_lines(records_file, key)
        to_records = [line for k, line in in_store.items() if k not in in_records]
        to_store = [line for k, line in in_records.items() if k not in in_store]
        for path, have, new in ((records_file, in_records, to_records), (store_file, in_store, to_store)):
            if new:
                write_atomic(path, "".join(line + "\n" for line in [*have.values(), *new]))
    return len(to_records), len(to_store)


def sync(store: Path | str, records: Path | str, *, only: tuple[str, str] | None = None,
         damaged: list[Damage] | None = None) -> tuple[int, int]:
    """Give the store and the committed records the same members (their union); return (added to the
    records, restored into the store). ``only=(benchmark, optimizer)`` limits it to one pair (the runner,
    after each chunk). Both folders carry a RESULTS_VERSION stamp; a mismatch raises StoreVersionError.

    A records file is read and rewritten whole (sorted, atomic rename) under a lock (``locked``), so
    concurrent syncs lose no line. Damaged store files and records lines are moved aside to ``damaged/``
    in their folder, reported once and appended to ``damaged``; a sound copy on the other side replaces them.
    """
    store, records = Path(store), Path(records)
    check_store(store)
    check_store(records)
    if only is not None:
        pairs = {only}
    else:
        pairs = {(p.parts[-2], p.parts[-1]) for p in store.glob("*/*")
                 if p.is_dir() and p.parts[-2] not in NOT_BENCHMARKS}
        pairs |= {(p.parent.name, p.stem) for p in records.glob("*/*.jsonl") if p.parent.name not in NOT_BENCHMARKS}
    added = restored = 0
    for bench, opt in sorted(pairs):
        path = records_file(records, bench, opt)
        with locked(path):
            a, r = _sync_pair(store, records, (bench, opt), damaged)
        added, restored = added + a, restored + r
    return added, restored


def _sync_pair(store: Path, records: Path, pair: tuple[str, str], damaged: list[Damage] | None) -> tuple[int, int]:
    path = records_file(records, *pair)
    lines = read_lines(path, pair)
    if lines.unreadable is not None:
        set_aside(records, path, lines.unreadable, damaged)
    elif lines.bad:
        dest = aside_path(records, path)
        write_atomic(dest, "".join(line + "\n" for _, line, _ in lines.bad))
        for n, _, why in lines.bad:
            report(Damage(f"{path}:{n}", why), dest, damaged)
    in_store = {}
    for p in sorted((store / pair[0] / pair[1]).glob("*.json")):
        if p.name.startswith(".tmp-"):
            continue
        rec, problem = read_record(p)
        if problem is not None:
            set_aside(store, p, problem, damaged)
        else:
            in_store[p.stem] = rec
    restored = 0
    for chash, (_, line) in lines.good.items():
        if chash not in in_store:
            write_record(store, json.loads(line), replace=False)
            restored += 1
    new = {h: json.dumps(rec, sort_keys=True, separators=(",", ":")) for h, rec in in_store.items()
           if h not in lines.good}
    if new or lines.bad or lines.unreadable is not None:
        union = {h: line for h, (_, line) in lines.good.items()} | new
        write_atomic(path, "".join(union[h] + "\n" for h in sorted(union)))
    return len(new), restored


# -- checking: python -m experiments.results --verify ---------------------------------------------------
def verify(store: Path | None, records: Path | None) -> tuple[list[str], dict[str, int]]:
    """Check every store file and records line, and that the store and the records hold the same members
    with the same content; read only. Returns (one line per problem, what was checked)."""
    problems: list[str] = []
    counts = {"records files": 0, "lines": 0, "store files": 0}
    canon = {}  # folder -> {config_hash: (where, canonical JSON)}
    for folder in (f for f in (records, store) if f is not None):
        stamp = folder / "RESULTS_VERSION"
        if not folder.is_dir():
            problems.append(f"{folder}: no such folder")
        elif stamp.is_file() and stamp.read_text().strip() != str(RESULTS_VERSION):
            problems.append(f"{stamp}: results version {stamp.read_text().strip()}, this code writes {RESULTS_VERSION}")
    if records is not None and records.is_dir():
        members = canon[records] = {}
        for path in sorted(p for p in records.glob("*/*.jsonl") if p.parent.name not in NOT_BENCHMARKS):
            counts["records files"] += 1
            lines = read_lines(path, (path.parent.name, path.stem))
            if lines.unreadable is not None:
                problems.append(f"{path}: {lines.unreadable}")
            problems += [f"{path}:{n}: {why}" for n, _, why in lines.bad]
            counts["lines"] += len(lines.good) + len(lines.bad)
            for chash, (n, line) in lines.good.items():
                members[chash] = (f"{path}:{n}", _canonical(json.loads(line)))
        for path in sorted((records / "synthetic").glob("*.jsonl")):  # runs outside the member layout (sync_lines)
            lines = list(_json_lines(path, dict.keys))  # a whole record is a JSON object
            counts["synthetic lines"] = counts.get("synthetic lines", 0) + len(lines)
            problems += [f"{path}:{n}: not a whole JSON record" for n, _, _, why in lines if why is not None]
    if store is not None and store.is_dir():
        members = canon[store] = {}
        for path in store_files(store):
            counts["store files"] += 1
            rec, problem = read_record(path)
            if problem is not None:
                problems.append(f"{path}: {problem}")
            else:
                members[path.stem] = (str(path), _canonical(rec))
    if store in canon and records in canon:
        fix = f"python -m experiments.results --store {store} --records {records} syncs them"
        a, b = canon[store], canon[records]
        problems += [f"{a[h][0]}: not in the records ({fix})" for h in sorted(a.keys() - b.keys())]
        problems += [f"{b[h][0]}: not in the store ({fix})" for h in sorted(b.keys() - a.keys())]
        problems += [f"{b[h][0]}: differs from {a[h][0]}" for h in sorted(a.keys() & b.keys()) if a[h][1] != b[h][1]]
    return problems, counts


def _canonical(rec: Mapping[str, Any]) -> str:
    return json.dumps(rec, sort_keys=True, separators=(",", ":"))


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m experiments.results", description=sync.__doc__.splitlines()[0])
    ap.add_argument("--store", default=str(DEFAULT_STORE), help="results store (default: <project>/store; "
                    "'none' with --verify: the records alone)")
    ap.add_argument("--records", default=str(DEFAULT_RECORDS), help="default: <project>/results/records")
    ap.add_argument("--verify", action="store_true", help="check every store file and records line and that "
                    "the two agree (read only); exit 1 with the list of problems")
    args = ap.parse_args(argv)
    store = None if args.store.lower() in ("none", "null", "") else Path(args.store).expanduser()
    records = None if args.records.lower() in ("none", "null", "") else Path(args.records).expanduser()
    if args.verify:
        problems, counts = verify(store, records)
        checked = ", ".join(f"{n} {what}" for what, n in counts.items())
        if problems:
            print(f"verify: {len(problems)} problems ({checked} checked):", file=sys.stderr)
            for p in problems:
                print(f"  {p}", file=sys.stderr)
            return 1
        print(f"verify: all good ({checked})")
        return 0
    if store is None or records is None:
        ap.error("a sync needs both --store and --records")
    damaged: list[Damage] = []
    try:
        added, restored = sync(store, records, damaged=damaged)
    except StoreVersionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: the sync of {store} and {records} stopped: {exc}. Nothing finished is lost; "
              "fix the cause and run it again.", file=sys.stderr)
        return 1
    print(f"{added} members added to {records}, {restored} restored into {store}"
          + (f"; {len(damaged)} damaged records moved aside (see above)" if damaged else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
