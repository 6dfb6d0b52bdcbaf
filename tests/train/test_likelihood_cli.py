"""`flowmatch likelihood`: NLL of a data file under a trained run, per-point output, bad input."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from test_trainer import TINY, cli

import flowmatch as fm
from flowmatch.train.config import load_config
from flowmatch.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


def train(out, overrides, steps=30):
    cfg = load_config(None, [*TINY, f"train.steps={steps}", *overrides])
    Trainer(cfg, out, progress=False, final_eval=False, echo=lambda _: None).run()
    return out


def write_csv(path, rows, header):
    path.write_text(
        ",".join(header) + "\n" + "\n".join(",".join(f"{v:.6f}" for v in r) for r in rows) + "\n"
    )
    return path


def printed_nll(out: str) -> float:
    """The NLL of the summary line (printed with 4 decimals)."""
    return float(re.search(r"NLL (-?[0-9.]+) \+- ", out).group(1))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 30-step run on the default 2-D toy set, with a N(0, I) source."""
    return train(tmp_path_factory.mktemp("ll") / "run", [])


@pytest.fixture(scope="module")
def points(tmp_path_factory):
    """40 2-D points, as .npy and as .csv (with a header)."""
    d = tmp_path_factory.mktemp("points")
    x = np.random.default_rng(0).uniform(-3, 3, size=(40, 2)).astype(np.float32)
    np.save(d / "p.npy", x)
    write_csv(d / "p.csv", x, ["u", "v"])
    return x, d / "p.npy", d / "p.csv"


@pytest.mark.parametrize("kind", ["npy", "csv"])
def test_prints_nll_in_nats_and_bits_per_dim(run, points, kind, capsys):
    """The summary line is the mean of fm.log_likelihood over the points of the file."""
    _, npy, csv = points
    data = npy if kind == "npy" else csv
    code, out, err = cli(["likelihood", run, data, "--no-progress"], capsys)
    assert code == 0, err
    assert "NLL" in out and "nats" in out and "bits/dim" in out and "40 points" in out
    # the same model, points and single-batch solve: equal to the 4 printed decimals (the
    # points must be bit-identical: the batch's adaptive dopri5 steps, and with them the
    # result, move by ~1e-3 nats when an input moves by one float32 ulp)
    x = fm.data.load_table(data).data
    ref = -fm.log_likelihood(fm.load(run), x).mean().item()
    assert printed_nll(out) == pytest.approx(ref, abs=1e-4)
    bpd = float(re.search(r"\((-?[0-9.]+) \+- [0-9.]+ bits/dim\)", out).group(1))
    assert bpd == pytest.approx(printed_nll(out) / (2 * math.log(2)), abs=1e-4)  # 4 decimals
    code, out2, err = cli(["likelihood", run / "model", data, "--no-progress"], capsys)
    assert code == 0, err
    assert printed_nll(out2) == printed_nll(out)  # the model/ directory is a run too


@pytest.mark.parametrize("name", ["ll.csv", "ll.npy"])
def test_out_writes_one_row_per_point(tmp_path, run, points, name, capsys):
    _, npy, _ = points
    target = tmp_path / name
    code, out, err = cli(["likelihood", run, npy, "--out", target, "--no-progress"], capsys)
    assert code == 0, err
    assert f"wrote per-point log_prob and std_err to {target}" in out
    table = fm.data.load_table(target)
    assert table.data.shape == (40, 2)
    if name.endswith(".csv"):
        assert table.columns == ["log_prob", "std_err"]
        assert target.read_text().splitlines()[0] == "log_prob,std_err"
    assert torch.equal(table.data[:, 1], torch.zeros(40))  # exact divergence
    # the printed NLL is their mean, rounded to 4 decimals (float32 values of a few nats)
    assert -table.data[:, 0].double().mean().item() == pytest.approx(printed_nll(out), abs=6e-5)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_hutchinson(tmp_path, run, points, capsys):
    """Hutchinson with 3 probes: per-point standard errors, seeded, near the exact NLL."""
    _, npy, _ = points
    argv = ["likelihood", run, npy, "--no-progress", "--out"]
    code, out, err = cli([*argv, tmp_path / "e.csv"], capsys)
    assert code == 0, err
    exact = fm.data.load_table(tmp_path / "e.csv").data[:, 0].double()
    hutch = ["--method", "hutchinson", "--probes", 3]
    code, out, err = cli([*argv, tmp_path / "h.csv", *hutch], capsys)
    assert code == 0, err
    assert "Hutchinson, 3 probes" in out and "NLL" in out
    table = fm.data.load_table(tmp_path / "h.csv").data.double()
    # In 2-D a Rademacher probe gives tr J + e1 e2 (J12 + J21): the 3 probes of a point agree
    # (std_err 0) with probability 1/4, and differ for the others.
    assert (table[:, 1] >= 0).all() and (table[:, 1] > 0).sum() >= 20
    # unbiased: the mean over points is within 3 standard errors sqrt(sum se_i^2) / N of the
    # exact mean (measured 2.2e-3 nats, 1.7 standard errors; the dopri5 error of the mean at
    # tolerance 1e-5, ~5e-4 nats, is below it)
    se = table[:, 1].pow(2).sum().sqrt().item() / 40
    assert abs(table[:, 0].mean().item() - exact.mean().item()) <= 3 * se
    code, _, err = cli([*argv, tmp_path / "h2.csv", *hutch], capsys)
    assert code == 0, err
    assert torch.equal(fm.data.load_table(tmp_path / "h2.csv").data.double(), table)  # --seed 0


