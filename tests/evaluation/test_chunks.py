"""The evaluation integrates large image sets in chunks and small sets whole."""

from __future__ import annotations

import torch

import flowmatch as fm
from flowmatch.evaluation import loop


def test_large_sets_run_in_chunks_with_the_same_samples_and_small_sets_whole(monkeypatch):
    torch.manual_seed(0)
    flow = fm.FlowModel(fm.models.UNet(1, 8, base=8, num_classes=3))
    calls = []
    real = loop.generate

    def counting(model, x0, **kw):
        calls.append(x0.shape[0])
        return real(model, x0, **kw)

    monkeypatch.setattr(loop, "generate", counting)
    x0, labels = torch.randn(300, 1, 8, 8), torch.arange(300) % 3
    kw = {"steps": 2, "method": "euler", "guidance": 2.0}
    with torch.no_grad():
        whole, nfe = loop._generate_in_chunks(flow, x0, labels, **kw)  # 19,200 values
        assert calls == [300] and nfe == 2  # two Euler steps
        monkeypatch.setattr(loop, "WHOLE_VALUES", 1000)
        monkeypatch.setattr(loop, "CHUNK_VALUES", 64 * 128)  # 128 images per call
        chunked, nfe = loop._generate_in_chunks(flow, x0, labels, **kw)
    assert calls[1:] == [128, 128, 44] and nfe == 2
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)  # batch size only
