"""Overhead of flowmatch's training step and fixed-step samplers over the bare network (CPU).

The targets: a training step (independent coupling) costs at most
1.03x the same model's bare forward + backward + AdamW step, and at most 1.3x with exact
minibatch OT at batch 256; a fixed-step sampler costs at most 1.03x its NFE bare forwards.
This script measures all of them in one run:

* **train**: one ``FlowMatchingLoss(AffinePath())`` step of the net in its ``FlowModel`` (as
  the trainer and ``fm.train`` run it: noise draw, time draw, path, target, MSE, backward,
  AdamW) vs a bare step ``mse(model(x, t), target)`` on pre-made tensors of the
  same shapes. Both are fed the same pre-sampled data batch x1, so only the flow matching
  machinery differs. Each variant has its own model and optimizer (same initialization).
  ``MLP(dim=2, hidden=256, depth=3)``, x1 ~ N(0, I), target 1.03.
* **train with a coupling**: the same measurement (same bare step as the denominator, batch
  256) with ``FlowMatchingLoss(AffinePath(), coupling=...)``, so the step also pairs the fresh
  noise batch x0 with x1 every step. The 2-D rows are fed a fixed checkerboard batch
  (``sample_toy("checkerboard", 256)``; the OT solve time depends on the data):
  ``MinibatchOT("exact")`` (target 1.3), ``MinibatchOT("sinkhorn")`` (default reg) and
  ``SchrodingerBridge(0.5)`` (no target, reported for information). One more exact-OT row
  (target 1.3) runs at data dimension 64, ``MLP(dim=64, hidden=256, depth=3)`` on
  x1 ~ N(2, I) with its own 64-D bare step, because the exact assignment solver changes above
  dimension 16 (``_EMD_MAX_DIM`` in ``flowmatch.ot``: POT's network simplex below,
  scipy's ``linear_sum_assignment`` above).
* **sample**: ``fm.sample(FlowModel(model), x0, steps=100, method="euler")`` and
  ``method="midpoint", steps=50`` (both NFE 100) vs 100 bare ``model(x, t)`` forwards with a
  pre-made t, all under ``torch.no_grad``.

Timing: after a warm-up, ``repeats`` rounds each time one block of work per variant with
``time.perf_counter``; the order of the two variants alternates between rounds (A B, B A, ...)
so that slow drift of a noisy machine hits both alike. The ratio is median(block A) /
median(block B); the paired ratio, the median of the per-round ratios A_i / B_i, cancels drift
between rounds better, and its interquartile range is the reported spread. On a busy 2-core
machine the ratio moves by 1-2% from run to run; compare against the target with that in mind.

Run ``python benchmarks/train_overhead.py`` (``--quick`` for a smoke run); the table is printed
and written to the "## Overhead (CPU)" section of ``benchmarks/RESULTS.md``, followed by the
peer figure of issue 4 (TorchCFM's exact OT) for context.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

import flowmatch as fm
from flowmatch.atomic import atomic_path
from flowmatch.couplings import Coupling, MinibatchOT, SchrodingerBridge
from flowmatch.data.toy2d import sample_toy

SECTION_HEADER = "## Overhead (CPU)"
DEFAULT_OUT = Path(__file__).resolve().parent / "RESULTS.md"
TARGET = 1.03
"""The target for both the training step and the fixed-step samplers."""
OT_TARGET = 1.3
"""The target for a training step with exact minibatch OT at batch 256."""
PEER_NOTE = (
    "TorchCFM's exact OT (POT emd, pairs resampled with replacement) measured 3.8x a bare "
    "step on this machine class (issue 4)"
)
"""The peer figure printed under the table, for context (not measured by this script)."""

DIM, HIDDEN, DEPTH = 2, 256, 3
TRAIN_BATCH = 256
HIGH_DIM = 64
"""Data dimension of the high-dimensional exact-OT row (above ``_EMD_MAX_DIM`` = 16)."""
SHIFT = 2.0
"""Mean of every coordinate of the high-dimensional Gaussian data, N(SHIFT, I)."""
SAMPLER_BATCHES: tuple[int, ...] = (256, 5000)
SAMPLER_NFE = 100
SAMPLER_BLOCK_SECONDS = 0.2
"""A sampler block repeats whole sampler calls until it lasts about this long (at least one)."""


@dataclass(frozen=True)
class Timing:
    """Block times of two interleaved variants, A (flowmatch) and B (bare), in seconds."""

    a: tuple[float, ...]
    b: tuple[float, ...]

    @property
    def ratio(self) -> float:
        """median(A) / median(B)."""
        return statistics.median(self.a) / statistics.median(self.b)

    @property
    def ratios(self) -> list[float]:
        """Per-round ratios A_i / B_i."""
        return [a / b for a, b in zip(self.a, self.b, strict=True)]

    @property
    def paired_ratio(self) -> float:
        """Median of the per-round ratios: cancels drift between rounds better than ``ratio``."""
        return statistics.median(self.ratios)

    @property
    def iqr(self) -> tuple[float, float]:
        """25th and 75th percentile of the per-round ratios."""
        r = sorted(self.ratios)
        if len(r) == 1:
            return r[0], r[0]
        q = statistics.quantiles(r, n=4, method="inclusive")
        return q[0], q[2]


@dataclass(frozen=True)
class Result:
    """One row of the table: per-unit median times (ms) and the ratio against the target."""

    name: str
    unit: str
    per_block: int
    timing: Timing
    target: float | None = TARGET
    """The bar for ``ratio``; None for a row reported for information only (no target)."""

    @property
    def ms_a(self) -> float:
        return 1e3 * statistics.median(self.timing.a) / self.per_block

    @property
    def ms_b(self) -> float:
        return 1e3 * statistics.median(self.timing.b) / self.per_block

    @property
    def ratio(self) -> float:
        return self.timing.ratio

    @property
    def passed(self) -> bool:
        """``ratio <= target``; True for a row without a target."""
        return self.target is None or self.ratio <= self.target


def measure_interleaved(
    fn_a: Callable[[], object],
    fn_b: Callable[[], object],
    *,
    repeats: int,
    block: int,
    warmup: int,
) -> Timing:
    """Time ``block`` calls of fn_a and of fn_b, ``repeats`` times, alternating their order.

    Args:
        fn_a, fn_b: the two variants, called with no arguments.
        repeats: number of rounds R (one block of each variant per round).
        block: calls per block S.
        warmup: calls of each variant before timing.

    Returns:
        :class:`Timing` with R block times per variant.
    """
    if repeats < 1 or block < 1 or warmup < 0:
        raise ValueError(
            f"need repeats >= 1, block >= 1, warmup >= 0, got {repeats, block, warmup}"
        )
    for _ in range(warmup):
        fn_a()
        fn_b()
    times: dict[str, list[float]] = {"a": [], "b": []}
    fns = {"a": fn_a, "b": fn_b}
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()  # a collection inside one block but not the other is noise, not overhead
    try:
        for r in range(repeats):
            for key in ("a", "b") if r % 2 == 0 else ("b", "a"):
                fn = fns[key]
                start = time.perf_counter()
                for _ in range(block):
                    fn()
                times[key].append(time.perf_counter() - start)
    finally:
        if was_enabled:
            gc.enable()
    return Timing(tuple(times["a"]), tuple(times["b"]))


DATA_KINDS: tuple[str, ...] = ("gaussian", "checkerboard", "shifted")
"""Training data batches: N(0, I), the 2-D checkerboard toy set, N(SHIFT, I)."""


def make_data(kind: str, batch: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """One pre-sampled data batch x1 of shape (batch, dim) of the given kind (DATA_KINDS)."""
    if kind == "gaussian":
        return torch.randn(batch, dim, generator=generator)
    if kind == "shifted":
        return torch.randn(batch, dim, generator=generator) + SHIFT
    if kind == "checkerboard":
        if dim != 2:
            raise ValueError(f"the checkerboard data is 2-D, got dim={dim}")
        return sample_toy("checkerboard", batch, generator=generator)
    raise ValueError(f"data kind must be one of {DATA_KINDS}, got {kind!r}")


@dataclass(frozen=True)
class TrainCase:
    """One training-step row: its coupling (None: independent), data, dimension and target."""

    label: str
    coupling: Coupling | None = None
    data: str = "gaussian"
    dim: int = DIM
    target: float | None = TARGET

    def name(self, batch: int) -> str:
        """The row name, e.g. "train step, exact OT, checkerboard 2-D, B=256"."""
        return f"{self.label}, B={batch}"


TRAIN_CASES: tuple[TrainCase, ...] = (
    TrainCase("train step"),
    TrainCase(
        "train step, exact OT, checkerboard 2-D",
        MinibatchOT("exact"),
        "checkerboard",
        target=OT_TARGET,
    ),
    TrainCase(
        f"train step, sinkhorn OT (reg {MinibatchOT('sinkhorn').reg:g}), checkerboard 2-D",
        MinibatchOT("sinkhorn"),
        "checkerboard",
        target=None,
    ),
    TrainCase(
        "train step, SB (sigma 0.5), checkerboard 2-D",
        SchrodingerBridge(0.5),
        "checkerboard",
        target=None,
    ),
    TrainCase(
        f"train step, exact OT, N({SHIFT:g}, I) {HIGH_DIM}-D",
        MinibatchOT("exact"),
        "shifted",
        HIGH_DIM,
        target=OT_TARGET,
    ),
)
"""The training rows of the report, in table order (the first one is the independent step)."""


def make_train_steps(
    batch: int = TRAIN_BATCH,
    *,
    seed: int = 0,
    coupling: Coupling | None = None,
    data: str = "gaussian",
    dim: int = DIM,
) -> tuple[Callable[[], None], Callable[[], None]]:
    """The flowmatch training step and the bare one, each with its own model and AdamW.

    Both models, ``MLP(dim=dim, hidden=256, depth=3)``, start from the same initialization;
    both steps see the same pre-sampled data batch x1 (B, dim) of kind ``data``. The bare step
    regresses ``model(x, t)`` on a fixed target with pre-made x (B, dim), t (B,) and target
    (B, dim); it is the same whatever the coupling or data.

    Args:
        batch: batch size B.
        seed: seeds the models' initialization and the pre-made tensors.
        coupling: the coupling of the flowmatch step's loss; independent when None.
        data: kind of x1, one of DATA_KINDS.
        dim: data dimension.

    Returns:
        (flowmatch_step, bare_step), callables of no arguments.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model_fm = fm.models.MLP(dim=dim, hidden=HIDDEN, depth=DEPTH)
    model_bare = copy.deepcopy(model_fm)
    flow_fm = fm.FlowModel(model_fm)  # what the trainer trains: the net in its FlowModel
    opt_fm = torch.optim.AdamW(flow_fm.parameters())
    opt_bare = torch.optim.AdamW(model_bare.parameters())
    loss_fn = fm.FlowMatchingLoss(fm.AffinePath(), coupling=coupling)
    x1 = make_data(data, batch, dim, gen)
    x = torch.randn(batch, dim, generator=gen)
    t = torch.rand(batch, generator=gen)
    target = torch.randn(batch, dim, generator=gen)

    def flowmatch_step() -> None:
        loss = loss_fn(flow_fm, x1)
        opt_fm.zero_grad(set_to_none=True)
        loss.backward()
        opt_fm.step()

    def bare_step() -> None:
        out = model_bare(x, t)
        loss = ((out - target) ** 2).mean()
        opt_bare.zero_grad(set_to_none=True)
        loss.backward()
        opt_bare.step()

    return flowmatch_step, bare_step


