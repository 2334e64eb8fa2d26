"""The committed tables against the committed per-member records (results/records).

A cell of results/table{2,3}.csv whose members are all in results/records must be what the analysis
computes from them; a cell with more seeds in the records than in the table means the table is stale.
The same for a row of results/table1.csv whose grid settings are all in the records.
Cells the records do not cover yet (the records were started on 2026-11-24, see docs/architecture.md) are
not checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import coverage, tables
from experiments import results

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ours() -> dict[int, pd.DataFrame]:
    """Tables 1-3 as the analysis computes them from the committed records alone."""
    computed = coverage.tables_from_records(results.DEFAULT_RECORDS)
    if not computed:
        pytest.skip("no committed records yet")
    return computed


@pytest.mark.parametrize("number", sorted(tables.SPLITS))
def test_committed_table_cells_are_the_records_numbers(ours, number):
    committed = pd.read_csv(ROOT / "results" / f"table{number}.csv")
    both = ours[number].merge(committed, on=["benchmark", "method"], suffixes=("", "_committed"))
    stale = both[both.n_seeds > both.n_seeds_committed]
    assert stale.empty, (f"results/table{number}.csv is older than results/records for "
                         f"{list(zip(stale.benchmark, stale.method))}: run python -m analysis")
    same = both[both.n_seeds == both.n_seeds_committed]
    assert len(same) > 0
    for col in ("mean", "std", "n_diverged"):
        np.testing.assert_allclose(same[col], same[f"{col}_committed"], rtol=1e-9, err_msg=col)


def test_committed_table1_rows_are_the_records_picks(ours):
    committed = pd.read_csv(ROOT / "results" / "table1.csv")
    both = ours[1].merge(committed, on=["benchmark", "method"], suffixes=("", "_committed"))
    stale = both[both.n_settings_tried > both.n_settings_tried_committed]
    assert stale.empty, f"results/table1.csv is older than results/records for {list(zip(stale.benchmark, stale.method))}"
    same = both[(both.n_settings_tried == both.n_settings_tried_committed) & (both.n_seeds == both.n_seeds_committed)]
    if same.empty:
        pytest.skip("no Table 1 grid is fully in the records yet")
    assert list(same.setting) == list(same.setting_committed)
    for col in ("mean", "std", "paper_setting_mean", "paper_setting_rank"):
        np.testing.assert_allclose(same[col], same[f"{col}_committed"], rtol=1e-9, err_msg=col)


def test_committed_coverage_report_is_current(ours):
    """results/coverage.md is what `python -m analysis.coverage --write` writes from the committed files."""
    expected = coverage.markdown(coverage.coverage(ours, ROOT / "results"))
    committed = (ROOT / "results" / "coverage.md").read_text()
    assert committed == expected, "results/coverage.md is out of date: run python -m analysis.coverage --write"


def test_a_cell_at_our_pick_is_restored_at_that_setting(ours):
    """A Table 2/3 cell at our own grid's pick (§) is restored by a command that trains that setting: its
    overrides are exactly the hyper-parameters of the cell's committed members (``experiment=table2`` would
    train the paper's setting instead, and the restored cell would never fill)."""
    assert coverage.command("2/3", "M0", "almeida", 10, "eta0=0.003, tau=1000") == (
        "python -m experiments.run benchmark=m0 optimizer=almeida optimizer.eta0=0.003 optimizer.tau=1000 seeds=10")
    df = coverage.coverage(ours, ROOT / "results")
    cells = df[(df.table == "2/3") & (df.pick != "")]
    committed = pd.read_csv(ROOT / "results" / "table2.csv").set_index(["benchmark", "method"])
    assert len(cells) == (committed.setting_source == "ours").sum() > 0
    for r in cells.itertuples():
        assert "experiment=" not in r.command, r.command
        hp = {kv.split("=")[0][len("optimizer."):]: float(kv.split("=")[1])
              for kv in r.command.split() if kv.startswith("optimizer.")}
        lines = (results.DEFAULT_RECORDS / r.benchmark / f"{r.method}.jsonl").read_text().splitlines()
        members = [json.loads(line) for line in lines]
        at = [m for m in members if m["hp"] == hp and m["epochs"] == committed.loc[(r.benchmark, r.method), "epochs"]]
        assert len({m["seed"] for m in at}) == committed.loc[(r.benchmark, r.method), "n_seeds"], r.command


