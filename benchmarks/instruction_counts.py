"""CPU instructions of one sampler call and one training step, for A/B checks of a change.

Timings on a shared 2-core machine move by 5-10% from run to run; instruction counts do not.
Run this under callgrind twice, with ``k`` and ``k + 10`` repetitions, and divide the
difference of the two totals by 10 (the import and warm-up cancel)::

    for k in 2 12; do
      OMP_NUM_THREADS=1 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python benchmarks/instruction_counts.py sample $k 2>&1 | grep "I   refs"
    done

``sample``: ``fm.sample`` of a ``FlowModel(MLP(2, 256, 3))``, B=256, 20 Euler steps.
``step``: ``FlowMatchingLoss`` + backward + AdamW on it, B=256. (Code from before
FlowModel passes the bare MLP.) Results are in RESULTS.md, "Overhead (CPU)".
"""

from __future__ import annotations

import sys

import torch

import flowmatch as fm


def main(what: str, k: int) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = fm.models.MLP(dim=2, hidden=256, depth=3)
    model = fm.FlowModel(net) if hasattr(fm, "FlowModel") else net
    x0, x1 = torch.randn(256, 2), torch.randn(256, 2)
    loss_fn = fm.FlowMatchingLoss()
    opt = torch.optim.AdamW(model.parameters())

    def sample() -> None:
        with torch.no_grad():
            fm.sample(model, x0, steps=20, method="euler")

    def step() -> None:
        loss = loss_fn(model, x1)
        opt.zero_grad()
        loss.backward()
        opt.step()

    fn = {"sample": sample, "step": step}[what]
    with torch.no_grad():  # warm-up: a short sample and a first step (AdamW's state)
        fm.sample(model, x0, steps=2, method="euler")
    step()
    for _ in range(k):
        fn()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("sample", "step") or not sys.argv[2].isdigit():
        sys.exit("usage: python benchmarks/instruction_counts.py sample|step REPEATS")
    main(sys.argv[1], int(sys.argv[2]))
