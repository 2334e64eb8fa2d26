"""Concurrent writers of one store and one records folder lose no line: syncs from several processes (a
records file is read and rewritten under an fcntl lock) and two runners on one job; Hydra's launchers:
tests/test_launchers.py. Real processes throughout."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from experiments import results

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "results" / "records"
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled"}
RUN = ["benchmark=m0", "optimizer=sgd", "tuned=table1", "epochs=0.003", "chunk_size=1", "progress=false",
       "compile=false"]


WRITER = """
import json, sys, time
from pathlib import Path
from experiments import results
store, records, first, n, start = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
while time.time() < start:
    time.sleep(0.005)
for seed in range(first, first + n):
    rec = {"benchmark": "M0", "optimizer": "sgd", "seed": seed, "config_hash": f"member-{seed:04d}",
           "train_error": 1.0, "test_error": 2.0, "curve": [{"step": k, "test_error": 3.0} for k in range(100)]}
    results.write_record(store, rec)
    results.sync(store, records, only=("M0", "sgd"))
"""


def record_files(store: Path) -> list[Path]:
    """The store's record files, found without the code under test (so the test runs on older code too)."""
    return sorted(p for p in Path(store).glob("*/*/*.json") if p.parts[-3] != "damaged" and not p.name.startswith("."))


def test_concurrent_syncs_of_one_records_folder_lose_no_line(tmp_path):
    """Four processes, each with its own store (as jobs on several machines, or a runner and an analysis),
    add members one at a time to one records file. Without a lock their rewrites drop each other's lines."""
    records = tmp_path / "records"
    (records / "M0").mkdir(parents=True)
    shutil.copy(COMMITTED / "M0" / "sgd.jsonl", records / "M0" / "sgd.jsonl")  # a file worth reading
    committed = len((records / "M0" / "sgd.jsonl").read_text().splitlines())
    start, n, procs = time.time() + 4, 25, []
    for i in range(4):
        procs.append(subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / f"store{i}"), str(records),
                                       str(i * n), str(n), str(start)], cwd=ROOT, env=ENV))
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    lines = (records / "M0" / "sgd.jsonl").read_text().splitlines()
    assert len(lines) == committed + 4 * n  # every process's every member
    assert len({line[:200] for line in lines}) == len(lines)


def members(store: Path, records: Path) -> tuple[list[str], list[str]]:
    """The config hashes in the store and in the records (repeats included)."""
    lines = [line for p in sorted(records.glob("*/*.jsonl")) for line in p.read_text().splitlines()]
    return (sorted(p.stem for p in record_files(store)),
            sorted(json.loads(line)["config_hash"] for line in lines))


PROBER = """
import sys, time
from pathlib import Path
from experiments.run import check_store_writable
store, start = Path(sys.argv[1]), float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
for _ in range(3000):
    check_store_writable(store)
"""


def test_runners_starting_together_both_find_the_store_writable(tmp_path):
    """Each runner proves the store writable before it trains; several doing so at once must all pass (a shared
    probe file once made one of two runners started together stop with "not writable")."""
    start = time.time() + 3
    procs = [subprocess.Popen([sys.executable, "-c", PROBER, str(tmp_path / "store"), str(start)], cwd=ROOT, env=ENV,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outcomes = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert [rc for rc, _ in outcomes] == [0, 0, 0], [err[-400:] for _, err in outcomes]
    assert [p.name for p in (tmp_path / "store").iterdir()] == ["RESULTS_VERSION"]  # no probe left behind


def test_two_runners_on_one_job_write_each_member_once(tmp_path):
    """Both train every member (neither sees the other's yet); the store keeps the first record of each, and
    the records hold the same one."""
    store, records = tmp_path / "store", tmp_path / "records"
    cmd = [sys.executable, "-m", "experiments.run", *RUN, "seeds=3", f"store={store}", f"records={records}"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL) for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    in_store, in_records = members(store, records)
    assert len(in_store) == 3 and in_store == in_records
    lines = {json.loads(line)["config_hash"]: json.loads(line) for line in
             (records / "M0" / "sgd.jsonl").read_text().splitlines()}
    for p in record_files(store):  # the record that stayed is the one the records hold (wall time included)
        assert json.loads(p.read_text()) == lines[p.stem]
    assert results.verify(store, records)[0] == []
