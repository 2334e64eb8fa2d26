"""The cluster path run for real: a multirun through Hydra's launchers, joblib (``hydra/launcher=local_parallel``)
and submitit (``submitit_local``: the engine behind the SLURM launcher, run on this machine), two jobs writing
one store and one records folder, then every member exactly once in both."""

import subprocess
import sys

import pytest
from test_concurrent_writers import ENV, ROOT, RUN, members  # pytest puts tests/ on sys.path

from experiments import results


@pytest.mark.parametrize("launcher", ["submitit_local", "local_parallel"])
def test_multirun_through_a_launcher_writes_each_member_once(tmp_path, launcher):
    """Two jobs of one multirun share a store and a records folder and overlap on seed 1: three members."""
    store, records = tmp_path / "store", tmp_path / "records"
    cmd = [sys.executable, "-m", "experiments.run", "-m", f"hydra/launcher={launcher}", *RUN, "seeds=2",
           "seed_offset=0,1", f"store={store}", f"records={records}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    in_store, in_records = members(store, records)
    assert len(in_store) == 3 and in_store == in_records
    assert results.verify(store, records)[0] == []
    if launcher == "submitit_local":  # the jobs ran as submitit jobs, each in its own process
        assert len(list((tmp_path / "sweep").rglob("*_result.pkl"))) == 2