def test_table_run_includes_the_standardization_jacobian(tmp_path, capsys):
    """A run on a 3-column csv scores points in data units: log p_z(z) - sum(log std)."""
    g = np.random.default_rng(1)
    table = np.column_stack(
        [100 + 5 * g.standard_normal(300), -3 + 0.1 * g.standard_normal(300), g.uniform(0, 1, 300)]
    )
    data = write_csv(tmp_path / "data.csv", table, ["a", "b", "c"])
    run = train(tmp_path / "run", ["data.name=null", f"data.path={data}", "data.num_holdout=50"])
    code, out, err = cli(
        ["likelihood", run, data, "--out", tmp_path / "ll.npy", "--no-progress"], capsys
    )
    assert code == 0, err
    assert "300 points of data.csv" in out
    spec = fm.load(run).spec["standardizer"]
    mean = torch.tensor(spec["mean"], dtype=torch.float64)
    std = torch.tensor(spec["std"], dtype=torch.float64)
    # standardized in float32 as the run does, so the solve is the same to the last bit (a
    # one-ulp change of the points moves the adaptive steps and the result by ~1e-3 nats)
    z = (fm.data.load_table(data).data - mean.float()) / std.float()
    log_jacobian = -std.log().sum().item()
    assert abs(log_jacobian) > 1.0  # the correction matters (std 5, 0.1 and ~0.29)
    ref = fm.log_likelihood(fm.load(run), z).double() + log_jacobian
    per_point = torch.from_numpy(np.load(tmp_path / "ll.npy")[:, 0]).double()
    # equal up to the float32 rounding of the written values (a few nats: ~1e-6)
    torch.testing.assert_close(per_point, ref, rtol=0, atol=1e-5)
    assert printed_nll(out) == pytest.approx(-ref.mean().item(), abs=2e-4)  # 4 decimals


def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, run, points, capsys):
    _, npy, _ = points
    three = write_csv(tmp_path / "three.csv", np.zeros((4, 3)), ["a", "b", "c"])
    nan = tmp_path / "nan.csv"
    nan.write_text("u,v\n1,2\n3,nan\n")
    moons = train(tmp_path / "moons", ["data.source.name=moons"], steps=2)
    cases = [
        ([run, three], "three.csv"),
        ([run, nan], "nan.csv"),
        ([run, tmp_path / "missing.npy"], "missing.npy"),
        ([run, npy, "--method", "magic"], "--method"),
        ([moons, npy], "log-density"),
        ([tmp_path / "norun", npy], "norun"),
    ]
    for i, (argv, needle) in enumerate(cases):
        target = tmp_path / f"o{i}.csv"
        code, _, err = cli(["likelihood", *argv, "--out", target, "--no-progress"], capsys)
        assert code == 2, (argv, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (argv, err)
        assert not target.exists()
    code, _, err = cli(["likelihood", run, nan, "--no-progress"], capsys)
    assert "row 3" in err  # the cell is located
    code, _, err = cli(["likelihood", run, three, "--no-progress"], capsys)
    assert "expected 2 columns" in err and "got 3" in err
    code, _, err = cli(["likelihood", run, npy, "--out", tmp_path / "ll.txt"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "ll.txt" in lines[0], err
    assert not (tmp_path / "ll.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".csv" and p.name.startswith("o")]


def test_per_point_tolerance(tmp_path, run, points, capsys):
    """--per-point-tolerance runs dopri5 with the per-sample error norm: the printed NLL and the
    per-point file equal the API's values with error_norm="per_sample" (the same batch)."""
    _, npy, _ = points
    out = tmp_path / "pp.npy"
    argv = ["likelihood", run, npy, "--per-point-tolerance", "--out", out, "--no-progress"]
    code, text, err = cli(argv, capsys)
    assert code == 0, err
    x = fm.data.load_table(npy).data
    ref = fm.log_likelihood(fm.load(run), x, error_norm="per_sample")
    np.testing.assert_allclose(np.load(out)[:, 0], ref.numpy(), rtol=0, atol=1e-6)
    assert printed_nll(text) == pytest.approx(-ref.mean().item(), abs=1e-4)


def test_source_log_prob_of_each_density_capable_source():
    """N(0, I), checkerboard (-log 32 on a black square, -inf on a white one) and 8gaussians
    (a density: its grid integral over [-6, 6]^2 is 1 to 1e-3, the grid's quadrature error)."""
    from flowmatch.app.likelihood import source_log_prob
    from flowmatch.likelihood import standard_normal_log_prob

    assert source_log_prob(None) is standard_normal_log_prob
    board = source_log_prob("checkerboard")(torch.tensor([[-3.5, -3.5], [-1.5, -3.5]]))
    assert board[0].item() == pytest.approx(-math.log(32.0)) and board[1].item() == -math.inf
    g = torch.linspace(-6, 6, 601, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    mass = source_log_prob("8gaussians")(grid).exp().sum() * (g[1] - g[0]) ** 2
    assert mass.item() == pytest.approx(1.0, abs=1e-3)
