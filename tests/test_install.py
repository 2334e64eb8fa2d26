"""What `pip install .` gives a user: the package `vsgd`, depending on torch only (issue 34 s3).

The harness (baselines, experiments, synthetic, analysis, conf) stays in the repository and runs from its
root; its dependencies are the `harness` extra. The wheel is built offline from a copy of the source tree
(the copy holds every top-level folder with Python code, so a packaging rule that picked up the harness
would show), with the interpreter's own setuptools (the `dev` extra pins it): a few seconds.
"""

from __future__ import annotations

import email.parser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HARNESS = {"baselines", "experiments", "synthetic", "analysis"}
HEAVY = {"hydra", "omegaconf", "pandas", "scipy", "matplotlib", "wandb", "torchvision"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for f in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / f, src / f)
    for d in ROOT.iterdir():  # every top-level folder with Python code: the library and the harness
        if d.is_dir() and not d.name.startswith(".") and any(d.glob("*.py")):
            shutil.copytree(d, src / d.name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    assert HARNESS | {"vsgd"} <= {p.name for p in src.iterdir()}
    out = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
           "-w", str(out), str(src)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    (whl,) = out.glob("vsgd-*.whl")
    return whl


def metadata(whl: Path) -> email.message.Message:
    with zipfile.ZipFile(whl) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(z.read(name).decode())


def test_wheel_holds_the_library_only(wheel):
    with zipfile.ZipFile(wheel) as z:
        top = {n.split("/")[0] for n in z.namelist() if not n.split("/")[0].endswith(".dist-info")}
        names = z.namelist()
    assert top == {"vsgd"}
    assert "vsgd/__init__.py" in names and "vsgd/core.py" in names and "vsgd/vsgd.py" in names


def test_wheel_requires_torch_only_and_the_harness_is_an_extra(wheel):
    meta = metadata(wheel)
    requires = meta.get_all("Requires-Dist") or []
    plain = [r for r in requires if "extra ==" not in r]
    assert [r.split(">")[0].split("=")[0].split("<")[0].strip() for r in plain] == ["torch"]
    extras = set(meta.get_all("Provides-Extra") or [])
    assert {"harness", "dev", "beyond"} <= extras
    harness = " ".join(r for r in requires if 'extra == "harness"' in r)
    for dep in ("hydra-core", "pandas", "scipy", "matplotlib", "wandb", "torchvision"):
        assert dep in harness, f"{dep} is not in the harness extra"
    assert any(r.startswith("vsgd[harness]") and 'extra == "dev"' in r for r in requires)


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False)


def test_import_vsgd_loads_nothing_beyond_torch(tmp_path):
    """`import vsgd` adds only vsgd's own modules and the standard library's to what `import torch` loads
    (torch itself picks up tqdm, numpy and the like when they are installed): no harness, no Hydra or pandas."""
    show = "import sys; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    torch_only, with_vsgd = _run("import torch; " + show, tmp_path), _run("import torch, vsgd; " + show, tmp_path)
    assert torch_only.returncode == 0 and with_vsgd.returncode == 0, with_vsgd.stderr
    added = set(with_vsgd.stdout.split()) - set(torch_only.stdout.split())
    assert "vsgd" in added
    assert added - {"vsgd"} <= set(sys.stdlib_module_names), added
    assert added & (HARNESS | HEAVY) == set()


def test_a_baseline_without_the_harness_names_the_fix(tmp_path):
    """The library's registry holds vSGD's rules; a baseline's name says how to get it."""
    code = ("from vsgd import get_rule\nassert get_rule('vsgd_l').name == 'vsgd_l'\n"
            "try:\n    get_rule('sgd')\nexcept ValueError as e:\n    print(e)\n")
    done = _run(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Unknown optimizer 'sgd'" in done.stdout and "import baselines" in done.stdout
