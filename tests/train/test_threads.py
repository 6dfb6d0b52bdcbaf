"""The default number of CPU threads: 1 for small networks on the CPU, else torch's; an
explicit train.threads or OMP_NUM_THREADS wins."""

from __future__ import annotations

import pytest
import torch

from flowmatch.train.threads import SMALL_NETWORK, apply_threads, choose_threads

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture(autouse=True)
def _keep_threads(monkeypatch):
    before = torch.get_num_threads()
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    yield
    torch.set_num_threads(before)


def test_small_networks_on_the_cpu_use_one_thread() -> None:
    assert choose_threads(None, device=CPU, parameters=SMALL_NETWORK - 1) == 1
    assert choose_threads(None, device=CPU, parameters=SMALL_NETWORK) is None
    assert choose_threads(None, device=CUDA, parameters=10) is None


def test_an_explicit_setting_wins(monkeypatch) -> None:
    assert choose_threads(3, device=CPU, parameters=10) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert choose_threads(None, device=CPU, parameters=10) is None  # the user's variable


def test_apply_sets_torch(monkeypatch) -> None:
    assert apply_threads(None, device=CPU, parameters=1000) == 1
    assert torch.get_num_threads() == 1
    assert apply_threads(2, device=CPU, parameters=1000) == 2
