"""Samples holding NaN/Inf are never written with exit code 0: exit 3, one line naming the
count, nothing written; a --num too large for memory is refused before any allocation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import flowmatch as fm
from flowmatch.app.guards import MAX_VALUES, check_finite
from flowmatch.app.options import UsageError
from flowmatch.app.sample import sample_run
from flowmatch.cli import main
from flowmatch.errors import NumericalError
from flowmatch.models import registry


@registry.register("_test_nan_rows")
class _NanRows(nn.Module):
    """A velocity that is NaN for the points with x[0] > 1 and zero elsewhere."""

    def __init__(self, dim: int = 2) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(dim))

    def forward(self, x, t):
        nan = torch.full_like(x, float("nan"))
        return torch.where(x[:, :1] > 1.0, nan, x * self.scale)


@pytest.fixture
def nan_run(tmp_path):
    fm.FlowModel(_NanRows(), shape=[2]).save_pretrained(tmp_path / "run" / "model")
    return tmp_path / "run"


def _cli(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    return exc.value.code, capsys.readouterr().err.strip().splitlines()


def _expected_bad(num):
    x0 = fm.FlowModel(_NanRows(), shape=[2]).draw_source(num, torch.Generator().manual_seed(0))
    return int((x0[:, 0] > 1.0).sum())


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".png"])
def test_nan_samples_exit_3_naming_the_count_and_write_nothing(nan_run, tmp_path, capsys, suffix):
    out = tmp_path / f"s{suffix}"
    code, err = _cli(["sample", nan_run, "--num", "100", "--out", out, "--method", "euler"], capsys)
    bad = _expected_bad(100)
    assert 0 < bad < 100
    assert code == 3 and len(err) == 1
    assert f"sample: {bad} of 100 samples hold NaN/Inf values; nothing was written" in err[0]
    assert not out.exists()


def test_sample_run_raises_numerical_error(nan_run, tmp_path):
    with pytest.raises(NumericalError, match=r"of 10 samples hold NaN/Inf"):
        sample_run(
            nan_run, tmp_path / "s.npy", num=10, steps=2, method="euler", echo=lambda s: None
        )


def test_likelihood_with_nan_log_densities_exits_3_and_writes_nothing(nan_run, tmp_path, capsys):
    np.save(tmp_path / "d.npy", np.array([[2.0, 0.0], [0.0, 0.0]], np.float32))
    out = tmp_path / "lp.csv"
    code, err = _cli(
        ["likelihood", nan_run, tmp_path / "d.npy", "--out", out, "--no-progress"], capsys
    )
    assert code == 3 and len(err) == 1, err
    assert "likelihood:" in err[0] and ("NaN/Inf" in err[0] or "not finite" in err[0])
    assert not out.exists()


def test_a_huge_num_is_refused_before_allocating(tmp_path, capsys):
    net = fm.models.MLP(dim=2, hidden=8, depth=1, time_embed_dim=4)
    fm.FlowModel(net, shape=[2]).save_pretrained(tmp_path / "m")
    out = tmp_path / "s.npy"
    code, err = _cli(["sample", tmp_path / "m", "--num", "100000000", "--out", out], capsys)
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: --num: 100000000 samples would need") and "GiB" in err[0]
    assert not out.exists()
    with pytest.raises(UsageError, match="--num"):
        sample_run(tmp_path / "m", out, num=MAX_VALUES // 8 + 1)


def test_finite_samples_still_write(tmp_path, capsys):
    net = fm.models.MLP(dim=2, hidden=8, depth=1, time_embed_dim=4)
    fm.FlowModel(net, shape=[2]).save_pretrained(tmp_path / "m")
    out = tmp_path / "s.npy"
    code, _ = _cli(["sample", tmp_path / "m", "--num", "20", "--out", out], capsys)
    assert code == 0 and np.isfinite(np.load(out)).all() and np.load(out).shape == (20, 2)


def test_check_finite_counts_rows():
    x = torch.zeros(5, 2, 3)
    x[1, 0, 0], x[3, 1, 2] = float("inf"), float("nan")
    with pytest.raises(NumericalError, match="sample: 2 of 5 samples hold NaN/Inf"):
        check_finite(x)
    check_finite(torch.zeros(4, 2))
    check_finite(torch.zeros(4, dtype=torch.int64))


@registry.register("_test_nan_sphere")
class _NanSphere(nn.Module):
    """An ambient velocity on S^2 that is NaN where the first coordinate is positive."""

    def __init__(self, dim: int = 3) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(dim))

    def forward(self, x, t):
        return torch.where(x[:, :1] > 0.0, torch.full_like(x, float("nan")), x * self.scale)


@pytest.mark.parametrize("suffix", [".csv", ".png"])
def test_nan_manifold_samples_exit_3_and_write_nothing(tmp_path, capsys, suffix):
    from flowmatch.manifolds import ManifoldFlowModel, Sphere

    run = tmp_path / "run"
    ManifoldFlowModel(_NanSphere(), Sphere(2)).save_pretrained(run / "model")
    out = tmp_path / f"s{suffix}"
    code, err = _cli(["sample", run, "--num", "50", "--out", out, "--steps", "2"], capsys)
    assert code == 3 and len(err) == 1
    assert "of 50 samples hold NaN/Inf values; nothing was written" in err[0]
    assert not out.exists()