def test_coverage_statuses(tmp_path):
    """covered / partial / missing / stale / new / not run, and costs from wall_time.csv."""
    t23 = pd.DataFrame({"benchmark": ["M0", "M0", "M0", "M0"], "method": ["vsgd_l", "sgd", "adagrad", "smd"],
                        "n_seeds": [10, 10, 10, 3]})
    t23.to_csv(tmp_path / "table2.csv", index=False)
    pd.DataFrame({"benchmark": ["M0", "M0"], "method": ["sgd", "smd"], "n_settings_tried": [68, 1],
                  "n_seeds": [2, 2]}).to_csv(tmp_path / "table1.csv", index=False)
    pd.DataFrame({"benchmark": ["M0", "M0", "M0"], "method": ["sgd", "smd", "sgd"], "seeds": [10, 3, np.nan],
                  "seconds_per_seed": [12.0, 20.0, np.nan], "seconds": [np.nan, np.nan, 680.0],
                  "settings": [np.nan, np.nan, 68]}).to_csv(tmp_path / "wall_time.csv", index=False)
    ours = {2: pd.DataFrame({"benchmark": ["M0", "M0", "M0", "M0"], "method": ["vsgd_l", "sgd", "smd", "dog"],
                             "n_seeds": [10, 4, 5, 2]}),
            1: pd.DataFrame({"benchmark": ["M0", "M0"], "method": ["sgd", "smd"], "n_settings_tried": [60, 1],
                             "n_seeds": [2, 1]})}
    pd.DataFrame({"benchmark": ["M1", "M1"], "optimizer": ["dog", "dog"], "variant": ["fast", "fast+compile"],
                  "updates_per_s_wall": [100.0, 200.0], "steps_per_member": [360000, 360000]}).to_csv(
        tmp_path / "micro.csv", index=False)
    df = coverage.coverage(ours, tmp_path, tmp_path / "micro.csv").set_index(["table", "benchmark", "method"])
    assert df.loc[("2/3", "M0", "vsgd_l"), "status"] == "covered"
    assert df.loc[("2/3", "M0", "sgd"), "status"] == "partial"
    assert df.loc[("2/3", "M0", "sgd"), "cpu_s_restore"] == pytest.approx(6 * 12.0)
    assert df.loc[("2/3", "M0", "adagrad"), "status"] == "missing"
    assert df.loc[("2/3", "M0", "smd"), "status"] == "stale"
    assert df.loc[("2/3", "M0", "smd"), "cpu_s_target"] == pytest.approx(5 * 20.0)
    assert df.loc[("2/3", "M0", "dog"), "status"] == "new"
    assert df.loc[("2/3", "M1", "prodigy"), "status"] == "not run"
    assert np.isnan(df.loc[("2/3", "M1", "prodigy"), "cpu_s_target"])  # never measured
    assert df.loc[("2/3", "M1", "dog"), "cpu_s_target"] == pytest.approx(10 * 1800.0)  # the runner's path's rate
    assert df.loc[("2/3", "M1", "dog"), "estimated"] and not df.loc[("2/3", "M0", "sgd"), "estimated"]
    assert df.loc[("1", "M0", "sgd"), "status"] == "partial"
    assert df.loc[("1", "M0", "smd"), "status"] == "partial"  # its one setting, with one of two seeds
    assert df.loc[("1", "M0", "sgd"), "cpu_s_restore"] == pytest.approx(8 * 10.0)
    assert df.loc[("2/3", "M0", "smd"), "command"].endswith("experiment=table2 benchmark=m0 optimizer=smd seeds=3")
    assert "## " not in coverage.markdown(df.reset_index())  # renders
    lost = coverage.lost_cells(ours, tmp_path)  # what writing `ours` over the tables in tmp_path would lose
    assert sorted(zip(lost.table, lost.method)) == [("1", "sgd"), ("1", "smd"), ("2/3", "adagrad"), ("2/3", "sgd")]
    assert coverage.lost_cells({1: pd.DataFrame()}, tmp_path / "none").empty
    cmds = coverage.restore_commands(df.reset_index())  # partial and missing cells only, cheapest first
    assert [c.split("benchmark=m0 ")[1] for c in cmds] == ["optimizer=smd seeds=3",  # Table 1's row: its 2/3 cell's
                                                           "optimizer=sgd seeds=10", "optimizer=sgd",
                                                           "optimizer=adagrad seeds=10"]
    with pytest.raises(ValueError, match="M0 AdaGrad .*reproduce.sh restore"):  # raising seeds waits for the restore
        coverage.target_commands(df.reset_index())
    done = df.reset_index()[lambda d: ~d.status.isin(["missing", "partial"])]
    cmds = coverage.target_commands(done)  # every Table 2/3 cell below 10 seeds, cheapest first, unknown cost last
    first = [c for c in cmds if c.endswith(" seeds=3")]  # breadth first: every cell below 3 seeds to 3, then to 10
    assert cmds[:len(first)] == first and first[0] == coverage.command("2/3", "M1", "dog", 3)  # 3 x 1800 s
    assert coverage.command("2/3", "M0", "dog", 3) in first and not any("optimizer=smd" in c for c in first)  # has 5
    rest = cmds[len(first):]
    assert rest[:2] == [coverage.command("2/3", "M0", "smd", 10), coverage.command("2/3", "M1", "dog", 10)]
    assert coverage.command("2/3", "M0", "dog", 10) in rest[2:] and len(cmds) == len(set(cmds))
    assert not any("optimizer=vsgd_l " in c and "benchmark=m0" in c for c in cmds)  # covered at 10 seeds


