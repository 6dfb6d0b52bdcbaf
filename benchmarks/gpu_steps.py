"""The networks, training steps, sampler calls and timing of ``benchmarks/gpu.py``.

Every variant is built by a function returning ``run(n)``, which does n units of work (n
training steps, or n sampler calls). Each training variant owns its copy of the network (same
initialization), so its peak memory is its own; the flowmatch and bare sampler calls of one
mode share one (compiled) copy.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import flowmatch as fm
from flowmatch.train import distributed
from flowmatch.train.api import default_loss
from flowmatch.train.batches import as_batches
from flowmatch.train.loop import LoopSettings, OptimSettings, TrainLoop

Run = Callable[[int], None]

UNET_FULL: dict[str, Any] = dict(
    channels=3,
    size=32,
    base=128,
    multipliers=(1, 2, 2, 2),
    num_res_blocks=2,
    attention_resolutions=(16,),
    groups=32,
    dropout=0.1,
)
"""The DDPM CIFAR-10 U-Net (Ho et al. 2020; TorchCFM's CIFAR example uses the same sizes)."""
UNET_QUICK: dict[str, Any] = dict(
    channels=3, size=32, base=8, multipliers=(1, 2), num_res_blocks=1,
    attention_resolutions=(16,), groups=4, dropout=0.1,
)  # fmt: skip
DIT_FULL: dict[str, Any] = dict(channels=3, size=32, patch=2, dim=384, depth=12, heads=6)
"""DiT-S/2 at 32x32 (Peebles & Xie 2023): 256 tokens of 384 channels, 12 blocks, 6 heads."""
DIT_QUICK: dict[str, Any] = dict(channels=3, size=32, patch=4, dim=32, depth=2, heads=2)


@dataclass(frozen=True)
class Settings:
    """What every measurement of one run shares."""

    device: torch.device
    precision: str = "bf16"
    """bf16 (autocast) or fp32."""
    compile: bool = True
    channels_last: bool = True
    train_batch: int = 128
    sample_batch: int = 256
    warmup: int = 10
    """Training steps run before timing, compilation included (sampler calls: 3)."""
    rounds: int = 5
    block: int = 20
    """Training steps per timed block (sampler blocks fill about ``SAMPLE_BLOCK_SECONDS``)."""

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self) -> Any:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)


SAMPLE_BLOCK_SECONDS = 0.25


def dit_class() -> tuple[type[nn.Module] | None, str]:
    """``flowmatch.models.dit.DiT``, or None and why it cannot be imported."""
    try:
        from flowmatch.models.dit import DiT
    except Exception as err:  # any failure means: no DiT row
        return None, one_line(err)
    return DiT, ""


def one_line(err: BaseException) -> str:
    """``Type: first line of the message`` (at most 160 characters, no table bars)."""
    lines = str(err).strip().splitlines()
    text = f"{type(err).__name__}: {lines[0] if lines else ''}".strip()
    return text.replace("|", "/")[:160]


def build_net(kind: str, quick: bool, seed: int = 0) -> nn.Module:
    """The benchmark's U-Net or DiT, on CPU, initialized from ``seed``."""
    torch.manual_seed(seed)
    if kind == "unet":
        return fm.models.UNet(**(UNET_QUICK if quick else UNET_FULL))
    cls, why = dit_class()
    if cls is None:
        raise ImportError(why)
    return cls(**(DIT_QUICK if quick else DIT_FULL))


def place(net: nn.Module, s: Settings) -> nn.Module:
    """A copy of ``net`` on the device (channels-last when asked)."""
    net = copy.deepcopy(net).to(s.device)
    return net.to(memory_format=torch.channels_last) if s.channels_last else net


def raise_recompile_limit() -> None:
    """Let dynamo compile one net's forward for every variant and mode (its default limit
    of 8 would fall back to eager silently)."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(64, getattr(config, name)))


def compiled(net: nn.Module, mode: str | None = None) -> nn.Module:
    out = torch.compile(net, mode=mode)
    raise_recompile_limit()  # after torch.compile, which imports dynamo (and may fail)
    return out  # type: ignore[return-value]


def maybe_compile(net: nn.Module, s: Settings) -> nn.Module:
    return compiled(net) if s.compile else net


def adamw(net: nn.Module, s: Settings) -> torch.optim.AdamW:
    """The hand-written loops' optimizer: fused AdamW on CUDA (the default one on CPU)."""
    return torch.optim.AdamW(net.parameters(), lr=1e-3, fused=True if s.cuda else None)


