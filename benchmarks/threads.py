"""CPU threads for small networks: one training step of a 3x256 MLP with 1 and 2 torch threads,
on an idle machine and next to one busy neighbour process (CPU).

The step is ``FlowMatchingLoss`` on ``MLP(dim=2, hidden=256, depth=3)`` at batch 256 with AdamW,
as the trainer runs it. Each setting times ``rounds`` blocks of ``steps`` steps after a warm-up,
alternating 1 and 2 threads between blocks so that drift hits both alike, and reports the
median milliseconds per step and the ratio 2 threads / 1 thread. The neighbour is a second
Python process multiplying 512x512 matrices with 1 thread in a loop (another training job, a
data loader). The figures set the default of ``train.threads`` (``flowmatch.train.threads``).

Run ``OMP_NUM_THREADS= python benchmarks/threads.py`` on an otherwise quiet machine
(``--quick`` for a smoke run); the table is printed and written to the "## CPU threads"
section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import flowmatch as fm

sys.path.insert(0, str(Path(__file__).parent))
from train_overhead import machine_facts, write_section

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SECTION_HEADER = "## CPU threads"
NEIGHBOUR = (
    "import torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512)\n"
    "while True:\n    a = (a @ a).tanh()\n"
)


def _step_time(
    threads: int,
    steps: int,
    model: fm.FlowModel,
    loss: fm.FlowMatchingLoss,
    opt: torch.optim.Optimizer,
    x1: torch.Tensor,
    g: torch.Generator,
) -> float:
    torch.set_num_threads(threads)
    start = time.perf_counter()
    for _ in range(steps):
        value = loss(model, x1, generator=g)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
    return 1000 * (time.perf_counter() - start) / steps  # fmt: skip


def measure(rounds: int, steps: int) -> dict[int, float]:
    """Median ms per step with 1 and 2 threads."""
    torch.manual_seed(0)
    model = fm.FlowModel(fm.models.MLP(dim=2, hidden=256, depth=3))
    loss = fm.FlowMatchingLoss(model.path)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(256, 2, generator=g)
    for threads in (1, 2):
        _step_time(threads, steps, model, loss, opt, x1, g)  # warm-up
    times: dict[int, list[float]] = {1: [], 2: []}
    for r in range(rounds):
        for threads in (1, 2) if r % 2 == 0 else (2, 1):
            times[threads].append(_step_time(threads, steps, model, loss, opt, x1, g))
    return {k: statistics.median(v) for k, v in times.items()}


def _facts() -> str:
    facts = machine_facts()
    return f"{facts['cpu']}, {facts['cores']}, {facts['load']} at the start"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="a smoke run (not written)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    args = parser.parse_args()
    rounds, steps = (2, 5) if args.quick else (args.rounds, args.steps)
    idle = measure(rounds, steps)
    neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR])
    try:
        time.sleep(1.0)
        busy = measure(rounds, steps)
    finally:
        neighbour.kill()
        neighbour.wait()
    rows = [
        "| machine state | 1 thread (ms/step) | 2 threads (ms/step) | 2 / 1 |",
        "|---|---:|---:|---:|",
        f"| idle | {idle[1]:.2f} | {idle[2]:.2f} | {idle[2] / idle[1]:.2f}x |",
        f"| one busy neighbour | {busy[1]:.2f} | {busy[2]:.2f} | {busy[2] / busy[1]:.2f}x |",
    ]
    section = "\n".join(
        [
            SECTION_HEADER,
            "",
            f"`python benchmarks/threads.py` ({_facts()}): one training step of "
            f"`MLP(dim=2, hidden=256, depth=3)` at batch 256 (FlowMatchingLoss + AdamW), median "
            f"of {rounds} blocks of {steps} steps alternating the thread counts.",
            "",
            *rows,
            "",
            "On an idle machine the second thread makes this small step faster; next to one "
            "other busy process it makes it several times slower, because the step waits for "
            "the thread that lost its core. One thread is never far from the best time and two "
            "can be far from it, so runs on the CPU with networks under a million parameters "
            "use 1 thread unless `train.threads` or `OMP_NUM_THREADS` says otherwise "
            "(`flowmatch.train.threads`); on a machine of your own, `train.threads: 2` (or "
            "more) is faster.",
        ]
    )
    print(section)
    if not args.quick:
        write_section(args.results, section, SECTION_HEADER)


if __name__ == "__main__":
    main()
