"""Manifold runs through flowmatch train | sample | likelihood | eval, and their config errors."""

import csv
import math
from pathlib import Path

import pytest
import torch
from test_text_runs import cli, one_line_error  # the shared CLI helpers of tests/train

import flowmatch as fm
from flowmatch.cli import main
from flowmatch.manifolds import SO3, FlatTorus, ManifoldFlowModel, Product, Sphere

TINY = [
    "--set", "model.hidden=32", "--set", "model.depth=2", "--set", "train.batch_size=64",
    "--set", "train.checkpoint_every=100", "--set", "eval.steps=[2,4]",
    "--set", "eval.methods=[euler,rk4]", "--set", "eval.draws=2",
    "--set", "eval.num_samples=100", "--set", "sample.steps=4", "--set", "sample.method=rk4",
    "--set", "optim.lr=3e-3",
    "--no-progress",
]  # fmt: skip


def write_points(path: Path, header: list[str], rows: torch.Tensor) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows.tolist())
    return path


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def train(tmp: Path, name: str, yaml: str, steps: int = 150) -> Path:
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(yaml + f"\ntrain: {{steps: {steps}}}\n")
    out = tmp / name
    with pytest.raises(SystemExit) as exc:
        main(["train", str(cfg), "--out", str(out), *TINY])
    assert exc.value.code == 0
    return out


@pytest.fixture(scope="module")
def cities(tmp_path_factory) -> Path:
    """1000 points in degrees scattered around two places (one across the date line)."""
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[48.0, 2.0], [-17.0, 179.0]])
    lat_lon = centres[torch.arange(1000) % 2] + 3 * torch.randn(1000, 2, generator=g)
    lat_lon[:, 1] = torch.remainder(lat_lon[:, 1] + 180, 360) - 180
    return write_points(tmp_path_factory.mktemp("data") / "cities.csv", ["lat", "lon"], lat_lon)


@pytest.fixture(scope="module")
def sphere_run(cities, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("runs")
    yaml = f"data: {{manifold: sphere, path: {cities}, columns: [lat, lon], units: degrees}}"
    return train(tmp, "cities", yaml, steps=400)


def test_a_sphere_csv_run_trains_reports_and_plots(sphere_run):
    model = fm.load(sphere_run)
    assert isinstance(model, ManifoldFlowModel) and model.manifold == Sphere(2)
    assert model.info["columns"] == ["lat", "lon"] and model.info["units"] == "degrees"
    report = (sphere_run / "eval.txt").read_text()
    assert "geodesic 2-Wasserstein" in report and "noise floor" in report
    nll_line = [line for line in report.splitlines() if line.startswith("held-out NLL")]
    assert len(nll_line) == 1 and "uniform: 2.5310" in nll_line[0]
    # a model trained on two tight clusters is far more likely than uniform there
    assert float(nll_line[0].split()[2]) < math.log(4 * math.pi) - 0.5
    nfes = [int(r["nfe"]) for r in read_rows(sphere_run / "eval.csv")]
    assert nfes == [2, 4, 8, 16]  # euler 2, 4; rk4 2 x 4, 4 x 4
    for name in ("samples.png", "globe.png", "quality_vs_nfe.png"):
        assert (sphere_run / name).stat().st_size > 1000


def test_sample_writes_latitudes_and_longitudes_in_degrees(sphere_run, tmp_path, capsys):
    out = tmp_path / "s.csv"
    code, said, _ = cli(["sample", sphere_run, "--out", out, "--num", "64"], capsys)
    assert code == 0 and "wrote 64 samples on Sphere(2) (rk4, NFE 16)" in said
    rows = read_rows(out)
    assert len(rows) == 64 and list(rows[0]) == ["lat", "lon"]
    assert all(-90 <= float(r["lat"]) <= 90 and -180 <= float(r["lon"]) < 180 for r in rows)
    # the samples read back through likelihood: the same table layout
    code, said, _ = cli(["likelihood", sphere_run, out], capsys)
    assert code == 0 and "over 64 points of s.csv" in said and "Sphere(2)" in said


def test_likelihood_of_the_training_file_matches_the_library(sphere_run, cities, capsys):
    code, said, _ = cli(
        ["likelihood", sphere_run, cities, "--out", cities.parent / "lp.csv"], capsys
    )
    assert code == 0
    nll = float(said.split("NLL ")[1].split()[0])
    rows = read_rows(cities.parent / "lp.csv")
    assert len(rows) == 1000
    # the CLI converts degrees to unit vectors; fm.log_likelihood on them gives the same
    model = fm.load(sphere_run)
    from flowmatch.data.manifold_sets import lat_lon_to_unit

    table = torch.tensor([[float(r["lat"]), float(r["lon"])] for r in read_rows(cities)])
    x = lat_lon_to_unit(table).float()
    direct = fm.log_likelihood(model, x)  # one batch of 1000, as the CLI solves it
    written = torch.tensor([float(r["log_prob"]) for r in rows])
    # The inputs differ by float32 round-off (~1e-7), which changes dopri5's steps: at its
    # default tolerances (1e-5) single points then move by up to ~0.02 nats on this small,
    # briefly trained model (measured), while the mean moves by ~1e-3.
    assert torch.allclose(direct.float(), written, atol=0.05)
    assert abs(float(direct.mean()) - float(written.mean())) < 5e-3
    assert abs(nll + float(torch.tensor([float(r["log_prob"]) for r in rows]).mean())) < 1e-3


def test_eval_rescores_a_sphere_run(sphere_run, capsys):
    code, said, _ = cli(["eval", sphere_run, "--steps", "3", "--methods", "midpoint"], capsys)
    assert code == 0 and "held-out NLL" in said
    assert "midpoint" in (sphere_run / "eval" / "eval.txt").read_text()


def test_a_png_of_samples_is_a_world_map(sphere_run, tmp_path, capsys):
    out = tmp_path / "map.png"
    code, _, _ = cli(["sample", sphere_run, "--out", out, "--num", "50"], capsys)
    assert code == 0 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.png"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--method", "dopri5"], "--method: a manifold model is sampled with exp-map"),
        (["--guidance", "2"], "--interpolate, --cond and --guidance are not for manifold runs"),
        (["--out", "x.txt"], "expected a file ending in .csv, .npy or .png"),
    ],
)
def test_bad_sample_flags_are_one_line_errors(sphere_run, tmp_path, capsys, argv, needle):
    base = ["sample", sphere_run, "--num", "4", "--out", tmp_path / "s.csv"]
    code, _, err = cli([*base, *argv], capsys)
    one_line_error(code, err, needle)


