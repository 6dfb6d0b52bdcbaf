"""benchmarks/instruction_counts.py runs the loop it documents, and refuses bad arguments."""

import subprocess
import sys
from pathlib import Path

import torch

from conftest import benchmark_module

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "instruction_counts.py"


def test_the_measured_loops_run_and_train(monkeypatch):
    calls = []
    original = torch.optim.AdamW.step

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", counting)
    with benchmark_module("instruction_counts") as bench:
        bench.main("step", 3)
        assert len(calls) == 4  # the warm-up step and the 3 measured ones
        bench.main("sample", 2)
        assert len(calls) == 5  # sampling runs the warm-up step only


def test_bad_arguments_exit_with_usage():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "walk", "x"], capture_output=True, text=True
    )
    assert done.returncode != 0 and "usage:" in done.stderr