def make_sampler_calls(
    batch: int, *, method: str = "euler", nfe: int = SAMPLER_NFE, seed: int = 0
) -> tuple[Callable[[], None], Callable[[], None]]:
    """One ``fm.sample`` call of ``nfe`` model evaluations and ``nfe`` bare forwards.

    Args:
        batch: number of samples B; x0 has shape (B, 2).
        method: a fixed-step method of :func:`flowmatch.solve_ode`; steps = nfe / stages.
        nfe: model evaluations per call.

    Returns:
        (sample_call, bare_call), callables of no arguments, both under ``torch.no_grad``.
    """
    stages = fm.solvers.nfe_of(method, 1)
    if nfe % stages:
        raise ValueError(f"nfe={nfe} is not a multiple of the {stages} stages of {method!r}")
    steps = nfe // stages
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = fm.models.MLP(dim=DIM, hidden=HIDDEN, depth=DEPTH)
    x0 = torch.randn(batch, DIM, generator=gen)
    t = torch.rand(batch, generator=gen)

    flow = fm.FlowModel(model)  # what fm.load returns

    def sample_call() -> None:
        with torch.no_grad():
            fm.sample(flow, x0, steps=steps, method=method)

    def bare_call() -> None:
        with torch.no_grad():
            for _ in range(nfe):
                model(x0, t)

    return sample_call, bare_call


