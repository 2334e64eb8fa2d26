"""Every bad command-line value is one clear line naming the key and the fix, without a traceback
(docs/inputs.md lists the inputs tried and their messages)."""

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from experiments.run import UserError, run

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "arg, message",
    [
        ("seeds=abc", "error: seeds='abc' is not a whole number; give the number of seeds per setting, e.g. seeds=2."),
        ("epochs=abc", "error: epochs='abc' is not a number; give e.g. epochs=6, or null for the benchmark's."),
        ("device=tpu", "error: device='tpu' is not a device; use auto, cpu, cuda or cuda:N."),
        ("grid=nosuch", "error: grid=nosuch: there is no conf/grid/nosuch.yaml; choose one of adagrad, almeida, "),
        ("experiment=nosuch", ("error: experiment=nosuch: there is no conf/experiment/nosuch.yaml; choose one "
                               "of beyond_tables, ")),
    ],
)
def test_bad_value_on_the_command_line_is_one_line(tmp_path, arg, message):
    proc = subprocess.run([sys.executable, "-m", "experiments.run", arg, f"store={tmp_path}", "progress=false"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(message) and proc.stderr.count("\n") == 1, proc.stderr  # one line
    assert "Traceback" not in proc.stderr and "HYDRA_FULL_ERROR" not in proc.stderr
    assert proc.stdout == ""  # before any work
    assert not list(tmp_path.rglob("*.json"))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["seeds=2.5"], r"seeds=2.5 is not a whole number; give the number of seeds"),
        (["seeds=true"], r"seeds=True is not a whole number"),
        (["seed_offset=x"], r"seed_offset='x' is not a whole number; give the first seed"),
        (["chunk_size=big"], r"chunk_size='big' is not a whole number; give members per chunk, or null"),
        (["threads=many"], r"threads='many' is not a whole number"),
        (["device=cuda:x"], r"device='cuda:x' is not a device"),
    ],
)
def test_bad_number_or_device_fails_before_any_work(tmp_path, overrides, message):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["progress=false", f"store={tmp_path}", *overrides])
    with pytest.raises(UserError, match=message):
        run(cfg)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["benchmark=m9"], "benchmark=m9: there is no conf/benchmark/m9.yaml; choose one of c0, c1, cr, m0, m1, m1_800, m2."),
        (["-m", "optimizer=sgd,nosuch"], "optimizer=nosuch: there is no conf/optimizer/nosuch.yaml"),
        (["logger=tensorboard"], ("logger=tensorboard: there is no conf/logger/tensorboard.yaml; choose one of "
                                  "none, wandb.")),
        (["+experiment=tabel1"], "experiment=tabel1: there is no conf/experiment/tabel1.yaml"),
    ],
)
def test_unknown_config_group_choice_names_the_choices(argv, message):
    from experiments.run import check_overrides

    with pytest.raises(UserError) as err:
        check_overrides(argv)
    assert str(err.value).startswith(message)


def test_good_group_choices_and_sweeps_pass_the_check():
    from experiments.run import check_overrides

    check_overrides(["-m", "benchmark=m0,m1", "optimizer=sgd", "grid=sgd", "grid.eta0=[0.1]", "experiment=table1",
                     "logger=none", "optimizer.eta0=0.1", "hydra/launcher=local_parallel", "benchmark=choice(m0,m1)",
                     "grid=null", "~logger"])
