"""Training cost of a MeanFlow step relative to a flow-matching step, on any device.

One training step (loss, backward, AdamW) of the 3x256 MLP (batch 256, 2-D points) and of the
digits U-Net (32 channels, [1, 2], 10 classes, batch 128, label dropout 0.1), with
``fm.FlowMatchingLoss`` and with ``fm.MeanFlowLoss`` (its JVP), timed in interleaved rounds
in one process after 30 warm-up steps (the device synchronised around each timing); the
ratio is the figure to read, the milliseconds depend on the machine and its load.

Run ``python benchmarks/meanflow_cost.py --device cuda`` (or ``cpu``); prints JSON lines and a
Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

import flowmatch as fm
from flowmatch.meanflow import MeanFlowLoss


def _setup(kind: str, meanflow: bool, device: str) -> tuple[Any, Callable[[], Any], Any]:
    if kind == "mlp":
        model = fm.models.MLP(dim=2, hidden=256, depth=3, two_times=meanflow)
        batch = lambda: (torch.randn(256, 2, device=device), None)  # noqa: E731
        drop: dict[str, Any] = {}
    else:
        model = fm.models.UNet(
            1, 8, base=32, multipliers=(1, 2), num_classes=10, two_times=meanflow
        )
        batch = lambda: (  # noqa: E731
            torch.randn(128, 1, 8, 8, device=device),
            torch.randint(0, 10, (128,), device=device),
        )
        drop = {"cond_dropout": 0.1, "null_cond": 10}
    if meanflow:
        loss_fn: Any = MeanFlowLoss(**drop)
    else:
        loss_fn = fm.FlowMatchingLoss(fm.AffinePath(fm.schedules.Linear()), **drop)
    return model.to(device), batch, loss_fn


def time_steps(kind: str, meanflow: bool, device: str, steps: int, warmup: int = 30) -> float:
    """Milliseconds per training step (after ``warmup`` steps)."""
    torch.manual_seed(0)
    model, batch, loss_fn = _setup(kind, meanflow, device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        x1, cond = batch()
        loss = loss_fn(model, x1, cond=cond)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return 1e3 * (time.perf_counter() - start) / steps


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--models", default="mlp,unet")
    args = p.parse_args(argv)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    rows = []
    for kind in args.models.split(","):
        for rnd in range(args.rounds):
            for meanflow in (False, True):
                ms = time_steps(kind, meanflow, args.device, args.steps, args.warmup)
                rows.append({"model": kind, "meanflow": meanflow, "round": rnd, "ms": ms})
                print(json.dumps(rows[-1]), flush=True)
    print(f"\n{name}, torch {torch.__version__}; median over {args.rounds} interleaved rounds\n")
    print("| model | flow matching ms/step | MeanFlow ms/step | ratio |\n|---|---:|---:|---:|")
    for kind in args.models.split(","):
        fm_ms = statistics.median(r["ms"] for r in rows if r["model"] == kind and not r["meanflow"])
        mf_ms = statistics.median(r["ms"] for r in rows if r["model"] == kind and r["meanflow"])
        print(f"| {kind} | {fm_ms:.2f} | {mf_ms:.2f} | {mf_ms / fm_ms:.2f} |")
    return rows


if __name__ == "__main__":
    main()