def measure_train(
    *,
    repeats: int = 30,
    steps: int = 50,
    warmup: int = 50,
    batch: int = TRAIN_BATCH,
    case: TrainCase = TRAIN_CASES[0],
) -> Result:
    """The training step overhead: flowmatch step vs bare step, blocks of ``steps`` steps.

    Args:
        case: the row (coupling, data, dimension, target); the independent step by default.
    """
    fm_step, bare_step = make_train_steps(
        batch, coupling=case.coupling, data=case.data, dim=case.dim
    )
    timing = measure_interleaved(fm_step, bare_step, repeats=repeats, block=steps, warmup=warmup)
    return Result(case.name(batch), "step", steps, timing, case.target)


def measure_sampler(
    batch: int,
    *,
    method: str = "euler",
    nfe: int = SAMPLER_NFE,
    repeats: int = 30,
    warmup: int = 2,
    block: int | None = None,
) -> Result:
    """The sampler overhead: ``fm.sample`` (NFE ``nfe``) vs ``nfe`` bare forwards.

    Args:
        block: sampler calls per block; by default as many as fill about
            ``SAMPLER_BLOCK_SECONDS`` (at least one), judged from the warm-up.
    """
    sample_call, bare_call = make_sampler_calls(batch, method=method, nfe=nfe)
    if block is None:
        for _ in range(max(warmup, 1)):
            sample_call()
            bare_call()
        start = time.perf_counter()
        bare_call()
        block = max(1, round(SAMPLER_BLOCK_SECONDS / (time.perf_counter() - start)))
        warmup = 0
    timing = measure_interleaved(
        sample_call, bare_call, repeats=repeats, block=block, warmup=warmup
    )
    steps = nfe // fm.solvers.nfe_of(method, 1)
    return Result(f"sample {method} {steps} steps (NFE {nfe}), B={batch}", "call", block, timing)


