"""The layout's rules: small modules, and a core that knows nothing of files, configs,
training, evaluation, plots or the command line."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "flowmatch"
CORE = [
    "schedules.py",
    "paths.py",
    "solvers.py",
    "samplers.py",
    "sde.py",
    "diffusion.py",
    "likelihood.py",
    "sampling.py",
    "interpolation.py",
    "flow.py",
    "loss.py",
    "meanflow.py",
    "couplings.py",
    "ot.py",
    "time.py",
    "oracle.py",
    "sources.py",
    "rectify.py",
    "discrete/path.py",
    "discrete/categorical.py",
    "discrete/model.py",
    "discrete/loss.py",
    "discrete/sampler.py",
    "discrete/elbo.py",
    "discrete/oracle.py",
    "discrete/mixed_model.py",
    "discrete/mixed_sampling.py",
]
OUTER = (
    "flowmatch.train",
    "flowmatch.app",
    "flowmatch.cli",
    "flowmatch.evaluation",
    "flowmatch.viz",
)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("name", CORE)
def test_the_core_imports_nothing_from_the_outer_layers(name):
    outer = sorted(m for m in _imports(SRC / name) if m.startswith(OUTER))
    assert not outer, f"{name} imports {outer}"


def test_no_module_is_over_400_lines():
    sizes = {p.relative_to(SRC): len(p.read_text().splitlines()) for p in SRC.rglob("*.py")}
    assert sizes and not {p: n for p, n in sizes.items() if n > 400}


def test_import_flowmatch_loads_neither_plots_nor_training_nor_the_cli():
    code = (
        "import sys, flowmatch as fm; "
        "bad = [m for m in sys.modules if m.startswith(('matplotlib', 'flowmatch.app', "
        "'flowmatch.cli', 'flowmatch.evaluation', 'flowmatch.viz', 'typer', 'pydantic')) "
        "or (m.startswith('flowmatch.train.') )]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_test_files_have_unique_names():
    """The tests are not packages, so pytest imports each file by its base name: two files
    with one name in different folders stop the whole run at collection."""
    tests = Path(__file__).resolve().parent
    seen: dict[str, list[str]] = {}
    for path in tests.rglob("test_*.py"):
        if not (path.parent / "__init__.py").exists():
            seen.setdefault(path.name, []).append(str(path.relative_to(tests)))
    assert not {name: paths for name, paths in seen.items() if len(paths) > 1}
