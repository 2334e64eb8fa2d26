"""Nothing lost in silence: damaged store files and records lines, unreadable files and a full disk each end
in a clear message, are moved aside (never deleted), and the next run has every member exactly once, with
finished records untouched; ``python -m experiments.results --verify`` names every damaged file and line.

Real files throughout; a full disk is an ``OSError(ENOSPC)`` from the write of a real runner process.
Kill -9 and concurrent writers: tests/test_store_kill.py; Hydra's launchers: tests/test_launchers.py.
"""

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from experiments import results
from experiments.run import run

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "results" / "records"
RUN = ["benchmark=m0", "optimizer=sgd", "tuned=table1", "seeds=2", "epochs=0.003", "chunk_size=1"]


def record_files(store: Path) -> list[Path]:
    """The store's record files, found without the code under test (so the test runs on older code too)."""
    return sorted(p for p in Path(store).glob("*/*/*.json") if p.parts[-3] != "damaged" and not p.name.startswith("."))


def cfg_for(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=["progress=false", "compile=false", *overrides])


def files(store: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in record_files(store)}


def trained(store: Path) -> dict[str, dict]:
    """The store's members with what training gives (not its wall time, which differs between runs)."""
    return {p.name: {k: v for k, v in json.loads(text).items() if k not in TIMING} for p, text in
            ((p, p.read_text()) for p in record_files(store))}


TIMING = ("seconds", "chunk_seconds", "chunk_members")


def aside(folder: Path) -> list[Path]:
    return sorted(p for p in (folder / "damaged").rglob("*") if p.is_file())


def test_cut_short_store_file_is_reported_moved_aside_and_trained_again(tmp_path, capsys):
    """Today's bug: a file cut short counted as done ("already in the store, skipped") and the analysis
    dropped it silently."""
    run(cfg_for(*RUN, f"store={tmp_path}"))
    before, members = files(tmp_path), trained(tmp_path)
    cut, kept = sorted(before)
    (tmp_path / "M0" / "sgd" / cut).write_text('{"broken')
    capsys.readouterr()
    assert len(results.load(tmp_path)) == 1
    err = capsys.readouterr().err
    assert f"damaged record {tmp_path / 'M0' / 'sgd' / cut}: not valid JSON" in err  # the analysis says so
    again = run(cfg_for(*RUN, f"store={tmp_path}"))
    out, err = capsys.readouterr()
    assert "1 already in the store" in out and "1 to train" in out
    assert err.count("damaged record") == 1 and "moved to" in err
    assert files(tmp_path)[kept] == before[kept] and trained(tmp_path) == members  # the sound one untouched
    assert [p.read_text() for p in aside(tmp_path)] == ['{"broken']  # kept, not deleted
    assert len(again) == 2


def test_record_whose_key_was_changed_is_trained_again(tmp_path, capsys):
    """A record that parses but whose config_hash is not its content's (a changed seed) is not done."""
    run(cfg_for(*RUN, f"store={tmp_path}"))
    members = trained(tmp_path)
    path = record_files(tmp_path)[0]
    rec = json.loads(path.read_text())
    path.write_text(json.dumps({**rec, "seed": rec["seed"] + 10}))
    capsys.readouterr()
    run(cfg_for(*RUN, f"store={tmp_path}"))
    out, err = capsys.readouterr()
    assert "1 to train" in out and "is not its content's" in err
    assert trained(tmp_path) == members


def test_unreadable_store_file_and_records_file_are_moved_aside(tmp_path, capsys):
    """A record that cannot be read (here: a folder where the file should be, and bytes that are not text;
    chmod 000 would not stop root) and a records file that cannot be read."""
    store, records = tmp_path / "store", tmp_path / "records"
    run(cfg_for(*RUN, f"store={store}", f"records={records}"))
    members = trained(store)
    first, second = record_files(store)
    first.unlink()
    first.mkdir()
    second.write_bytes(b"\xff\xfe\x00garbage")
    (records / "M0" / "sgd.jsonl").unlink()
    (records / "M0" / "sgd.jsonl").mkdir()
    capsys.readouterr()
    run(cfg_for(*RUN, f"store={store}", f"records={records}"))
    out, err = capsys.readouterr()
    assert f"damaged record {first}: unreadable (Is a directory)" in err
    assert f"damaged record {second}: not UTF-8 text" in err
    assert f"damaged record {records / 'M0' / 'sgd.jsonl'}: unreadable" in err
    assert "2 to train" in out
    assert trained(store) == members and len((records / "M0" / "sgd.jsonl").read_text().splitlines()) == 2
    assert len(aside(store)) == 1 and (store / "damaged" / "M0" / "sgd").is_dir()
    assert results.verify(store, records)[0] == []


