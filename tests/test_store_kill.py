"""Kill -9 at random points of a run and of a sync, with real processes and real files: afterwards every member is in the store and the records exactly once, finished
records untouched, and ``experiments.results.verify`` finds nothing wrong. Bounded: a fixed number of
kills within a time budget, random points from a seeded generator."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from experiments import results

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "results" / "records"
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def record_files(store: Path) -> list[Path]:
    """The store's record files, found without the code under test (so the test runs on older code too)."""
    return sorted(p for p in Path(store).glob("*/*/*.json") if p.parts[-3] != "damaged" and not p.name.startswith("."))


def kill_at(cmd: list[str], seconds: float) -> int | None:
    """Start ``cmd``, SIGKILL it after ``seconds`` (unless it ended); its exit status, or None when killed."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return None


def duration(cmd: list[str]) -> float:
    """Wall time of one uninterrupted ``cmd``: kill points are drawn as fractions of it, so that they fall
    inside the run on a fast machine and a slow one alike."""
    t0 = time.time()
    subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, timeout=300, check=True)
    return time.time() - t0


def snapshot(store: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in record_files(store)}


def test_kill_9_at_random_points_of_a_run(tmp_path):
    store, records = tmp_path / "store", tmp_path / "records"
    cmd = [sys.executable, "-m", "experiments.run", "benchmark=m0", "optimizer=sgd", "grid=sgd",
           "grid.eta0=[0.01,0.03,0.1]", "grid.gamma=[0]", "seeds=3", "epochs=0.003", "chunk_size=1", "progress=false",
           "compile=false", f"store={store}", f"records={records}"]
    probe = [*cmd[:-2], f"store={tmp_path / 'probe'}", f"records={tmp_path / 'probe_records'}"]
    full = duration(probe)
    rng = random.Random(36)
    seen: dict[str, str] = {}
    kills, deadline = 0, time.time() + max(15, 5 * full)
    while kills < 4 and time.time() < deadline:
        if kill_at(cmd, rng.uniform(0.3, 0.8) * full) is None:
            kills += 1
        now = snapshot(store)
        assert all(now[name] == text for name, text in seen.items())  # finished records untouched
        seen = now
    assert kills >= 2
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    final = snapshot(store)
    assert len(final) == 9 and all(final[name] == text for name, text in seen.items())
    lines = (records / "M0" / "sgd.jsonl").read_text().splitlines()
    assert len(lines) == 9  # each member once
    assert results.verify(store, records)[0] == []
    assert not (store / "damaged").exists() and not (records / "damaged").exists()  # nothing was ever torn


def test_kill_9_at_random_points_of_a_sync(tmp_path):
    """Both ways at once: the store restores M0 from the records, the records add M1 from the store."""
    store, records, m1 = tmp_path / "store", tmp_path / "records", tmp_path / "m1"
    shutil.copytree(COMMITTED / "M0", records / "M0")
    shutil.copytree(COMMITTED / "M1", m1 / "M1")
    results.sync(store, m1)  # a store with M1's members, whose records are elsewhere
    n = sum(len(p.read_text().splitlines()) for p in [*(records / "M0").glob("*.jsonl"), *(m1 / "M1").glob("*.jsonl")])
    cmd = [sys.executable, "-m", "experiments.results", "--store", str(store), "--records", str(records)]
    shutil.copytree(store, tmp_path / "probe_store")
    shutil.copytree(records, tmp_path / "probe_records")
    full = duration([sys.executable, "-m", "experiments.results", "--store", str(tmp_path / "probe_store"),
                     "--records", str(tmp_path / "probe_records")])
    rng = random.Random(3636)
    kills, deadline = 0, time.time() + max(18, 10 * full)
    while kills < 8 and time.time() < deadline:
        if kill_at(cmd, rng.uniform(0.3, 0.8) * full) is None:
            kills += 1
        for p in record_files(store):  # whatever was killed, no store file is half-written
            json.loads(p.read_text())  # parses
    assert kills >= 3
    subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, timeout=120, check=True)
    assert len(record_files(store)) == n  # every member once
    for part, folder in (("M0", COMMITTED), ("M1", COMMITTED)):  # the records hold exactly the committed lines
        for p in sorted((folder / part).glob("*.jsonl")):
            assert (records / part / p.name).read_text() == p.read_text(), p.name
    assert results.verify(store, records)[0] == []
