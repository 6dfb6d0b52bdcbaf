"""docs/coming_from.md runs as written, and `import flowmatch` (with fm.interop) loads none
of the peer libraries."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "coming_from.md"


def test_import_flowmatch_loads_no_peer_library():
    code = (
        "import sys, flowmatch as fm; fm.interop.time_grid_from_diffusers({}, 4); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'diffusers', 'torchcfm', 'flow_matching', 'torchdyn', 'transformers'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_page_examples_run(one_thread):
    for name in ("diffusers", "torchcfm", "flow_matching"):
        pytest.importorskip(name, reason=f"{name} is not installed (see docs/coming_from.md)")
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert len(blocks) >= 6
    namespace = {"__name__": "coming_from"}
    for code in blocks:
        exec(compile(code, str(PAGE), "exec"), namespace)


def test_the_page_refers_to_nothing_outside_the_repository():
    text = PAGE.read_text()
    assert "../" not in text and "http" not in text