def test_damaged_records_line_is_reported_moved_aside_and_restored(tmp_path, capsys):
    store, records = tmp_path / "store", tmp_path / "records"
    (records / "M0").mkdir(parents=True)
    shutil.copy(COMMITTED / "M0" / "sgd.jsonl", records / "M0" / "sgd.jsonl")
    original = (records / "M0" / "sgd.jsonl").read_text().splitlines(keepends=True)
    results.sync(store, records)
    damaged = original.copy()
    damaged[16] = original[16][:200] + "\n"  # line 17 torn
    (records / "M0" / "sgd.jsonl").write_text("".join(damaged))
    capsys.readouterr()
    assert results.sync(store, records) == (1, 0)  # the store's copy goes back
    assert (records / "M0" / "sgd.jsonl").read_text() == "".join(original)
    err = capsys.readouterr().err  # and the damage is said, not passed over (as it was before)
    assert err.count("damaged record") == 1 and f"{records / 'M0' / 'sgd.jsonl'}:17: not valid JSON" in err
    assert [p.read_text() for p in aside(records)] == [damaged[16]]


def test_analysis_counts_records_it_cannot_read_and_keeps_the_committed_tables(tmp_path, monkeypatch, caplog):
    """Today: a damaged line of results/records/M0/sgd.jsonl cost one member, said nothing, and the tables
    were written from the rest. Now the analysis names it and leaves committed tables with more members alone."""
    from analysis.__main__ import main as analysis_main

    store, records, out = tmp_path / "store", tmp_path / "records", tmp_path / "results"
    (records / "M0").mkdir(parents=True)
    lines = (COMMITTED / "M0" / "sgd.jsonl").read_text().splitlines(keepends=True)
    lines[16] = lines[16][:200] + "\n"
    (records / "M0" / "sgd.jsonl").write_text("".join(lines))
    out.mkdir()
    for name in ("table1.csv", "table2.csv", "table3.csv", "wall_time.csv"):
        shutil.copy(ROOT / "results" / name, out / name)
    subprocess.run(["git", "init", "-q", str(out)], check=True)
    subprocess.run(["git", "-C", str(out), "add", "."], check=True)  # committed tables: tracked by git
    monkeypatch.setattr(results, "DEFAULT_STORE", store)
    monkeypatch.setattr(results, "DEFAULT_RECORDS", records)
    tables = {p.name: p.read_bytes() for p in out.glob("*.csv")}
    with caplog.at_level(logging.WARNING, logger="analysis"):
        assert analysis_main(["--out", str(out), "-q"]) == 1
    said = caplog.text
    assert f"1 records could not be read and are not in the tables: {records / 'M0' / 'sgd.jsonl'}:17" in said
    assert "not written: the store holds fewer members than the committed tables" in said and "--allow-fewer" in said
    assert {p.name: p.read_bytes() for p in out.glob("*.csv")} == tables  # untouched
    assert len(results.load(store)) == len(lines) - 1


def test_analysis_writes_fewer_members_when_asked(tmp_path, monkeypatch):
    from analysis.__main__ import run as run_analysis

    out = tmp_path / "results"
    out.mkdir()
    for name in ("table1.csv", "table2.csv"):
        shutil.copy(ROOT / "results" / name, out / name)
    subprocess.run(["git", "init", "-q", str(out)], check=True)
    subprocess.run(["git", "-C", str(out), "add", "."], check=True)
    monkeypatch.setattr("analysis.__main__.figures.write_all", lambda inp, out: [])  # the tables are the point
    fixture = ROOT / "tests" / "fixtures" / "records"
    assert run_analysis(fixture, out)[1] == ["tables"]
    written, failed = run_analysis(fixture, out, allow_fewer=True)
    assert failed == [] and out / "table2.csv" in written


