"""Mixed precision: fp16 training scales the loss (a GradScaler checkpointed with the
optimizer, so resume stays bit-identical) and skips, rather than stops on, the updates whose
gradients overflow; bf16 needs no scaler. CPU autocast runs both here; GPU figures go to
benchmarks/RESULTS.md when a device is lent."""

from __future__ import annotations

import shutil

import torch
from safetensors.torch import load_file

import flowmatch as fm
from flowmatch.train import distributed
from flowmatch.train.batches import TensorBatches
from flowmatch.train.loop import LoopSettings, OptimSettings, TrainLoop


def _data() -> torch.Tensor:
    return torch.randn(512, 2, generator=torch.Generator().manual_seed(0)) * 0.5 + 1.0


def _model() -> fm.FlowModel:
    torch.manual_seed(0)
    return fm.FlowModel(fm.models.MLP(dim=2, hidden=32, depth=2, time_embed_dim=8))


def test_fp16_checkpoints_the_scaler_and_resumes_bit_identically(tmp_path) -> None:
    def run(out, resume=False):
        return fm.train(
            _model(),
            _data(),
            out=out,
            resume=resume,
            steps=30,
            batch_size=64,
            checkpoint_every=10,
            precision="fp16",
            device="cpu",
            progress=False,
            echo=lambda _m: None,
        )

    run(tmp_path / "ref")
    optim = torch.load(
        tmp_path / "ref" / "checkpoints" / "step_00000030" / "optim.pt", weights_only=True
    )
    assert optim["scaler"]["scale"] > 0  # the scaler's state is in the checkpoint
    # a run stopped after step 20 (its step-30 checkpoint removed), then resumed
    run(tmp_path / "run")
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "step_00000030")
    run(tmp_path / "run", resume=True)
    a = load_file(str(tmp_path / "ref" / "model" / "ema.safetensors"))
    b = load_file(str(tmp_path / "run" / "model" / "ema.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fp16_overflow_skips_the_update_instead_of_stopping() -> None:
    # a scale of 2^40 overflows fp16 gradients (max 65504): the scaler skips those updates
    # and halves the scale until they fit; the run neither stops nor takes a NaN step
    flow = _model()
    loop = TrainLoop(
        flow,
        fm.FlowMatchingLoss(flow.path),
        TensorBatches(_data()),
        LoopSettings(steps=40, batch_size=64, precision="fp16", progress=False),
        OptimSettings(),
        dist=distributed.setup("cpu"),
        echo=lambda _m: None,
    )
    loop.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    before = {k: v.clone() for k, v in flow.net.state_dict().items()}
    loop.run()
    assert loop.scaler.get_scale() < 2.0**40  # lowered after overflows
    after = flow.net.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it still trained


def test_bf16_runs_without_a_scaler(tmp_path) -> None:
    flow = _model()
    loop = TrainLoop(
        flow,
        fm.FlowMatchingLoss(flow.path),
        TensorBatches(_data()),
        LoopSettings(steps=5, batch_size=64, precision="bf16", progress=False),
        OptimSettings(),
        dist=distributed.setup("cpu"),
        echo=lambda _m: None,
    )
    assert not loop.scaler.is_enabled()
    loop.run()
    assert all(torch.isfinite(v).all() for v in flow.net.state_dict().values())
