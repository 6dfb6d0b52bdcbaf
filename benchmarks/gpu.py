"""GPU throughput of flowmatch's training step and sampler against a bare loop and TorchCFM.

At 32x32x3 on random data (throughput does not depend on it), for the DDPM CIFAR-10 U-Net
(``fm.models.UNet``: 128 channels, multipliers [1, 2, 2, 2], 2 residual blocks, attention at
16x16, dropout 0.1) and, when ``flowmatch.models.dit`` can be imported, a DiT-S/2
(``fm.models.DiT``: patch 2, width 384, 12 blocks, 6 heads; else a row says it was skipped):

* **train** (images/s), bf16 autocast, ``torch.compile`` (default on CUDA), channels-last:
  ``flowmatch``: the trainer's own step, the ``TrainLoop`` that ``fm.train`` and ``flowmatch
  train`` run, built as ``fm.train`` builds it (default loss, the library's AdamW with its
  schedule, gradient clipping at 1.0, EMA 0.999, the loss and gradient norm read back every
  step), with ``precision`` and ``compile`` set as the config's ``train.precision`` and
  ``train.compile`` set them, on a channels-last net, timed in blocks of ``TrainLoop.run``;
  ``loss only``: ``FlowMatchingLoss`` on the net in its ``FlowModel`` + fused AdamW, without
  the trainer's bookkeeping (reported to locate a gap, not as the library's step); ``bare``: a
  hand-written step (noise, t, x_t, target, MSE, backward, fused AdamW); ``TorchCFM``:
  ``ConditionalFlowMatcher(sigma=0).sample_location_and_conditional_flow`` + MSE + fused AdamW.
  Every variant trains its own copy of the same initialization on batches drawn with
  replacement from one pool on the device. Target: flowmatch / bare >= 0.95.
* **sample** (images/s): ``fm.sample(FlowModel(net), x0, steps=NFE, method="euler")`` at NFE
  8 and 32 against NFE bare forwards ``net(x0, t)``, under ``no_grad`` and the same autocast,
  with the net eager, ``torch.compile``-d, and compiled with ``mode="reduce-overhead"`` (its
  forwards replayed as CUDA graphs; CUDA only).
* **peak memory** (CUDA): ``torch.cuda.max_memory_allocated`` over a variant's build and
  warm-up (compilation included) minus what was allocated before it: its own weights,
  optimizer state, EMA and activations (sampling: the mode's copy of the net, which the
  flowmatch and bare calls share, and the activations). "-" on CPU.

Timing: after the warm-up, interleaved rounds (one block per variant, the order reversed every
other round, the device synchronised around each block); images/s = images of a block /
median block time. A variant that fails (``torch.compile`` included) leaves its cells "-" and
its row says why ("compile failed: ...").

Run ``python benchmarks/gpu.py`` on a CUDA machine: prints a Markdown table and writes the
"## GPU throughput" section of ``benchmarks/RESULTS.md`` (``--out`` elsewhere); ``--models
unet``, ``--nfe 8``, ``--no-compile`` shorten it. ``python benchmarks/gpu.py --device cpu
--quick`` is a smoke run with tiny networks (fp32, eager) that writes only with ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import gc
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_steps import (
    SAMPLE_MODES,
    TRAIN_VARIANTS,
    Measured,
    Settings,
    allocated,
    build_net,
    data_pool,
    failed,
    one_line,
    prepare,
    sample_block,
    sample_model,
    sample_run,
    time_rounds,
)
from train_overhead import machine_facts, write_section

SECTION_HEADER = "## GPU throughput"
DEFAULT_OUT = Path(__file__).resolve().parent / "RESULTS.md"
TARGET = 0.95
"""flowmatch's training step / the bare step, in images/s."""
NAMES = {"unet": "U-Net", "dit": "DiT"}
COLUMNS = (
    "model",
    "measurement",
    "mode",
    "flowmatch img/s",
    "bare img/s",
    "flowmatch / bare",
    "TorchCFM img/s",
    "flowmatch / TorchCFM",
    "peak GiB (flowmatch / bare / TorchCFM)",
    "note",
)


@dataclass
class Row:
    """One line of the table: flowmatch's variant against the bare one (and TorchCFM's)."""

    model: str
    measurement: str
    mode: str
    ours: Measured | None = None
    bare: Measured | None = None
    cfm: Measured | None = None
    target: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """flowmatch img/s / bare img/s (None when either has no time)."""
        return _ratio(self.ours, self.bare)

    @property
    def ratio_cfm(self) -> float | None:
        return _ratio(self.ours, self.cfm)


def _ratio(a: Measured | None, b: Measured | None) -> float | None:
    x, y = (m.per_second if m is not None else None for m in (a, b))
    return x / y if x is not None and y is not None else None


