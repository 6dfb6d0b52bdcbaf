"""Couplings off the critical path: a training step with minibatch OT paired in a loader worker
(``flowmatch.train.pipeline.StreamBatches``) vs in the training process vs a bare step (CPU).

The target: with 1 training thread and 1 loader worker (2 CPU cores), a step with exact
minibatch OT costs at most 1.3x the bare step. Three workloads, each with its own bare step:

* **2-D checkerboard, B=256**: ``MLP(dim=2, hidden=256, depth=3)`` (the model of
  ``benchmarks/train_overhead.py``); the pool is 100,000 checkerboard points. The exact
  solver here is POT's network simplex.
* **64-D, B=256**: the same MLP at dimension 64 on N(2, I) points (scipy's
  ``linear_sum_assignment`` above dimension 16).
* **Fashion-MNIST 28x28, B=64**: the class-conditional U-Net of ``configs/fashion.yaml``
  (``UNet(1, 28, base=16, multipliers=(1, 2, 2))``, 290k parameters)
  on the uint8 images (the real set when installed, else random uint8 images of that shape,
  said in the output), OT on the 784-D flattened images.

Variants, per workload (ms per training step):

* **bare**: ``mse(model(x, t), target)`` + backward + AdamW on pre-made tensors of the batch's
  shapes: the network's cost alone, the denominator of every ratio.
* **in-process OT**: ``FlowMatchingLoss(coupling=MinibatchOT("exact"))`` on batches of the
  stream with no workers: drawing, decoding and the OT solve happen in the training process
  before each step (what a run without ``data.workers`` does).
* **OT in 1 worker**: the same batches from ``StreamBatches(workers=1,
  coupling=MinibatchOT("exact"))``; the loss pairs nothing. The worker draws, decodes and
  pairs batch k+1 while step k trains, so a step costs max(train, pair) once the pipeline is
  full.

Timing: the training process runs 1 thread, the worker 1 thread. Blocks of ``steps`` steps per
variant, ``repeats`` rounds, the variants' order rotating between rounds. A worker runs ahead
of training by at most 2 batches (``prefetch``); before each of its blocks the stream is
pulled ``prefetch`` batches untimed, so that a block starts with an empty queue rather than
with batches prepared while the other variants were timed. Ratio = median(block) /
median(bare block).

Run ``python benchmarks/loader_overhead.py`` (``--quick`` for a smoke run); the table is
printed and written to the "## Couplings in loader workers (CPU)" section of
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import copy
import gc
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

import flowmatch as fm
from flowmatch.couplings import MinibatchOT
from flowmatch.data.toy2d import sample_toy
from flowmatch.train.pipeline import StreamBatches

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_overhead import machine_facts, section_intro, write_section

SECTION_HEADER = "## Couplings in loader workers (CPU)"
DEFAULT_OUT = Path(__file__).resolve().parent / "RESULTS.md"
TARGET = 1.3
PREFETCH = 2
VARIANTS = ("bare", "in-process OT", "OT in 1 worker")


@dataclass
class Workload:
    """A network, its training pool and batch size."""

    name: str
    net: torch.nn.Module
    pool: torch.Tensor
    labels: torch.Tensor | None
    batch: int


def workloads(quick: bool) -> list[Workload]:
    """The three workloads of the module docstring (tiny pools and batches with ``quick``)."""
    torch.manual_seed(0)
    n = 2_000 if quick else 100_000
    mlp = {"hidden": 256, "depth": 3}
    out = [
        Workload(
            "2-D checkerboard",
            fm.models.MLP(dim=2, **mlp),
            sample_toy("checkerboard", n, generator=torch.Generator().manual_seed(0)),
            None,
            32 if quick else 256,
        ),
        Workload(
            "64-D N(2, I)",
            fm.models.MLP(dim=64, **mlp),
            torch.randn(n, 64, generator=torch.Generator().manual_seed(0)) + 2,
            None,
            32 if quick else 256,
        ),
    ]
    images, labels, which = fashion_pool(quick)
    unet = fm.models.UNet(1, 28, base=8 if quick else 16, multipliers=(1, 2, 2), num_classes=10)
    batch = 16 if quick else 64
    out.append(Workload(f"Fashion-MNIST 28x28 ({which})", unet, images, labels, batch))
    return out


def fashion_pool(quick: bool) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Fashion-MNIST's uint8 training images and labels, or random ones of the same shape."""
    from flowmatch.data.fashion import fashion_mnist_dir, load_fashion_mnist

    if fashion_mnist_dir() is not None and not quick:
        data = load_fashion_mnist(uint8=True)
        return data.train, data.train_labels, "the real set"
    g = torch.Generator().manual_seed(0)
    n = 500 if quick else 60_000
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
    return images, torch.randint(0, 10, (n,), generator=g), "random uint8 images"