def test_likelihood_names_missing_columns_and_bad_latitudes(sphere_run, tmp_path, capsys):
    bad = write_points(tmp_path / "bad.csv", ["a", "b", "c"], torch.zeros(3, 3))
    code, _, err = cli(["likelihood", sphere_run, bad], capsys)
    one_line_error(code, err, "expected the columns lat, lon (degrees)")
    far = write_points(tmp_path / "far.csv", ["lat", "lon"], torch.tensor([[95.0, 0.0]]))
    code, _, err = cli(["likelihood", sphere_run, far], capsys)
    one_line_error(code, err, "latitudes must lie in [-90, 90]")


@pytest.fixture(scope="module")
def angles_run(tmp_path_factory) -> Path:
    """A torus run from a CSV of angles in radians, one cluster straddling the seam at pi."""
    tmp = tmp_path_factory.mktemp("torus")
    g = torch.Generator().manual_seed(1)
    a = torch.tensor([3.0, -1.0]) + 0.3 * torch.randn(600, 2, generator=g)
    a = torch.remainder(a + math.pi, 2 * math.pi) - math.pi
    data = write_points(tmp / "angles.csv", ["chi1", "chi2"], a)
    yaml = f"data: {{manifold: torus, path: {data}, columns: [chi1, chi2], units: radians}}"
    return train(tmp, "angles", yaml)


def test_a_torus_run_writes_radians_and_a_ramachandran_plot(angles_run, tmp_path, capsys):
    model = fm.load(angles_run)
    assert model.manifold == FlatTorus(2) and (angles_run / "samples.png").is_file()
    out = tmp_path / "a.csv"
    code, _, _ = cli(["sample", angles_run, "--out", out, "--num", "32"], capsys)
    rows = read_rows(out)
    assert code == 0 and list(rows[0]) == ["chi1", "chi2"]
    assert all(-math.pi <= float(v) < math.pi for r in rows for v in r.values())