def _notes(row: Row) -> str:
    """The failures of a row's variants, one message when they all say the same."""
    found = [
        (label, m.note)
        for label, m in (("flowmatch", row.ours), ("bare", row.bare), ("TorchCFM", row.cfm))
        if m is not None and m.note
    ]
    live = [m for m in (row.ours, row.bare, row.cfm) if m is not None and not m.note]
    if found and not live and len({n for _, n in found}) == 1:
        return found[0][1] or ""
    return "; ".join(f"{label}: {note}" for label, note in found)


def measure_model(
    kind: str,
    s: Settings,
    *,
    quick: bool,
    nfes: Sequence[int],
    modes: Sequence[str],
    log: Callable[[str], None],
) -> list[Row]:
    """The training row pair and the sampling rows of one network (or a row saying why not)."""
    try:
        net = build_net(kind, quick)
    except Exception as err:  # e.g. flowmatch.models.dit not written yet
        log(f"{NAMES[kind]}: skipped ({one_line(err)})")
        return [Row(NAMES[kind], "-", "-", note=f"skipped: {one_line(err)}")]
    size = sum(p.numel() for p in net.parameters())
    name = f"{NAMES[kind]} " + (f"{size / 1e6:.1f}M" if size >= 10**6 else f"{size / 1e3:.0f}k")
    data = data_pool(s, 256 if quick else 4096)
    rows = []
    variants: dict[str, Measured] = {}
    for key, build in TRAIN_VARIANTS.items():
        log(f"{name}: train, {key}: building and {s.warmup} warm-up steps ...")
        variants[key] = prepare(functools.partial(build, net, data, s), s, s.warmup, s.compile)
    log(f"{name}: train, {s.rounds} rounds of {s.block} steps per variant ...")
    time_rounds(variants, s, s.block, s.train_batch)
    mode = "compile" if s.compile else "eager"
    b, cfm = variants["bare"], variants["torchcfm"]
    tag = f"B={s.train_batch}, {s.precision}"
    rows.append(Row(name, f"train: TrainLoop, {tag}", mode, variants["flowmatch"], b, cfm, TARGET))
    rows.append(Row(name, f"train: loss + AdamW only, {tag}", mode, variants["loss only"], b, cfm))
    variants.clear()
    _free(s, reset=False)
    warmup = 1 if quick else 3
    for mode in modes:
        compiling = SAMPLE_MODES[mode] is not None
        base = allocated(s)  # the mode's copy of the net is counted in both variants' peaks
        try:
            model = sample_model(net, s, mode)
        except Exception as err:  # torch.compile itself refusing: both variants fail
            model, refused = None, err
        for nfe in nfes:
            log(f"{name}: sample NFE {nfe}, {mode}: {warmup} warm-up calls per variant ...")
            pair = {
                key: failed(refused, s, compiling)
                if model is None
                else prepare(
                    functools.partial(sample_run, model, s, nfe, ours), s, warmup, compiling, base
                )
                for key, ours in (("flowmatch", True), ("bare", False))
            }
            block = 1 if quick else sample_block(pair, s)
            time_rounds(pair, s, block, s.sample_batch)
            measurement = f"sample: euler NFE {nfe}, B={s.sample_batch}, {s.precision}"
            rows.append(Row(name, measurement, mode, pair["flowmatch"], pair["bare"]))
            pair.clear()
        model = None
        _free(s, reset=False)
    del net, data
    _free(s)
    return rows


def _free(s: Settings, reset: bool = True) -> None:
    gc.collect()
    if s.cuda:
        torch.cuda.empty_cache()
    if reset and "torch._dynamo" in sys.modules:
        torch._dynamo.reset()