def make_steps(w: Workload) -> dict[str, tuple[Callable[[], None], StreamBatches | None]]:
    """One training step per variant, each with its own copy of the net and AdamW."""
    gen = torch.Generator().manual_seed(1)
    shape = tuple(w.pool.shape[1:])
    x = torch.randn(w.batch, *shape, generator=gen)
    t = torch.rand(w.batch, generator=gen)
    target = torch.randn(w.batch, *shape, generator=gen)
    cond = w.labels[: w.batch] if w.labels is not None else None
    steps: dict[str, tuple[Callable[[], None], StreamBatches | None]] = {}

    bare = copy.deepcopy(w.net)
    opt_bare = torch.optim.AdamW(bare.parameters())

    def bare_step() -> None:
        out = bare(x, t, cond=cond) if cond is not None else bare(x, t)
        loss = torch.nn.functional.mse_loss(out, target)
        opt_bare.zero_grad(set_to_none=True)
        loss.backward()
        opt_bare.step()

    steps["bare"] = (bare_step, None)
    for variant, workers in (("in-process OT", 0), ("OT in 1 worker", 1)):
        flow = fm.FlowModel(copy.deepcopy(w.net))
        opt = torch.optim.AdamW(flow.parameters())
        stream = StreamBatches(
            w.pool, w.labels, batch_size=w.batch, seed=0, workers=workers, prefetch=PREFETCH
        )
        if workers:
            stream.coupling = MinibatchOT("exact")  # pairs in the worker; the loss does not
            loss_fn = fm.FlowMatchingLoss(fm.AffinePath())
        else:
            loss_fn = fm.FlowMatchingLoss(fm.AffinePath(), coupling=MinibatchOT("exact"))

        def step(stream: StreamBatches = stream, loss_fn=loss_fn, flow=flow, opt=opt) -> None:
            x0, x1, c = stream.next(stream.batch_size, gen)
            loss = loss_fn(flow, x1, cond=c, x0=x0, generator=gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        steps[variant] = (step, stream if workers else None)
    return steps


def time_workload(w: Workload, *, repeats: int, steps: int, warmup: int) -> dict[str, float]:
    """Median ms per step of each variant (see the module docstring for the protocol)."""
    fns = make_steps(w)
    for fn, _ in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    gc.collect()
    gc.disable()
    try:
        for r in range(repeats):
            order = VARIANTS[r % 3 :] + VARIANTS[: r % 3]
            for variant in order:
                fn, stream = fns[variant]
                if stream is not None:  # drop what the worker prepared while others ran
                    for _ in range(PREFETCH):
                        stream.next(stream.batch_size, torch.Generator())
                start = time.perf_counter()
                for _ in range(steps):
                    fn()
                times[variant].append((time.perf_counter() - start) / steps)
    finally:
        gc.enable()
        for _, stream in fns.values():
            if stream is not None:
                stream.close()
    return {v: 1e3 * statistics.median(ts) for v, ts in times.items()}


def format_table(rows: Sequence[tuple[str, int, dict[str, float]]]) -> str:
    """A Markdown table: ms per step of each variant and the ratios to the bare step."""
    head = (
        "| workload | B | bare (ms) | in-process OT (ms) | ratio | OT in 1 worker (ms) | ratio "
        "| target |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for name, batch, ms in rows:
        r_in, r_w = ms["in-process OT"] / ms["bare"], ms["OT in 1 worker"] / ms["bare"]
        verdict = "ok" if r_w <= TARGET else "ABOVE"
        lines.append(
            f"| {name} | {batch} | {ms['bare']:.2f} | {ms['in-process OT']:.2f} | {r_in:.2f} | "
            f"{ms['OT in 1 worker']:.2f} | {r_w:.2f} | <= {TARGET} {verdict} |"
        )
    return "\n".join(lines)


def render_section(
    table: str, *, command: str, facts: dict[str, str], repeats: int, steps: int
) -> str:
    setting = "1 training thread + 1 loader worker"
    return "\n".join(
        [
            *section_intro(SECTION_HEADER, command, setting, facts),
            "ms per training step, median of "
            f"{repeats} blocks of {steps} steps per variant (rotating order). bare: the net's "
            "forward + backward + AdamW on pre-made tensors. in-process OT: exact minibatch OT "
            "solved in the training process before each step. OT in 1 worker: the same pairing "
            "done by `StreamBatches(workers=1)` while the previous step trains. Ratios are to "
            "the bare step. A worker hides the pairing only up to the step's own length: where "
            "pairing a batch takes longer than training on it, the step waits for the worker.",
            "",
            table,
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> str:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=9, help="rounds (default 9)")
    p.add_argument("--steps", type=int, default=20, help="steps per block (default 20)")
    p.add_argument("--quick", action="store_true", help="a few seconds' smoke run")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown file to update")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.steps < 1:
        p.error("--repeats and --steps must be >= 1")
    repeats, steps, warmup = (2, 3, 2) if args.quick else (args.repeats, args.steps, 10)
    torch.set_num_threads(1)
    facts = machine_facts()
    rows = []
    for w in workloads(args.quick):
        print(f"{w.name}, B={w.batch}: {repeats} rounds of {steps} steps ...", file=sys.stderr)
        rows.append(
            (w.name, w.batch, time_workload(w, repeats=repeats, steps=steps, warmup=warmup))
        )
    table = format_table(rows)
    print(table)
    command = " ".join(["python benchmarks/loader_overhead.py", *argv])
    section = render_section(table, command=command, facts=facts, repeats=repeats, steps=steps)
    write_section(args.out, section, SECTION_HEADER)
    return table


if __name__ == "__main__":
    main()