def data_pool(s: Settings, n: int = 4096) -> torch.Tensor:
    """Random 3x32x32 'images' (N(0, I), enough for throughput), on the device."""
    x = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1)).to(s.device)
    return x.contiguous(memory_format=torch.channels_last) if s.channels_last else x


def _draw(data: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """A batch drawn with replacement, as the library's tensor batches draw it."""
    idx = torch.randint(0, data.shape[0], (size,), generator=gen, device=gen.device)
    return data[idx]


def train_ours(net: nn.Module, data: torch.Tensor, s: Settings) -> Run:
    """flowmatch's training step as ``fm.train`` runs it: its TrainLoop (default loss, AdamW,
    warmup-free cosine schedule, grad clipping at 1.0, EMA 0.999, loss and grad norm read
    every step), with ``precision`` and ``compile`` set in its LoopSettings."""
    flow = fm.FlowModel(place(net, s))
    settings = LoopSettings(
        steps=10**9,  # the lr schedule's horizon; each block sets the steps to reach
        batch_size=s.train_batch,
        precision=s.precision,
        compile=s.compile,
        progress=False,
    )
    loop = TrainLoop(
        flow,
        default_loss(flow),
        as_batches(data),
        settings,
        OptimSettings(),
        dist=distributed.setup(s.device.type),
        echo=lambda _msg: None,
    )
    if s.compile:
        raise_recompile_limit()

    def run(n: int) -> None:
        loop.settings = dataclasses.replace(loop.settings, steps=loop.step + n)
        loop.run()

    return run


def train_loss_only(net: nn.Module, data: torch.Tensor, s: Settings) -> Run:
    """``fm.FlowMatchingLoss`` on the net in its FlowModel and the bare loop's optimizer step:
    the library's loss without the trainer's clipping, EMA, schedule and logging."""
    flow = fm.FlowModel(place(net, s))
    model, loss_fn, opt = maybe_compile(flow, s), default_loss(flow), adamw(flow, s)
    gen = torch.Generator(device=s.device).manual_seed(0)

    def run(n: int) -> None:
        for _ in range(n):
            x1 = _draw(data, s.train_batch, gen)
            with s.autocast():
                loss = loss_fn(model, x1, generator=gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return run


def train_bare(net: nn.Module, data: torch.Tensor, s: Settings) -> Run:
    """A hand-written step: noise, t, x_t, target, MSE, backward, fused AdamW."""
    net = place(net, s)
    model, opt = maybe_compile(net, s), adamw(net, s)
    gen = torch.Generator(device=s.device).manual_seed(0)

    def run(n: int) -> None:
        for _ in range(n):
            x1 = _draw(data, s.train_batch, gen)
            x0 = torch.randn(x1.shape, device=x1.device, generator=gen)
            t = torch.rand(x1.shape[0], device=x1.device, generator=gen)
            tt = t[:, None, None, None]
            x_t, target = tt * x1 + (1 - tt) * x0, x1 - x0
            with s.autocast():
                loss = F.mse_loss(model(x_t, t), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return run


def train_torchcfm(net: nn.Module, data: torch.Tensor, s: Settings) -> Run:
    """TorchCFM's step: ``ConditionalFlowMatcher(sigma=0).sample_location_and_conditional_flow``
    and ``mean((v - u)^2)`` as in its CIFAR-10 example, with the bare loop's optimizer."""
    from torchcfm.conditional_flow_matching import ConditionalFlowMatcher

    cfm = ConditionalFlowMatcher(sigma=0.0)
    net = place(net, s)
    model, opt = maybe_compile(net, s), adamw(net, s)
    gen = torch.Generator(device=s.device).manual_seed(0)

    def run(n: int) -> None:
        for _ in range(n):
            x1 = _draw(data, s.train_batch, gen)
            x0 = torch.randn_like(x1)
            t, x_t, u_t = cfm.sample_location_and_conditional_flow(x0, x1)
            with s.autocast():
                loss = torch.mean((model(x_t, t) - u_t) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return run


TRAIN_VARIANTS: dict[str, Callable[[nn.Module, torch.Tensor, Settings], Run]] = {
    "flowmatch": train_ours,
    "loss only": train_loss_only,
    "bare": train_bare,
    "torchcfm": train_torchcfm,
}

SAMPLE_MODES: dict[str, str | None] = {
    "eager": None,
    "compile": "default",
    "compile + CUDA graphs": "reduce-overhead",
}
"""Sampling modes: the net as it is, ``torch.compile(net)``, and ``torch.compile(net,
mode="reduce-overhead")`` (its forwards replayed as CUDA graphs; CUDA only)."""


def sample_model(net: nn.Module, s: Settings, mode: str) -> nn.Module:
    """A copy of the net in eval mode on the device, compiled per ``mode`` (SAMPLE_MODES);
    the flowmatch and bare sampler calls of a mode share it (one compilation)."""
    net = place(net, s).eval()
    compile_mode = SAMPLE_MODES[mode]
    return compiled(net, compile_mode) if compile_mode else net


def sample_run(model: nn.Module, s: Settings, nfe: int, ours: bool) -> Run:
    """Per call, ``fm.sample(FlowModel(model), x0, steps=nfe, method="euler")`` (ours) or
    ``nfe`` bare forwards ``model(x0, t)`` (not ours), under ``no_grad`` and the precision's
    autocast."""
    flow = fm.FlowModel(model)
    x0 = torch.randn(s.sample_batch, 3, 32, 32, device=s.device)
    if s.channels_last:
        x0 = x0.contiguous(memory_format=torch.channels_last)
    t = torch.full((s.sample_batch,), 0.5, device=s.device)

    def run(n: int) -> None:
        with torch.no_grad(), s.autocast():
            for _ in range(n):
                if ours:
                    fm.sample(flow, x0, steps=nfe, method="euler")
                else:
                    for _ in range(nfe):
                        model(x0, t)

    return run


# ------------------------------------------------------------------------------- timing
@dataclass
class Measured:
    """One variant: its block times (s), images per block, peak memory and failure."""

    images: int = 0
    times: list[float] = dataclasses.field(default_factory=list)
    peak: int | None = None
    """Bytes: max_memory_allocated during build and warm-up, minus what was allocated before."""
    note: str | None = None
    """Why it has no times ("compile failed: ...", "failed: ..."), else None."""
    run: Run | None = dataclasses.field(default=None, repr=False)

    @property
    def per_second(self) -> float | None:
        if not self.times:
            return None
        return self.images / statistics.median(self.times)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def failed(err: Exception, s: Settings, compiling: bool) -> Measured:
    """A variant that could not be built or run: "compile failed: ..." or "failed: ..."."""
    oom = isinstance(err, torch.cuda.OutOfMemoryError)
    kind = "compile failed" if compiling and not oom else "failed"
    gc.collect()
    if s.cuda:
        torch.cuda.empty_cache()
    return Measured(note=f"{kind}: {one_line(err)}")


def allocated(s: Settings) -> int:
    return torch.cuda.memory_allocated(s.device) if s.cuda else 0


def prepare(
    build: Callable[[], Run], s: Settings, warmup: int, compiling: bool, base: int | None = None
) -> Measured:
    """Build a variant and run its warm-up; a failure becomes the variant's note.

    Its peak memory counts from ``base`` (default: what is allocated before the build)."""
    gc.collect()
    base = allocated(s) if base is None else base
    if s.cuda:
        torch.cuda.reset_peak_memory_stats(s.device)
    try:
        run = build()
        run(warmup)
        sync(s.device)
    except Exception as err:  # the row reports it; the others go on
        return failed(err, s, compiling)
    peak = torch.cuda.max_memory_allocated(s.device) - base if s.cuda else None
    return Measured(peak=peak, run=run)


def time_rounds(
    variants: dict[str, Measured], s: Settings, block: int, images: int
) -> dict[str, Measured]:
    """``s.rounds`` rounds, each one block of ``block`` units per variant (those that did not
    fail), the order reversed every other round; the device synchronised around each block."""
    live = [k for k, m in variants.items() if m.run is not None]
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(s.rounds):
            for key in live if r % 2 == 0 else live[::-1]:
                m = variants[key]
                assert m.run is not None
                sync(s.device)
                start = time.perf_counter()
                m.run(block)
                sync(s.device)
                m.times.append(time.perf_counter() - start)
                m.images = images * block
    finally:
        if was_enabled:
            gc.enable()
    return variants


def sample_block(variants: dict[str, Measured], s: Settings) -> int:
    """Sampler calls per block: enough for the slowest live variant's call to fill about
    SAMPLE_BLOCK_SECONDS (at least one)."""
    slowest = 0.0
    for m in variants.values():
        if m.run is not None:
            sync(s.device)
            start = time.perf_counter()
            m.run(1)
            sync(s.device)
            slowest = max(slowest, time.perf_counter() - start)
    return max(1, round(SAMPLE_BLOCK_SECONDS / slowest)) if slowest > 0 else 1