def _cell(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def _ratio_cell(x: float | None, target: float | None) -> str:
    if x is None or target is None:
        return _cell(x, ".3f")
    return f"{x:.3f} (>= {target:.2f} {'ok' if x >= target else 'BELOW'})"


def _gib(m: Measured | None) -> str:
    return "-" if m is None or m.peak is None else f"{m.peak / 2**30:.2f}"


def format_table(rows: Sequence[Row]) -> str:
    """The Markdown table of the rows (COLUMNS)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|---|---|" + "---:|" * 6 + "---|"]
    for r in rows:
        per_s = [m.per_second if m is not None else None for m in (r.ours, r.bare, r.cfm)]
        peaks = " / ".join(_gib(m) for m in (r.ours, r.bare, r.cfm) if m is not None)
        cells = [
            r.model,
            r.measurement,
            r.mode,
            _cell(per_s[0], ",.0f"),
            _cell(per_s[1], ",.0f"),
            _ratio_cell(r.ratio, r.target),
            _cell(per_s[2], ",.0f"),
            _cell(r.ratio_cfm, ".3f"),
            peaks or "-",
            r.note or _notes(r),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def device_name(s: Settings) -> str:
    if s.cuda:
        return f"{torch.cuda.get_device_name(s.device)} (CUDA {torch.version.cuda})"
    return f"CPU: {machine_facts()['cpu']}"


def render_section(rows: Sequence[Row], s: Settings, *, command: str) -> str:
    """The "## GPU throughput" section of RESULTS.md, ending with a newline."""
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    facts = machine_facts()
    lines = [
        SECTION_HEADER,
        "",
        f"Measured {when} on {device_name(s)}; torch {torch.__version__}; Python "
        f"{facts['python']}; {facts['os']}.",
        "",
        f"Reproduce: `{command}`",
        "",
        f"{s.precision} autocast, {'torch.compile' if s.compile else 'no torch.compile'}, "
        f"{'channels-last' if s.channels_last else 'contiguous'}; {s.warmup} warm-up steps, "
        f"{s.rounds} interleaved rounds of {s.block} steps (sampling: blocks of about 0.25 s); "
        "images/s from the median block. TrainLoop: the trainer's step as `fm.train` runs it "
        "(its AdamW, clipping, EMA, schedule, loss read every step); loss + AdamW only: "
        "`FlowMatchingLoss` + fused AdamW without the trainer's bookkeeping; bare: noise, t, "
        "x_t, target, MSE, backward, fused AdamW; TorchCFM: `ConditionalFlowMatcher(sigma=0)` "
        "+ MSE + fused AdamW. Sampling: `fm.sample` (euler) against NFE bare forwards. Peak "
        "memory: max allocated over a variant's build and warm-up, less what was allocated "
        "before it.",
        "",
        format_table(rows),
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda if any")
    p.add_argument("--quick", action="store_true", help="tiny networks, a few steps (smoke run)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the nets (default: on for CUDA, off for CPU)")  # fmt: skip
    p.add_argument("--precision", choices=("bf16", "fp32"), default=None,
                   help="autocast (default bf16; fp32 for --device cpu --quick)")  # fmt: skip
    p.add_argument("--models", default="unet,dit", help="comma-separated: unet, dit")
    p.add_argument("--nfe", default="8,32", help="sampler NFEs (default 8,32)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5)")
    p.add_argument("--steps", type=int, default=None, help="training steps per block (20)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up training steps (10)")
    p.add_argument("--batch", type=int, default=None, help="training batch (default 128)")
    p.add_argument("--sample-batch", type=int, default=None, help="sampling batch (256)")
    p.add_argument(
        "--out", type=Path, default=None, help="Markdown file to update (default on CUDA only)"
    )
    args = p.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    if any(m not in NAMES for m in args.models):
        p.error(f"--models: expected names from {sorted(NAMES)}, got {args.models}")
    try:
        args.nfe = [int(n) for n in args.nfe.split(",")]
    except ValueError:
        p.error(f"--nfe: expected comma-separated integers, got {args.nfe!r}")
    values = (args.rounds, args.steps, args.warmup, args.batch, args.sample_batch, *args.nfe)
    if any(v is not None and v < 1 for v in values):
        p.error("--rounds, --steps, --warmup, --batch, --sample-batch and --nfe must be >= 1")
    return args


def settings_of(args: argparse.Namespace) -> Settings:
    cuda = args.device == "cuda"
    quick = args.quick
    defaults = (2, 2, 1, 4, 2) if quick else (5, 20, 10, 128, 256)
    rounds, block, warmup, batch, sample_batch = (
        d if v is None else v
        for v, d in zip(
            (args.rounds, args.steps, args.warmup, args.batch, args.sample_batch),
            defaults,
            strict=True,
        )
    )
    precision = args.precision or ("fp32" if quick and not cuda else "bf16")
    return Settings(
        device=torch.device(args.device),
        precision=precision,
        compile=cuda if args.compile is None else args.compile,
        train_batch=batch,
        sample_batch=sample_batch,
        warmup=warmup,
        rounds=rounds,
        block=block,
    )


def main(argv: Sequence[str] | None = None) -> list[Row]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            f"gpu.py: --device cuda, but torch {torch.__version__} sees no CUDA device",
            file=sys.stderr,
        )
        raise SystemExit(2)
    s = settings_of(args)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    log(f"{device_name(s)}, torch {torch.__version__}, {s}")
    modes = [m for m in SAMPLE_MODES if m == "eager" or (s.compile and (s.cuda or m == "compile"))]
    rows = []
    for kind in args.models:
        rows += measure_model(kind, s, quick=args.quick, nfes=args.nfe, modes=modes, log=log)
    print(format_table(rows))
    out = args.out if args.out is not None else (DEFAULT_OUT if s.cuda else None)
    if out is not None:
        command = " ".join(["python benchmarks/gpu.py", *argv])
        write_section(out, render_section(rows, s, command=command), SECTION_HEADER)
        log(f"wrote {SECTION_HEADER!r} to {out}")
    return rows


if __name__ == "__main__":
    main()
