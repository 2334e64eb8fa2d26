"""The Hydra entry: composing the real conf/, running, resuming, and clear errors for bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from experiments import results
from experiments.run import UserError, run

ROOT = Path(__file__).resolve().parents[1]
CONF = str(ROOT / "conf")


def cfg_for(*overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=["progress=false", "compile=false", *overrides])


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml")))
def test_every_experiment_composes(name):
    cfg = cfg_for(f"experiment={name}")
    assert cfg.experiment_name


@pytest.mark.parametrize("launcher", ["slurm_gpu", "local_parallel"])
def test_launcher_configs_compose(launcher):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert "_target_" in cfg.hydra.launcher


def test_run_writes_records_and_resumes(tmp_path, capsys):
    over = ["benchmark=m0", "optimizer=sgd", "tuned=table1", "seeds=2", "epochs=0.005", f"store={tmp_path}"]
    df = run(cfg_for(*over))
    assert len(df) == 2 and set(df.seed) == {0, 1}
    assert (df.hp_eta0 == 0.03).all() and (df.hp_gamma == 1.0).all()  # Table 1's M0 setting
    assert df.test_error.between(0, 100).all() and not df.diverged.any()
    loaded = results.load(tmp_path)
    assert set(loaded.config_hash) == set(df.config_hash)
    capsys.readouterr()
    again = run(cfg_for(*over))
    assert "2 already in the store" in capsys.readouterr().out
    assert list(again.config_hash) == list(df.config_hash)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["seeds=0"], "seeds=0 must be >= 1"),
        (["optimizer.eta0=-1"], "eta0=-1.0: it must be >"),
        (["benchmark=c0", "optimizer=sgd", "tuned=table2"], "Unknown tuned"),
        (["epochs=0"], "epochs=0 must be > 0"),
        (["dtype=float16"], "dtype='float16' is not supported"),
        (["optimizers=[sgd,nosuch]"], "Unknown optimizer 'nosuch'"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, overrides, message):
    with pytest.raises(UserError, match=message):
        run(cfg_for(f"store={tmp_path}", "epochs=0.001", *overrides))


def test_unwritable_store_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="not writable"):
        run(cfg_for(f"store={blocker / 'store'}"))


def test_cli_prints_one_line_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "experiments.run", "seeds=0", f"store={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: seeds=0") and "Traceback" not in proc.stderr


def test_kill_9_loses_nothing_and_runs_nothing_twice(tmp_path):
    """Kill a running experiment with SIGKILL, run it again: every member exactly once."""
    cmd = [sys.executable, "-m", "experiments.run", "benchmark=m0", "optimizer=sgd", "grid=sgd",
           "grid.eta0=[0.01,0.03,0.1]", "grid.gamma=[0]", "seeds=2", "epochs=0.01", "chunk_size=1",
           "progress=false", f"store={tmp_path}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(tmp_path.glob("*/*/[!.]*.json"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {p.name: p.read_text() for p in tmp_path.glob("*/*/[!.]*.json")}
    assert 2 <= len(before) < 6, "the kill should land mid-run"
    for text in before.values():
        json.loads(text)  # every record on disk is complete
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False).stdout
    assert f"{len(before)} already in the store" in out and f"{6 - len(before)} to train" in out
    after = {p.name: p.read_text() for p in tmp_path.glob("*/*/[!.]*.json")}
    assert len(after) == 6
    assert all(after[name] == text for name, text in before.items())  # finished members untouched


def test_store_of_another_results_version_is_refused(tmp_path):
    (tmp_path / "RESULTS_VERSION").write_text("0\n")
    with pytest.raises(UserError, match="results version 0"):
        run(cfg_for(f"store={tmp_path}", "epochs=0.001"))


def test_failed_chunk_is_recorded_skipped_and_retried(tmp_path, monkeypatch, capsys):
    import experiments.run as runner

    calls = []

    def boom(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("CUDA out of memory (simulated)")

    over = ["benchmark=m0", "optimizer=sgd", "seeds=2", "epochs=0.002", "chunk_size=1", f"store={tmp_path}"]
    monkeypatch.setattr(runner, "train_ensemble", boom)
    monkeypatch.setattr(runner, "FAILED", [])
    assert run(cfg_for(*over)).empty
    assert len(calls) == 2 and len(runner.FAILED) == 2  # the job moved on to the next chunk
    assert "FAILED" in capsys.readouterr().out
    assert len(list((tmp_path / "failed").rglob("*.json"))) == 2
    monkeypatch.undo()
    assert run(cfg_for(*over)).empty  # skipped by default
    assert "retry_failed=true" in capsys.readouterr().out
    assert len(run(cfg_for(*over, "retry_failed=true"))) == 2


def test_results_do_not_depend_on_chunk_size(tmp_path):
    over = ["benchmark=m0", "optimizer=sgd", "grid=sgd", "grid.eta0=[0.01,0.1]", "grid.gamma=[0,1]", "seeds=2",
            "epochs=0.003"]
    a = run(cfg_for(*over, "chunk_size=1", f"store={tmp_path / 'a'}")).set_index("config_hash")
    b = run(cfg_for(*over, "chunk_size=8", f"store={tmp_path / 'b'}")).set_index("config_hash")
    assert len(a) == 8
    # equal up to float32 rounding: BLAS picks its batched kernels by size (see experiments.mlp.FusedSGD)
    a = a.loc[b.index]
    for col in ["train_loss", "test_loss"]:
        assert ((a[col] - b[col]).abs() <= 1e-5 * b[col].abs()).all(), col
    assert ((a["train_error"] - b["train_error"]).abs() <= 0.02).all()  # at most 2 of 10,000 samples flip


def test_committed_records_restore_a_lost_store(tmp_path, capsys):
    """The store is not in git; results/records is. A run keeps them in sync, and a clone with an empty
    store (or a deleted one) gets every committed member back without training it again."""
    records = tmp_path / "records"
    over = ["benchmark=m0", "optimizer=sgd", "tuned=table1", "seeds=2", "epochs=0.005", f"records={records}"]
    first = run(cfg_for(*over, f"store={tmp_path / 'a'}")).set_index("config_hash")
    lines = (records / "M0" / "sgd.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["config_hash"] for x in lines) == sorted(first.index)
    assert lines == sorted(lines, key=lambda x: json.loads(x)["config_hash"])  # stable order: small git diffs
    assert all(json.loads(x)["curve"] for x in lines)  # the whole record, curves included
    capsys.readouterr()
    again = run(cfg_for(*over, f"store={tmp_path / 'b'}")).set_index("config_hash")
    out = capsys.readouterr().out
    assert "2 members restored" in out and "2 already in the store" in out
    cols = ["seed", "train_error", "test_error", "train_loss", "seconds"]
    assert again.loc[first.index, cols].equals(first[cols])


def test_sync_is_a_union_both_ways_and_idempotent(tmp_path):
    store, records = tmp_path / "store", tmp_path / "records"
    rec = {"benchmark": "M0", "optimizer": "sgd", "seed": 0, "train_error": 1.0, "test_error": 2.0, "curve": []}
    results.write_record(store, {**rec, "config_hash": "aaaa"})
    results.sync(store, records)
    other = tmp_path / "other"  # a second machine: it ran another member and has the first from git
    results.write_record(other, {**rec, "seed": 1, "config_hash": "bbbb"})
    assert results.sync(other, records) == (1, 1)
    assert results.sync(store, records) == (0, 1)
    assert results.sync(store, records) == (0, 0)
    assert sorted(results.load(store).config_hash) == sorted(results.load(other).config_hash) == ["aaaa", "bbbb"]


def test_records_of_another_results_version_are_refused(tmp_path):
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "RESULTS_VERSION").write_text("0\n")
    with pytest.raises(UserError, match="results version 0"):
        run(cfg_for(f"store={tmp_path / 'store'}", f"records={tmp_path / 'records'}", "epochs=0.001"))


def test_records_follow_only_the_project_store(tmp_path):
    from experiments.run import records_path

    assert records_path(cfg_for()) == results.DEFAULT_RECORDS
    assert records_path(cfg_for(f"store={tmp_path}")) is None  # a test's or a cluster job's store
    assert records_path(cfg_for("records=null")) is None
