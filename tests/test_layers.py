"""The layers of the project import only downwards (docs/architecture.md, "Layout").

    vsgd  <-  baselines  <-  experiments  <-  synthetic  <-  analysis

``vsgd`` is the installed library (torch only); the four others are the reproduction harness, run from the
repository root. A module may import its own layer and the layers to its left, never one to its right:
the library must not need the harness, the lock-step runner must not need the synthetic studies (it reaches
them by ``entry:`` strings of conf/experiment/*.yaml), and nothing but the analysis draws figures.
Every import statement counts, also those inside functions and under ``if TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["vsgd", "baselines", "experiments", "synthetic", "analysis"]


def imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in the file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module.split(".")[0]))
    return out


def upward_imports(layer: str) -> list[str]:
    rank = LAYERS.index(layer)
    return [f"{path.relative_to(ROOT)}:{line} imports {top}"
            for path in sorted((ROOT / layer).rglob("*.py"))
            for line, top in imported_packages(path)
            if top in LAYERS and LAYERS.index(top) > rank]


@pytest.mark.parametrize("layer", LAYERS)
def test_no_upward_import(layer):
    assert (ROOT / layer / "__init__.py").exists(), f"{layer}/ is not a package any more: update LAYERS"
    assert upward_imports(layer) == []


def test_the_check_sees_upward_imports(tmp_path, monkeypatch):
    """The parser finds imports at module level, in functions, and in both import forms."""
    f = tmp_path / "m.py"
    f.write_text("import torch\nfrom vsgd.core import Rule\n\ndef f():\n    import analysis.tables as t\n"
                 "    from experiments import run\n    from . import sibling\n")
    assert imported_packages(f) == [(1, "torch"), (2, "vsgd"), (5, "analysis"), (6, "experiments")]


def test_library_imports_nothing_but_torch_and_the_standard_library():
    """``pip install vsgd`` brings torch only (tests/test_install.py), so ``vsgd`` may import nothing else."""
    import sys

    allowed = set(sys.stdlib_module_names) | {"torch", "vsgd"}
    bad = [f"{p.relative_to(ROOT)}:{line} imports {top}" for p in sorted((ROOT / "vsgd").rglob("*.py"))
           for line, top in imported_packages(p) if top not in allowed]
    assert bad == []


def test_every_experiment_entry_names_a_function_of_the_harness():
    """``experiments.run`` reaches the synthetic studies (and other entries) only through ``entry:`` strings,
    so a move that forgets a config shows here, not in a run: each names a top-level function of a module
    file of a harness layer (read, not imported)."""
    import re

    entries = {}
    for cfg in sorted((ROOT / "conf" / "experiment").glob("*.yaml")):
        m = re.search(r"^entry:\s*([\w.]+):(\w+)\s*$", cfg.read_text(), re.MULTILINE)
        if m:
            entries[cfg.name] = m.groups()
    assert entries, "no conf/experiment/*.yaml has an entry: the check reads nothing"
    for name, (module, fn) in entries.items():
        assert module.split(".")[0] in LAYERS[1:], f"{name}: entry module {module} is not in the harness"
        path = ROOT / (module.replace(".", "/") + ".py")
        assert path.exists(), f"{name}: entry module {module} has no file {path.relative_to(ROOT)}"
        tree = ast.parse(path.read_text())
        assert fn in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, f"{name}: {module} has no {fn}()"
