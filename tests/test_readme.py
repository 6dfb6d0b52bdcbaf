"""The examples of the README and of the docs (the quickstart and the guides) run as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GUIDES = sorted((ROOT / "docs" / "guides").glob("*.md"))
OWN_DATA = ROOT / "docs" / "guides" / "own-data.md"


def _blocks(kind: str, page: Path = README) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", page.read_text(), flags=re.S)


def test_readme_tour_runs(capsys):
    blocks = _blocks("python")
    assert blocks, "README has no python block"
    for code in blocks:
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    assert "16" in capsys.readouterr().out.split()  # the NFE of 8 midpoint steps


def test_docs_examples_run(capsys):
    """Every python block of the quickstart and the guides, each in a fresh namespace."""
    assert GUIDES, "docs/guides has no page"
    for page in [ROOT / "docs" / "index.md", *GUIDES]:
        for code in _blocks("python", page):
            exec(compile(code, str(page), "exec"), {"__name__": "docs"})
    assert "16" in capsys.readouterr().out.split()  # the quickstart's tour prints its NFE


def test_readme_custom_network_and_dataset_run_in_fresh_processes(tmp_path):
    """The "your own data and network" guide's example: at most 25 lines, saved as ringnet.py,
    trained by running it, loaded by fm.load in a fresh process and sampled by `flowmatch
    sample`, as the guide's commands say (run here line by line)."""
    text = OWN_DATA.read_text()
    code = next(b for b in _blocks("python", OWN_DATA) if '@fm.models.register("ringnet")' in b)
    assert len(code.strip().splitlines()) <= 25
    (tmp_path / "ringnet.py").write_text(code)
    after = text[text.index(code) + len(code) :]
    commands = re.search(r"```bash\n(.*?)```", after, flags=re.S).group(1)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    lines = [line.split("  #")[0].strip() for line in commands.strip().splitlines()]
    assert [line.split()[0] for line in lines] == ["python", "python", "flowmatch"]
    outputs = []
    for line in lines:
        line = (
            line.replace("python ", f"{sys.executable} ", 1) if line.startswith("python") else line
        )
        done = subprocess.run(
            line, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, (line, done.stderr[-2000:])
        outputs.append(done.stdout)
    assert outputs[1].strip() == "AffinePath(Cosine())"  # the loaded model knows its path
    assert (tmp_path / "ring.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "runs" / "ring" / "model" / "config.json").is_file()