def run_all(
    *,
    repeats: int = 30,
    steps: int = 50,
    quick: bool = False,
    log: Callable[[str], None] = print,
) -> list[Result]:
    """Every measurement of the report; ``quick`` makes each one tiny (for smoke tests)."""
    if quick:
        repeats, steps = 3, 5
    warmup = 3 if quick else 50
    batches = SAMPLER_BATCHES[:1] if quick else SAMPLER_BATCHES
    results = []
    for case in TRAIN_CASES:
        log(f"{case.label}: {repeats} rounds of {steps} steps per variant ...")
        results.append(measure_train(repeats=repeats, steps=steps, warmup=warmup, case=case))
    for batch in batches:
        for method in ("euler", "midpoint"):
            log(f"sampler {method}, B={batch}: {repeats} rounds ...")
            results.append(
                measure_sampler(
                    batch, method=method, repeats=repeats, warmup=1, block=1 if quick else None
                )
            )
    return results


def machine_facts() -> dict[str, str]:
    """CPU model, core count, load average, torch version and threads, Python version, OS."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    try:
        load = "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        load = "load average unknown"
    return {
        "cpu": cpu,
        "load": load,
        "cores": f"{os.cpu_count()} logical, {usable} usable",
        "torch": f"{torch.__version__}, {torch.get_num_threads()} threads",
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def format_table(results: Sequence[Result]) -> str:
    """A Markdown table of the results (readable as plain text too)."""
    head = (
        "| measurement | flowmatch (ms) | bare (ms) | ratio | paired ratio (IQR) | target |\n"
        "|---|---:|---:|---:|---:|---:|"
    )
    rows = []
    for r in results:
        q25, q75 = r.timing.iqr
        if r.target is None:
            target = "-"
        else:
            target = f"<= {r.target:.2f} {'ok' if r.passed else 'ABOVE'}"
        rows.append(
            f"| {r.name} | {r.ms_a:.3f} /{r.unit} | {r.ms_b:.3f} | {r.ratio:.3f} | "
            f"{r.timing.paired_ratio:.3f} ({q25:.3f}-{q75:.3f}) | {target} |"
        )
    return "\n".join([head, *rows])


def render_section(
    results: Sequence[Result],
    *,
    command: str,
    facts: dict[str, str] | None = None,
    when: datetime.datetime | None = None,
) -> str:
    """The "## Overhead (CPU)" section of RESULTS.md, ending with a newline."""
    facts = facts if facts is not None else machine_facts()
    when = when if when is not None else datetime.datetime.now(datetime.timezone.utc)
    r0 = results[0]
    lines = [
        SECTION_HEADER,
        "",
        f"Measured {when.strftime('%Y-%m-%d %H:%M UTC')} on {facts['cpu']} "
        f"({facts['cores']}; {facts['load']} before the run); torch {facts['torch']}; "
        f"Python {facts['python']}; {facts['os']}.",
        "",
        f"Reproduce: `{command}`",
        "",
        "flowmatch vs bare network, float32 on CPU, `MLP(dim=2, hidden=256, depth=3)`. Train: "
        "`FlowMatchingLoss(AffinePath())` + AdamW step of the net in its `FlowModel` vs "
        "`mse(model(x, t), target)` + AdamW step on pre-made tensors (ms per step), "
        "x1 ~ N(0, I). Train with a coupling: "
        '`FlowMatchingLoss(AffinePath(), coupling=...)` with `MinibatchOT("exact")`, '
        '`MinibatchOT("sinkhorn")` (default reg) or `SchrodingerBridge(0.5)`, which pairs '
        "each step's fresh noise batch with a fixed checkerboard batch "
        '(`sample_toy("checkerboard", 256)`), vs the same bare step; the 64-D exact-OT row '
        f"uses `MLP(dim={HIGH_DIM}, hidden=256, depth=3)`, x1 ~ N({SHIFT:g}, I) and a "
        f"{HIGH_DIM}-D bare step (above dimension 16 the exact solver is scipy's "
        '`linear_sum_assignment` instead of POT\'s network simplex). Target "-": reported '
        "for information. Sample: `fm.sample` of a `FlowModel` with NFE 100 vs 100 bare "
        "`model(x, t)` forwards under `no_grad` (ms per call). Interleaved blocks, "
        f"{len(r0.timing.a)} rounds, alternating order; ratio = median(flowmatch block) / "
        "median(bare block) (the verdict); paired ratio = median of the per-round ratios "
        "flowmatch_i / bare_i, with their 25th-75th percentile (IQR).",
        "",
        format_table(results),
        "",
        f"For context: {PEER_NOTE}.",
        "",
    ]
    return "\n".join(lines)


def replace_section(text: str, section: str, header: str = SECTION_HEADER) -> str:
    """Replace the section starting at the line ``header`` (up to the next "## " line).

    The section is appended when absent; a new document starts with "# Benchmark results".
    """
    section = section.rstrip("\n") + "\n"
    if not text.strip():
        return "# Benchmark results\n\n" + section
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == header), None)
    if start is None:
        return text.rstrip("\n") + "\n\n" + section
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    after = "".join(lines[end:])
    return "".join(lines[:start]) + section + ("\n" + after if after else "")


def section_intro(header: str, command: str, setting: str, facts: dict[str, str]) -> list[str]:
    """The first lines of a RESULTS.md section: its header, when and on what machine it was
    measured (with ``setting``, e.g. the threads), and the command that reproduces it."""
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [
        header,
        "",
        f"Measured {when} on {facts['cpu']} ({facts['cores']}; {facts['load']} before the "
        f"run); torch {torch.__version__}; {setting}.",
        "",
        f"Reproduce: `{command}`",
        "",
    ]


def write_section(path: str | os.PathLike[str], section: str, header: str = SECTION_HEADER) -> None:
    """Write ``section`` (starting at the line ``header``) into the Markdown file at ``path``
    atomically (temp file + replace); the other benchmarks write their sections with it too."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    new = replace_section(old, section, header)
    with atomic_path(path) as tmp:
        tmp.write_text(new)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=30, help="interleaved rounds (default 30)")
    p.add_argument("--steps", type=int, default=50, help="training steps per block (default 50)")
    p.add_argument("--quick", action="store_true", help="a few seconds' smoke run")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown file to update")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.steps < 1:
        p.error("--repeats and --steps must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> list[Result]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    facts = machine_facts()  # before the run: its load average says how busy the machine was
    log(f"{facts['cpu']}, {facts['cores']}, {facts['load']}, torch {facts['torch']}")
    results = run_all(repeats=args.repeats, steps=args.steps, quick=args.quick, log=log)
    table = format_table(results)
    print(table)
    command = " ".join(["python benchmarks/train_overhead.py", *argv])
    write_section(args.out, render_section(results, command=command, facts=facts))
    log(f"wrote {SECTION_HEADER!r} to {args.out}")
    return results


if __name__ == "__main__":
    main()
