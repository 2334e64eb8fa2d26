"""A deadline stops the runs cleanly (issue 35 s3): benchmarks/cuda_queue.sh sends SIGTERM before its deadline,
the runner stops its chunk at the next divergence check and saves it there, and what finished is kept.

The queue is dry-run here on the CPU (DEVICE=cpu), in a store of its own, as it runs on a GPU machine.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from experiments import trainer
from experiments.mlp import MLPSpec
from experiments.trainer import Member, Snapshot, Stopped, train_ensemble
from vsgd.core import get_rule

ROOT = Path(__file__).resolve().parents[1]
SPEC = MLPSpec((6, 5, 3), "cross_entropy", l2=1e-3)


@pytest.mark.parametrize("name", ["sgd", "adagrad"])  # the fused step (deferred terms) and the generic one
def test_a_stopped_chunk_resumes_bit_identically(tiny_data, tmp_path, monkeypatch, name):
    monkeypatch.setattr(trainer, "CHECK_EVERY", 7)
    rule, members = get_rule(name), [Member(0, {"eta0": 0.1}), Member(1, {"eta0": 0.05})]
    kw = {"epochs": 1.5, "dtype": torch.float64}
    whole = train_ensemble(SPEC, rule, members, tiny_data, **kw)
    snap = Snapshot(tmp_path / "chunk.pt", every_s=1e9)  # no periodic save: only the stop saves
    trainer.STOP.set()
    try:
        with pytest.raises(Stopped, match="stopped at step 7 of .* saved to"):
            train_ensemble(SPEC, rule, members, tiny_data, snapshot=snap, **kw)
    finally:
        trainer.STOP.clear()
    assert snap.path.is_file()
    resumed = train_ensemble(SPEC, rule, members, tiny_data, snapshot=Snapshot(snap.path, every_s=1e9), **kw)
    for a, b in zip(whole, resumed):
        assert (a.train_loss, a.test_error) == (b.train_loss, b.test_error)
        assert [c["test_loss"] for c in a.curve] == [c["test_loss"] for c in b.curve]


def test_stop_without_snapshot_says_so(tiny_data, monkeypatch):
    monkeypatch.setattr(trainer, "CHECK_EVERY", 5)
    trainer.STOP.set()
    try:
        with pytest.raises(Stopped) as err:
            train_ensemble(SPEC, get_rule("sgd"), [Member(0, {"eta0": 0.1})], tiny_data, epochs=1)
    finally:
        trainer.STOP.clear()
    assert "saved" not in str(err.value)


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "MNIST").is_dir(), reason="needs the MNIST files")
def test_queue_dry_run_stops_at_the_deadline_and_keeps_what_finished(tmp_path):
    """Two jobs under a 60 s deadline: a short M0 run finishes (its member is in the store); a long M2 run
    gets SIGTERM 25 s before the deadline, stops at its next check with its chunk saved, and the queue ends."""
    store = tmp_path / "store"
    queue = tmp_path / "queue.txt"
    queue.write_text("# a comment line\n"
                     "python -m experiments.run benchmark=m0 optimizer=adagrad tuned=table1 seeds=1 epochs=0.02\n"
                     "benchmark=m2 optimizer=adagrad tuned=table1 seeds=1 epochs=1\n")
    env = {**os.environ, "DEVICE": "cpu", "P": "1", "DEADLINE_S": "60", "GRACE_S": "25", "MIN_LEFT_S": "3",
           "SNAPSHOT_MINUTES": "1000", "EXTRA": f"store={store} compile=false threads=1", "OUT": str(tmp_path / "out"),
           "PY": str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").is_dir() else "python3",
           "PYTHONPATH": str(ROOT)}
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / "cuda_queue.sh"), str(queue)], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=150, check=False)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log
    assert "end m0-adagrad: exit 0" in log, log
    assert "end m2-adagrad: stopped at the deadline (exit 5" in log, log
    assert len(list((store / "M0" / "adagrad").glob("*.json"))) == 1
    assert not (store / "M2" / "adagrad").is_dir() or not list((store / "M2" / "adagrad").glob("*.json"))
    saved = list((store / "partial" / "M2" / "adagrad").glob("*.pt"))
    assert len(saved) == 1 and torch.load(saved[0], weights_only=True)["t"] % 1000 == 0
    assert (tmp_path / "out" / "cuda_queue.tgz").is_file()


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "MNIST").is_dir(), reason="needs the MNIST files")
def test_gpu_check_dry_run(tmp_path):
    """benchmarks/gpu_check.sh --dry-run: the roofline (tiny: M0, two rules), then a grid queue whose chunk size
    comes from the measured rates, in a store of its own; every file it promises is written."""
    env = {**os.environ, "OUT": str(tmp_path), "PYTHONPATH": str(ROOT)}
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=280, check=False)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log
    with open(tmp_path / "roofline_cuda.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["rule"], r["K"]) for r in rows} >= {("sgd", "1"), ("adagrad", "1"), ("adagrad", "2")}
    queue = (tmp_path / "queue.txt").read_text()
    k = int(queue.split("chunk_size=")[1].split()[0])
    assert "benchmark=m0 optimizer=adagrad grid=adagrad seeds=2" in queue and k >= 1
    assert list((tmp_path / "store" / "M0" / "adagrad").glob("*.json")), log  # members trained and stored
    assert (tmp_path / "cuda_queue.tgz").is_file() and (tmp_path / "roofline_cuda.png").is_file()


def test_a_deadline_sent_twice_stops_cleanly():
    """GNU ``timeout`` sends its SIGTERM to the command and again to its process group (which holds the command):
    the runner must take the copy as the same request, not as "stop now" (on a lent H100 it died mid-chunk with
    exit 143 before session 25); a SIGTERM ``SIGTERM_REPEAT_S`` later still ends the process at once."""
    script = (
        "import os, signal, sys, time\n"
        "from experiments import run, trainer\n"
        "run.stop_on_sigterm()\n"
        "os.kill(os.getpid(), signal.SIGTERM); os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(0.2)\n"
        "print('stopping' if trainer.STOP.is_set() else 'not stopping', flush=True)\n"
        "time.sleep(run.SIGTERM_REPEAT_S + 0.2)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(2)\n"
        "print('still alive', flush=True)\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert out.stdout.split() == ["stopping"], out.stdout + out.stderr
    assert out.returncode == -signal.SIGTERM, out.stderr