def test_commit_records_with_their_report(tmp_path, monkeypatch, capsys):
    """--commit: the records and the coverage.md computed from them land in one commit (those paths only)."""
    import shutil
    import subprocess

    repo = tmp_path / "repo"
    res, rec = repo / "results", repo / "results" / "records"
    for name in ("table1.csv", "table2.csv", "table3.csv", "wall_time.csv"):
        (res / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "results" / name, res / name)
    (rec / "M0").mkdir(parents=True)
    shutil.copy(ROOT / "results" / "records" / "M0" / "vsgd_l.jsonl", rec / "M0")
    lines = (rec / "M0" / "vsgd_l.jsonl").read_text().splitlines(keepends=True)
    # only the Table 2/3 setting's members (the records also hold Supp. Figs. 9-10's C grids and short runs)
    lines = [ln for ln in lines if json.loads(ln)["hp"].get("c") == 0.0 and json.loads(ln)["epochs"] == 6.0]
    (rec / "M0" / "vsgd_l.jsonl").write_text("".join(lines[:-1]))  # a run will add the last member
    (repo / "other.txt").write_text("staged, not part of the records commit\n")

    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "start")
    git("add", "other.txt")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "t"), monkeypatch.setenv("GIT_AUTHOR_EMAIL", "t@t")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "t"), monkeypatch.setenv("GIT_COMMITTER_EMAIL", "t@t")

    msg = coverage.commit(rec, res)
    assert msg.startswith("records: M0/") and "committed cells backed" in msg
    files = git("show", "--name-only", "--format=", "HEAD").split()
    assert "results/coverage.md" in files and "results/records/M0/vsgd_l.jsonl" in files
    assert "other.txt" not in files and git("diff", "--cached", "--name-only").split() == ["other.txt"]
    assert "| M0 | vSGD-l | seeds | 10 | 9 | partial |" in (res / "coverage.md").read_text()

    (rec / "M0" / "vsgd_l.jsonl").write_text("".join(lines))  # the run finished its member
    assert coverage.commit(rec, res).startswith("records: M0/vsgd_l; ")
    assert "| M0 | vSGD-l | seeds | 10 | 10 | covered |" in (res / "coverage.md").read_text()
    assert coverage.commit(rec, res) is None  # nothing new

    real = coverage.tables_from_records

    def busy(records):  # a run adds members while every report is computed
        (rec / "M0" / "vsgd_l.jsonl").write_text("".join(lines) + lines[0])
        return real(records)

    monkeypatch.setattr(coverage, "tables_from_records", busy)
    with pytest.raises(RuntimeError, match="changed during each of 2 attempts"):
        coverage.commit(rec, res, tries=2)
    assert coverage.main(["--commit", "--records", str(rec), "--results", str(res)]) == 1  # one line, no traceback
    assert capsys.readouterr().err.startswith(f"error: {rec} changed during each of 5 attempts")


@pytest.mark.parametrize("benchmark", ["m0", "m1", "m2", "c0", "c1", "cr"])
def test_every_committed_table2_member_is_found_by_the_runner(benchmark):
    """The runner keys a member by the hyper-parameters its config names: a rule that gains one (vSGD's h_rel and
    h_var, session 24, which the runner briefly keyed at their defaults) must not make the committed members
    unknown to ``./reproduce.sh table2``, which would train them all again."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from experiments import run

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=table2", f"benchmark={benchmark}"])
    OmegaConf.update(cfg, "benchmarks", [benchmark], force_add=True)  # as the command line's benchmark= narrows it
    checked = 0
    for job in run.jobs_from(cfg):
        trainer = run.trainer_for(job.opt.name, run.spec_of(job.bench))
        settings = run.member_settings(cfg, job, trainer)
        path = results.DEFAULT_RECORDS / job.bench.name / f"{trainer.name}.jsonl"
        if not settings or not path.is_file():
            continue
        recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        have = {r["config_hash"] for r in recs}
        md5, dtype = recs[0]["data_md5"], recs[0]["dtype"]
        epochs = float(job.bench.epochs)
        for s in settings:
            for seed in range(int(cfg.seeds)):
                key = results.member_key(job.bench.name, results.network_of(job.bench), epochs=epochs,
                                         optimizer=trainer.name, hp=s, seed=seed, data_md5=md5, dtype=dtype)
                assert results.config_hash(key) in have, (job.bench.name, trainer.name, s, seed)
                checked += 1
    assert checked >= 50