def _structures():
    from flowmatch.data.structures import structure_files
    from flowmatch.errors import DataError

    pytest.importorskip("Bio")
    try:
        structure_files()
    except DataError as err:
        pytest.skip(str(err))


def test_a_residue_run_on_the_product_of_torus_and_so3_works_end_to_end(tmp_path, capsys):
    """Backbone angles and residue frames together: T^2 x SO(3), 11 coordinates."""
    _structures()
    run = train(tmp_path, "residues", "data: {name: residues}", steps=100)
    model = fm.load(run)
    assert model.manifold == Product(FlatTorus(2), SO3())
    assert (run / "samples.png").is_file() and (run / "frames.png").is_file()
    out = tmp_path / "r.csv"
    code, _, _ = cli(["sample", run, "--out", out, "--num", "16"], capsys)
    rows = read_rows(out)
    assert code == 0 and list(rows[0])[:3] == ["phi", "psi", "r11"] and len(rows[0]) == 11
    r = torch.tensor([[float(v) for v in row.values()][2:] for row in rows]).reshape(-1, 3, 3)
    assert (r.transpose(1, 2) @ r - torch.eye(3)).abs().max() < 1e-4
    code, said, _ = cli(["likelihood", run, out, "--method", "hutchinson"], capsys)
    assert code == 0 and "Hutchinson, 4 probes" in said


def test_an_so3_run_plots_axis_angle_views(tmp_path):
    _structures()
    run = train(tmp_path, "frames", "data: {name: frames}", steps=50)
    assert fm.load(run).manifold == SO3() and (run / "samples.png").is_file()


@pytest.mark.parametrize(
    ("yaml", "needle"),
    [
        ("data: {manifold: sphere, path: x.csv}", "data.manifold: data.manifold reads a .csv"),
        ("data: {name: moons, columns: [a]}", "data.columns"),
        ("data: {name: quakes}\ncoupling: {name: minibatch_ot}", "coupling.name: data on a"),
        ("data: {name: quakes}\nsample: {method: dopri5}", "sample.method: a manifold model"),
        ("data: {name: quakes}\npath: {schedule: vp}", "kappa_0 = 1 and kappa_1 = 0"),
        ("data: {name: quakes, source: {name: moons}}", "no data.source"),
    ],
)
def test_config_mistakes_are_one_line_errors(tmp_path, capsys, yaml, needle):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml + "\ntrain: {steps: 5}\n")
    code, _, err = cli(["train", cfg, "--out", tmp_path / "run", "--no-progress"], capsys)
    one_line_error(code, err, needle)
    assert not (tmp_path / "run").exists()


def test_fm_train_fits_a_manifold_model_on_a_tensor():
    """The library API: fm.train with a ManifoldFlowModel and the Riemannian loss."""
    sphere = Sphere(2)
    oracle = fm.manifolds.AxialVMFFlow([0.0, 0.0, 1.0], [10.0], [1], [1.0])
    x0 = sphere.random_uniform(2000, generator=torch.Generator().manual_seed(0))
    data = fm.manifolds.solve_manifold_ode(sphere, oracle.velocity, x0, steps=50, method="rk4").x
    torch.manual_seed(0)
    net = fm.models.MLP(dim=3, out_dim=3, hidden=64, depth=2)
    model = ManifoldFlowModel(net, sphere)
    loss = fm.manifolds.RiemannianFlowMatchingLoss(model.path)
    before = -fm.log_likelihood(model, data[:200]).mean()
    fm.train(model, data, steps=300, batch_size=128, lr=3e-3, loss=loss, progress=False)
    after = -fm.log_likelihood(model, data[:200]).mean()
    # uniform is log(4 pi) = 2.53 nats, the truth about 0.18 here; 300 steps get well below 2
    assert before > 2.3 and after < 1.6


@pytest.mark.slow
def test_airports_demo_runs_end_to_end(tmp_path, capsys):
    pytest.importorskip("airportsdata")
    out = tmp_path / "demo"
    argv = ["demo", "--dataset", "airports", "--steps", "30", "--out", out, "--no-progress"]
    code, said, _ = cli(argv, capsys)
    assert code == 0 and "airports demo: 30 steps" in said
    assert "held-out NLL" in (out / "eval.txt").read_text()
    for name in ("samples.png", "globe.png", "quality_vs_nfe.png"):
        assert (out / name).is_file()
