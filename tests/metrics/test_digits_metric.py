"""FD / KID of digits in the shipped classifier's features: closed forms, floors, the weights."""

from __future__ import annotations

import importlib.util
import math
import sys
from fnmatch import fnmatch
from importlib.resources import files
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from flowmatch.data.images import load_digits
from flowmatch.metrics import (
    DigitsClassifier,
    classify,
    digits_features,
    digits_quality,
    frechet_distance,
    frechet_distance_gaussians,
    kernel_inception_distance,
    load_classifier,
)
from flowmatch.metrics.digits import CLASSIFIER_FILE
from flowmatch.models.files import ModelFileError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Everything here is small: one thread is as fast and immune to a busy machine."""


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def script():
    """``scripts/train_digits_classifier.py`` imported as a module."""
    path = ROOT / "scripts" / "train_digits_classifier.py"
    name = "_flowmatch_train_digits_classifier"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


def _rotation(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q


def _random_spd(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(d, d, generator=g, dtype=torch.float64)
    return m @ m.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


# ----------------------------------------------------------------------------- Fréchet distance


def test_fd_of_diagonal_gaussians_is_the_closed_form_also_after_a_rotation():
    mu1 = torch.tensor([0.0, 1.0, -1.0, 0.5], dtype=torch.float64)
    mu2 = torch.tensor([0.5, 1.0, 0.0, 0.5], dtype=torch.float64)
    s1 = torch.tensor([1.0, 4.0, 0.25, 2.0], dtype=torch.float64)
    s2 = torch.tensor([2.0, 1.0, 0.25, 0.5], dtype=torch.float64)
    # Commuting covariances: FD = |mu1 - mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2.
    exact = 1.25 + (1 - math.sqrt(2)) ** 2 + 1.0 + (math.sqrt(2) - math.sqrt(0.5)) ** 2
    fd = frechet_distance_gaussians(mu1, torch.diag(s1), mu2, torch.diag(s2))
    assert fd == pytest.approx(exact, rel=1e-12)  # float64 round-off only
    # FD is invariant under a common rotation, which makes the covariances non-diagonal.
    q = _rotation(4, seed=1)
    rotated = frechet_distance_gaussians(
        q @ mu1, q @ torch.diag(s1) @ q.T, q @ mu2, q @ torch.diag(s2) @ q.T
    )
    assert rotated == pytest.approx(exact, rel=1e-10)


def test_fd_of_non_commuting_2d_gaussians_is_the_closed_form():
    # For 2 x 2 PSD M, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)); with M = S1^1/2 S2 S1^1/2,
    # tr M = tr(S1 S2) and det M = det S1 det S2.
    s1 = torch.tensor([[2.0, 0.7], [0.7, 1.0]], dtype=torch.float64)
    s2 = torch.tensor([[0.5, -0.2], [-0.2, 3.0]], dtype=torch.float64)
    assert not torch.allclose(s1 @ s2, s2 @ s1)
    mu1 = torch.tensor([1.0, 2.0], dtype=torch.float64)
    mu2 = torch.tensor([-1.0, 0.5], dtype=torch.float64)
    cross = math.sqrt(
        torch.trace(s1 @ s2).item() + 2 * math.sqrt(torch.det(s1).item() * torch.det(s2).item())
    )
    exact = 4.0 + 2.25 + torch.trace(s1).item() + torch.trace(s2).item() - 2 * cross
    assert frechet_distance_gaussians(mu1, s1, mu2, s2) == pytest.approx(exact, rel=1e-12)


def test_fd_to_a_point_mass_and_between_equal_gaussians():
    cov = _random_spd(6, seed=2)
    mu1, mu2 = torch.zeros(6, dtype=torch.float64), torch.arange(6, dtype=torch.float64)
    zero = torch.zeros(6, 6, dtype=torch.float64)
    # A point mass (singular covariance): FD = |mu1 - mu2|^2 + tr(cov), both orders.
    exact = 55.0 + torch.trace(cov).item()
    assert frechet_distance_gaussians(mu1, zero, mu2, cov) == pytest.approx(exact, rel=1e-12)
    assert frechet_distance_gaussians(mu2, cov, mu1, zero) == pytest.approx(exact, rel=1e-12)
    # Equal Gaussians: 0 up to the round-off of the eigen-decompositions (~1e-15 * tr).
    assert frechet_distance_gaussians(mu2, cov, mu2, cov) == pytest.approx(0.0, abs=1e-12)


def test_fd_is_symmetric_and_matches_scipy_sqrtm_in_many_dimensions():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    s1, s2 = _random_spd(20, seed=3), _random_spd(20, seed=4)
    mu1, mu2 = torch.full((20,), 0.1, dtype=torch.float64), torch.zeros(20, dtype=torch.float64)
    fd = frechet_distance_gaussians(mu1, s1, mu2, s2)
    assert frechet_distance_gaussians(mu2, s2, mu1, s1) == pytest.approx(fd, rel=1e-10)
    # An independent algorithm: the Schur-based square root of the non-symmetric S1 S2.
    cross = scipy_linalg.sqrtm((s1 @ s2).numpy()).real.trace()
    reference = 0.2 + torch.trace(s1).item() + torch.trace(s2).item() - 2 * cross
    assert fd == pytest.approx(reference, rel=1e-8)


def test_fd_of_large_gaussian_samples_approaches_the_closed_form():
    g = torch.Generator().manual_seed(0)
    mu1, mu2 = torch.tensor([0.0, 1.0, -1.0]), torch.tensor([0.5, 1.0, 0.0])
    s1, s2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([2.0, 1.0, 0.25])
    exact = 1.25 + (1 - math.sqrt(2)) ** 2 + 1.0
    n = 20_000
    a = mu1 + s1.sqrt() * torch.randn(n, 3, generator=g, dtype=torch.float64)
    b = mu2 + s2.sqrt() * torch.randn(n, 3, generator=g, dtype=torch.float64)
    # Over 20 seeds the estimate's spread was 0.025 at N = 20000 (its bias, ~tr(cov)/N, is
    # below 1e-3): 0.1 is four standard deviations.
    assert frechet_distance(a, b) == pytest.approx(exact, abs=0.1)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-10)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-10)


def test_fd_and_kid_reject_bad_features():
    a = torch.randn(10, 3)
    with pytest.raises(ValueError, match="same dimension"):
        frechet_distance(a, torch.randn(10, 4))
    with pytest.raises(ValueError, match="NaN"):
        kernel_inception_distance(a, torch.full((10, 3), math.nan))
    with pytest.raises(ValueError, match=r"\(N, F\)"):
        frechet_distance(a[:1], a)
    with pytest.raises(ValueError, match="subsets"):
        kernel_inception_distance(a, a, subsets=0)


# ------------------------------------------------------------------------------------------ KID


def test_kid_of_point_masses_is_the_kernel_mmd():
    # Every sample equal: the unbiased estimate is exactly k(p, p) + k(q, q) - 2 k(p, q) with
    # k(x, y) = (x.y / F + 1)^3, here (1/2 + 1)^3 + (1/2 + 1)^3 - 2 (0 + 1)^3 = 4.75.
    a = torch.tensor([[1.0, 0.0]]).repeat(50, 1)
    b = torch.tensor([[0.0, 1.0]]).repeat(40, 1)
    kid, kid_std = kernel_inception_distance(a, b, subsets=3, subset_size=30)
    assert kid == pytest.approx(4.75, rel=1e-12)
    assert kid_std == pytest.approx(0.0, abs=1e-12)


def test_kid_is_zero_for_one_distribution_and_positive_for_a_shift():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1000, 16, generator=g), torch.randn(1000, 16, generator=g)
    kid, kid_std = kernel_inception_distance(a, b)
    assert abs(kid) < 3 * kid_std
    shifted, shifted_std = kernel_inception_distance(a, b + 0.5)
    assert shifted > 5 * shifted_std
    assert shifted > 20 * (abs(kid) + kid_std)


def test_kid_is_reproducible_and_follows_its_generator():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(300, 8, generator=g), torch.randn(300, 8, generator=g) + 0.2
    assert kernel_inception_distance(a, b) == kernel_inception_distance(a, b)
    seeded = kernel_inception_distance(a, b, generator=torch.Generator().manual_seed(0))
    assert seeded == kernel_inception_distance(a, b)
    other = kernel_inception_distance(a, b, generator=torch.Generator().manual_seed(5))
    assert other != seeded


# ---------------------------------------------------------------------- the shipped classifier


def test_shipped_classifier_is_small_cached_frozen_and_accurate(digits):
    model = load_classifier()
    assert isinstance(model, DigitsClassifier)
    assert load_classifier() is model
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) < 100_000
    labels = classify(digits.test)
    assert labels.dtype == torch.int64 and labels.shape == digits.test_labels.shape
    assert (labels == digits.test_labels).double().mean() >= 0.97
    assert digits_features(digits.test[:5]).shape == (5, model.feature_dim)


def test_shipped_weights_are_package_data_written_by_the_default_script_run(script):
    from safetensors import safe_open

    resource = files("flowmatch.metrics") / CLASSIFIER_FILE
    assert resource.is_file()
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["flowmatch"]
    assert any(fnmatch(f"metrics/{CLASSIFIER_FILE}", p) for p in patterns)
    with safe_open(str(resource), "pt") as fh:
        meta = fh.metadata()
    defaults = script.build_parser().parse_args([])
    assert meta["seed"] == str(defaults.seed) and meta["steps"] == str(defaults.steps)
    assert defaults.out.resolve() == Path(str(resource)).resolve()
    assert float(meta["test_accuracy"]) >= 0.97


def test_floor_is_far_below_degraded_digits(digits):
    floor = digits_quality(digits.test, digits.train, labels=digits.test_labels)
    assert floor["accuracy"] >= 0.97
    assert abs(floor["kid"]) < 3 * floor["kid_std"]  # real held-out digits: KID ~ 0
    g = torch.Generator().manual_seed(0)
    noisy = digits.test + 0.3 * torch.randn(digits.test.shape, generator=g)
    noise = torch.randn(digits.test.shape, generator=g).clamp(-1, 1)
    shifted = F.pad(digits.train, (2, 0, 2, 0), value=-1.0)[..., :8, :8]  # 2 px down-right
    mild = digits_quality(noisy, digits.train)
    for bad in (digits_quality(noise, digits.train), digits_quality(shifted, digits.train)):
        # Measured: floor FD 6.6, KID -6 +- 5; noise / shift FD ~450, KID ~190 +- 20.
        assert bad["fd"] > 20 * floor["fd"]
        assert bad["kid"] > 5 * (abs(floor["kid"]) + floor["kid_std"])
        assert bad["kid"] > 5 * bad["kid_std"]
        assert bad["fd"] > mild["fd"] > floor["fd"]  # the metric orders the degradations


def test_quality_clamps_images_and_checks_its_inputs(digits):
    wild = 3.0 * digits.test[:100]
    assert digits_quality(wild, digits.train) == digits_quality(wild.clamp(-1, 1), digits.train)
    assert torch.equal(classify(wild), classify(wild.clamp(-1, 1)))
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\)"):
        digits_quality(digits.test[:, :, :4], digits.train)
    with pytest.raises(ValueError, match="NaN"):
        classify(torch.full((2, 1, 8, 8), math.nan))
    with pytest.raises(ValueError, match="labels"):
        digits_quality(digits.test, digits.train, labels=digits.test_labels[:5])


def test_bad_weights_files_raise_an_error_naming_the_file(tmp_path):
    from safetensors.torch import save_file

    missing = tmp_path / "missing.safetensors"
    with pytest.raises(ModelFileError, match=r"missing\.safetensors.*not found"):
        load_classifier(missing)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ModelFileError, match=r"corrupt\.safetensors"):
        load_classifier(corrupt)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes((files("flowmatch.metrics") / CLASSIFIER_FILE).read_bytes()[:5000])
    with pytest.raises(ModelFileError, match=r"truncated\.safetensors"):
        load_classifier(truncated)
    wrong = tmp_path / "wrong.safetensors"
    save_file({"weight": torch.zeros(3)}, str(wrong))
    with pytest.raises(ModelFileError, match=r"wrong\.safetensors.*DigitsClassifier"):
        load_classifier(wrong)


# ---------------------------------------------------------------------------- training script


def test_training_script_writes_a_loadable_reproducible_file(script, tmp_path, digits):
    from safetensors.torch import load_file

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    out1, out2 = tmp_path / "a" / "clf.safetensors", tmp_path / "clf.safetensors"
    scores = script.main(["--steps", "3", "--out", str(out1)])
    script.main(["--steps", "3", "--out", str(out2)])
    assert set(scores) >= {"train_accuracy", "test_accuracy", "seconds"}
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    first, second = load_file(str(out1)), load_file(str(out2))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)  # the seeded run repeats
    model = load_classifier(out1)
    assert model is not load_classifier()
    shipped = load_classifier().state_dict()
    assert not torch.equal(model.state_dict()["head.weight"], shipped["head.weight"])
    assert model(digits.test[:4]).shape == (4, 10)
    assert list(tmp_path.glob("a/*.tmp*")) == []  # the temporary file was renamed away


def test_random_shift_moves_images_by_at_most_one_pixel(script):
    x = torch.full((64, 1, 8, 8), -1.0)
    x[:, 0, 3, 4] = 1.0  # one bright pixel
    shifted = script.random_shift(x, torch.Generator().manual_seed(0))
    rows, cols = torch.nonzero(shifted[:, 0] > 0, as_tuple=True)[1:]
    assert rows.numel() == 64  # the pixel survives in every image, nothing else lights up
    assert set(rows.tolist()) == {2, 3, 4} and set(cols.tolist()) == {3, 4, 5}
