"""A lock-step run saved at a checkpoint and killed resumes bit-identically (experiments.trainer.Snapshot)."""

import pytest
import torch

from experiments.mlp import MLPSpec
from experiments.trainer import Member, Snapshot, train_ensemble
from vsgd.core import get_rule

SPEC = MLPSpec((6, 5, 3), "cross_entropy", l2=1e-3)
EPOCHS = 5  # 64 samples: checkpoints at 32, 64, 128, ... (every epoch end and the powers of two of an epoch)


class Killed(Exception):
    pass


class KilledAfter(Snapshot):
    """Saves like Snapshot, then 'dies' right after its n-th save (the process killed by the session's end)."""

    def __init__(self, path, n):
        super().__init__(path, every_s=0.0)
        self.n = n

    def save(self, snap):
        super().save(snap)
        self.n -= 1
        if self.n == 0:
            raise Killed


def _run(rule, members, data, snapshot=None):
    return train_ensemble(SPEC, get_rule(rule), members, data, epochs=EPOCHS, dtype=torch.float64, snapshot=snapshot)


def _same(a, b):
    for x, y in zip(a, b, strict=True):
        assert (x.train_error, x.test_error, x.train_loss, x.test_loss, x.diverged, x.diverged_step) == \
               (y.train_error, y.test_error, y.train_loss, y.test_loss, y.diverged, y.diverged_step)
        assert x.curve == y.curve


MEMBERS = {
    "sgd": [Member(0, {"eta0": 0.1, "gamma": 0.5}), Member(1, {"eta0": 0.03})],  # the fused step
    "vsgd_l": [Member(0, {}), Member(2, {})],
    "smd": [Member(0, {"eta0": 0.05, "mu": 0.1}), Member(1, {"eta0": 0.01, "mu": 0.1})],  # extras: hvp
}


@pytest.mark.parametrize("rule", sorted(MEMBERS))
@pytest.mark.parametrize("kill_at_save", [1, 3])
def test_killed_run_resumes_bit_identically(tiny_data, tmp_path, rule, kill_at_save):
    members = MEMBERS[rule]
    whole = _run(rule, members, tiny_data)
    path = tmp_path / "chunk.pt"
    with pytest.raises(Killed):
        _run(rule, members, tiny_data, KilledAfter(path, kill_at_save))
    assert path.is_file()
    resumed = _run(rule, members, tiny_data, Snapshot(path, every_s=0.0))
    _same(whole, resumed)


def test_a_member_that_diverged_before_the_save_stays_diverged(tiny_data, tmp_path, monkeypatch):
    from experiments import trainer

    monkeypatch.setattr(trainer, "CHECK_EVERY", 10)
    members = [Member(0, {"eta0": 0.1}), Member(1, {"eta0": 1e30}), Member(2, {"eta0": 0.05})]
    whole = _run("sgd", members, tiny_data)
    assert whole[1].diverged and not whole[0].diverged
    path = tmp_path / "chunk.pt"
    with pytest.raises(Killed):
        _run("sgd", members, tiny_data, KilledAfter(path, 2))
    _same(whole, _run("sgd", members, tiny_data, Snapshot(path, every_s=0.0)))


def test_a_snapshot_is_written_only_as_often_as_asked(tiny_data, tmp_path):
    path = tmp_path / "chunk.pt"
    _run("sgd", MEMBERS["sgd"], tiny_data, Snapshot(path, every_s=3600.0))
    assert not path.exists()  # no save in the first hour; the runner removes a finished chunk's file anyway


@pytest.mark.parametrize("damage", ["torn", "other members"])
def test_an_unusable_snapshot_is_moved_aside_and_the_run_starts_over(tiny_data, tmp_path, capsys, damage):
    members = MEMBERS["vsgd_l"]
    path = tmp_path / "chunk.pt"
    if damage == "torn":
        with pytest.raises(Killed):
            _run("vsgd_l", members, tiny_data, KilledAfter(path, 1))
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        with pytest.raises(Killed):
            _run("vsgd_l", [Member(5, {}), Member(6, {})], tiny_data, KilledAfter(path, 1))
    kept = path.read_bytes()
    out = _run("vsgd_l", members, tiny_data, Snapshot(path, every_s=3600.0))
    _same(_run("vsgd_l", members, tiny_data), out)
    assert (tmp_path / "chunk.pt.unusable").read_bytes() == kept  # nothing deleted
    assert "moved to" in capsys.readouterr().err


def test_the_runner_resumes_a_killed_chunk_from_its_snapshot(tmp_path):
    """Through experiments.run: kill -9 once the chunk has saved itself, run the same command again; the records
    equal those of an uninterrupted run, and the finished chunk's snapshot is gone."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled"}

    def cmd(store):
        return [sys.executable, "-m", "experiments.run", "benchmark=m0", "optimizer=vsgd_l", "seeds=2", "epochs=0.2",
                "chunk_size=2", "compile=false", "progress=false", "snapshot_minutes=1e-9", f"store={store}",
                f"records={store}-records"]

    def record(store):
        recs = [json.loads(p.read_text()) for p in sorted((store / "M0" / "vsgd_l").glob("*.json"))]
        keep = ("seed", "train_error", "test_error", "train_loss", "test_loss", "diverged", "curve", "config_hash")
        return [{k: r[k] for k in keep} for r in recs]

    whole = tmp_path / "whole"
    subprocess.run(cmd(whole), cwd=root, env=env, capture_output=True, timeout=600, check=True)
    store = tmp_path / "killed"
    proc = subprocess.Popen(cmd(store), cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = store / "partial" / "M0" / "vsgd_l"
    deadline = time.time() + 300
    while not list(partial.glob("*.pt")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # right after its first save (the file appears by a rename)
    assert proc.wait() == -signal.SIGKILL, "the run ended before its first save: make it longer"
    proc.wait()
    assert list(partial.glob("*.pt")) and not list((store / "M0" / "vsgd_l").glob("*.json"))
    again = subprocess.run(cmd(store), cwd=root, env=env, capture_output=True, text=True, timeout=600, check=True)
    assert "[snapshot] resuming from" in again.stderr
    assert record(store) == record(whole) and len(record(whole)) == 2
    assert not list(partial.glob("*"))  # the finished chunk's snapshot and its listing are removed