def test_verify_passes_the_committed_records():
    proc = subprocess.run([sys.executable, "-m", "experiments.results", "--verify", "--store", "none", "--records",
                           str(COMMITTED)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("verify: all good (")


def test_verify_names_the_file_and_line_of_each_damage(tmp_path, capsys):
    store, records = tmp_path / "store", tmp_path / "records"
    for name in ("sgd", "adagrad"):
        (records / "M0").mkdir(parents=True, exist_ok=True)
        shutil.copy(COMMITTED / "M0" / f"{name}.jsonl", records / "M0" / f"{name}.jsonl")
    results.sync(store, records)
    argv = ["--verify", "--store", str(store), "--records", str(records)]
    assert results.main(argv) == 0
    sgd, adagrad = records / "M0" / "sgd.jsonl", records / "M0" / "adagrad.jsonl"
    lines = sgd.read_text().splitlines(keepends=True)
    lines[2] = lines[2][:100] + "\n"  # torn
    rec = json.loads(lines[5])
    lines[5] = json.dumps({**rec, "seed": rec["seed"] + 1}, sort_keys=True, separators=(",", ":")) + "\n"  # edited
    lines[7] = '{"benchmark": "M0"}\n'  # fields missing
    sgd.write_text("".join(lines))
    with adagrad.open("a") as f:
        f.write(lines[9])  # an SGD record in AdaGrad's file
    store_file = record_files(store)[-1]
    store_file.write_text(store_file.read_text()[:-10])  # cut short
    capsys.readouterr()
    assert results.main(argv) == 1
    err = capsys.readouterr().err
    assert f"{sgd}:3: not valid JSON" in err
    assert f"{sgd}:6: its config_hash {rec['config_hash']} is not its content's" in err
    assert f"{sgd}:8: no optimizer, seed, config_hash, train_error, test_error" in err
    assert f"{adagrad}:{len(adagrad.read_text().splitlines())}: a record of M0 sgd filed under M0 adagrad" in err
    assert f"{store_file}: not valid JSON" in err
    assert err.count("not in the records") == 3  # the torn, edited and emptied lines' members: in the store alone
    assert f"{sgd}:{len(lines)}: not in the store" in err  # the member of the store file cut short
    assert err.startswith("verify: 9 problems")


def test_verify_names_a_torn_line_of_the_committed_synthetic_runs(tmp_path, capsys):
    records = tmp_path / "records"
    (records / "synthetic").mkdir(parents=True)
    runs = records / "synthetic" / "supp_fig9_xor.jsonl"
    committed = (COMMITTED / "synthetic" / "supp_fig9_xor.jsonl").read_text().splitlines(keepends=True)[:3]
    runs.write_text("".join(committed))
    argv = ["--verify", "--store", "none", "--records", str(records)]
    assert results.main(argv) == 0
    runs.write_text("".join(committed[:2]) + committed[2][:80] + "\n")  # a run cut off mid-write
    capsys.readouterr()
    assert results.main(argv) == 1
    assert f"{runs}:3: not a whole JSON record" in capsys.readouterr().err


@pytest.mark.parametrize("target", ["record", "records"])
def test_full_disk_is_a_clear_error_and_the_rerun_completes(tmp_path, target):
    """An OSError(ENOSPC) from the write of the second record (or of the records file after it) of a real
    runner process: one message, exit status 4, no temporary file left; the rerun trains only what is missing
    and the first member's record is untouched."""
    store, records = tmp_path / "store", tmp_path / "records"
    prefix, suffix = (store, ".json") if target == "record" else (records, ".jsonl")
    inject = f"""
import errno, os, runpy, sys
real, seen = os.fsync, []
def fsync(fd):
    path = os.readlink(f"/proc/self/fd/{{fd}}")
    if path.startswith({str(prefix)!r}) and path.endswith({suffix!r}):
        seen.append(path)
        if len(seen) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real(fd)
os.fsync = fsync
sys.argv = ["experiments.run", *sys.argv[1:]]
runpy.run_module("experiments.run", run_name="__main__")
"""
    cmd = [*RUN, "progress=false", "compile=false", f"store={tmp_path / 'store'}", f"records={records}"]
    proc = subprocess.run([sys.executable, "-c", inject, *cmd], cwd=ROOT, capture_output=True, text=True,
                          timeout=180, check=False)
    assert proc.returncode == 4, proc.stderr
    assert "No space left on device" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: [M0 sgd] the record")
    before = files(store)
    assert len(before) == (1 if target == "record" else 2)
    assert not [p for p in tmp_path.rglob(".tmp-*") if not p.name.endswith(".lock")]  # no half-written file
    proc = subprocess.run([sys.executable, "-m", "experiments.run", *cmd], cwd=ROOT, capture_output=True, text=True,
                          timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr
    after = files(store)
    assert len(after) == 2 and all(after[name] == text for name, text in before.items())
    assert results.verify(store, records)[0] == []
