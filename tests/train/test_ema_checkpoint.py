import pytest
import torch

from flowmatch.models import MLP
from flowmatch.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    remove_partial,
    save_checkpoint,
)
from flowmatch.train.ema import EMA


def test_ema_follows_the_closed_form_with_warmup():
    model = MLP(dim=2, hidden=4, depth=1)
    ema = EMA(model, decay=0.9)
    w0 = ema.module.net[0].weight.clone()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    expected = w0.clone()
    for k in range(30):
        ema.update(model, k)
        d = min(0.9, (1 + k) / (10 + k))
        expected = d * expected + (1 - d) * 1.0
    torch.testing.assert_close(ema.module.net[0].weight, expected)
    assert not ema.module.net[0].weight.requires_grad
    with pytest.raises(ValueError, match="decay"):
        EMA(model, decay=1.0)


def _state(seed):
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(3, 2, generator=g)}


def test_checkpoint_round_trip_and_keep(tmp_path):
    model = MLP(dim=2, hidden=4, depth=1)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(3, 2), torch.rand(3)).sum().backward()
    opt.step()
    rng_state = torch.get_rng_state()
    for step in (10, 20, 30):
        save_checkpoint(
            tmp_path,
            step=step,
            model=_state(step),
            ema=_state(step + 1),
            optim={"optimizer": opt.state_dict()},
            rng={"torch": rng_state},
            keep=2,
        )
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["step_00000020", "step_00000030"]
    ck = load_checkpoint(latest_checkpoint(tmp_path))
    assert ck.step == 30
    assert torch.equal(ck.model["w"], _state(30)["w"]) and torch.equal(ck.ema["w"], _state(31)["w"])
    opt2 = torch.optim.AdamW(MLP(dim=2, hidden=4, depth=1).parameters())
    opt2.load_state_dict(ck.optim["optimizer"])
    assert torch.equal(
        opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"]
    )
    assert torch.equal(ck.rng["torch"], rng_state)


def test_partial_checkpoints_are_ignored_and_removed(tmp_path):
    save_checkpoint(tmp_path, step=5, model=_state(0), ema=_state(1), optim={}, rng={})
    partial = tmp_path / ".step_00000010.abc.tmp"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half")
    assert latest_checkpoint(tmp_path).name == "step_00000005"
    remove_partial(tmp_path)
    assert not partial.exists()


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path, step=1, model=_state(0), ema=_state(1), optim={}, rng={})
    (path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"model\.safetensors|unreadable checkpoint"):
        load_checkpoint(path)
