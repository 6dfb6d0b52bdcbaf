"""FD / KID of Fashion-MNIST in the shipped classifier's features; Inception FID's extra."""

from __future__ import annotations

import importlib.util
import math
import sys
from fnmatch import fnmatch
from importlib.resources import files
from pathlib import Path

import pytest
import torch

from flowmatch._extras import MissingExtraError
from flowmatch.data.fashion import fashion_mnist_dir, load_fashion_mnist
from flowmatch.data.images import ImageSplit, unit_range
from flowmatch.metrics import (
    FashionClassifier,
    fashion_classify,
    fashion_features,
    fashion_quality,
    inception_fid,
    load_fashion_classifier,
)
from flowmatch.metrics.fashion import FASHION_CLASSIFIER_FILE
from flowmatch.models.files import ModelFileError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One thread: the classifier is small, and a busy machine's cores stall torch's threads."""


@pytest.fixture(scope="module")
def fashion():
    """The Fashion-MNIST splits as uint8 (the tests take floats of what they use)."""
    if fashion_mnist_dir() is None:
        pytest.skip(
            "Fashion-MNIST not installed (apt-get install dataset-fashion-mnist, or set "
            "FLOWMATCH_FASHION_MNIST)"
        )
    return load_fashion_mnist(uint8=True)


@pytest.fixture(scope="module")
def script():
    """``scripts/train_fashion_classifier.py`` imported as a module."""
    path = ROOT / "scripts" / "train_fashion_classifier.py"
    name = "_flowmatch_train_fashion_classifier"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


# ---------------------------------------------------------------------- the shipped classifier


def test_shipped_classifier_is_small_cached_frozen_and_shaped():
    resource = files("flowmatch.metrics") / FASHION_CLASSIFIER_FILE
    assert resource.is_file() and len(resource.read_bytes()) < 1_000_000
    model = load_fashion_classifier()
    assert isinstance(model, FashionClassifier)
    assert load_fashion_classifier() is model
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    x = torch.rand(5, 1, 28, 28) * 2 - 1
    assert fashion_features(x).shape == (5, model.feature_dim) == (5, 128)
    labels = fashion_classify(x)
    assert labels.dtype == torch.int64 and labels.shape == (5,)
    assert model(x).shape == (5, 10)


def test_shipped_weights_are_package_data_written_by_the_default_script_run(script):
    from safetensors import safe_open

    resource = files("flowmatch.metrics") / FASHION_CLASSIFIER_FILE
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["flowmatch"]
    assert any(fnmatch(f"metrics/{FASHION_CLASSIFIER_FILE}", p) for p in patterns)
    with safe_open(str(resource), "pt") as fh:
        meta = fh.metadata()
    defaults = script.build_parser().parse_args([])
    assert meta["seed"] == str(defaults.seed) and meta["steps"] == str(defaults.steps)
    assert defaults.out.resolve() == Path(str(resource)).resolve()
    assert float(meta["test_accuracy"]) >= 0.90


def test_classifier_is_at_least_90_percent_right_on_the_test_split(fashion):
    predicted = fashion_classify(fashion.test)  # uint8 images are mapped to [-1, 1]
    accuracy = (predicted == fashion.test_labels).double().mean().item()
    assert accuracy >= 0.90
    floats = unit_range(fashion.test[:200])
    assert torch.equal(fashion_classify(floats), predicted[:200])


# ------------------------------------------------------------------------------- FD, KID, labels


def test_fd_of_a_set_with_itself_is_zero(fashion):
    x = fashion.test[:500]
    q = fashion_quality(x, x)
    assert q["fd"] == pytest.approx(0.0, abs=1e-6)


def test_real_images_score_far_below_noise_and_blur(fashion):
    g = torch.Generator().manual_seed(0)
    train = unit_range(fashion.train[:600])
    reference = fashion_features(fashion.test[:600])
    floor = fashion_quality(
        train, None, labels=fashion.train_labels[:600], reference_features=reference
    )
    assert floor["accuracy"] >= 0.85
    noise = torch.rand(600, 1, 28, 28, generator=g) * 2 - 1
    blur = torch.nn.functional.avg_pool2d(train, 5, stride=1, padding=2)
    bad = fashion_quality(noise, None, reference_features=reference)
    mild = fashion_quality(blur, None, reference_features=reference)
    assert bad["fd"] > 20 * floor["fd"]
    assert bad["kid"] > 5 * (abs(floor["kid"]) + floor["kid_std"])
    assert bad["fd"] > mild["fd"] > floor["fd"]  # the metric orders the degradations
    # the reference features are those fashion_quality computes itself
    assert fashion_quality(noise, fashion.test[:600]) == bad


def test_accuracy_of_wrong_labels_is_low(fashion):
    x, y = fashion.test[:500], fashion.test_labels[:500]
    assert fashion_quality(x, fashion.test[500:1000], labels=y)["accuracy"] >= 0.85
    wrong = fashion_quality(x, fashion.test[500:1000], labels=(y + 1) % 10)["accuracy"]
    assert wrong < 0.10


def test_bad_inputs_raise_one_line_errors(fashion):
    good = fashion.test[:10]
    cases = [
        (lambda: fashion_quality(torch.zeros(4, 1, 8, 8), good), r"\(N, 1, 28, 28\)"),
        (lambda: fashion_quality(good, torch.zeros(4, 3, 28, 28)), r"reference.*\(N, 1, 28, 28\)"),
        (lambda: fashion_features("not a tensor"), "got str"),
        (lambda: fashion_classify(torch.full((2, 1, 28, 28), math.nan)), "NaN"),
        (lambda: fashion_quality(good, good, labels=fashion.test_labels[:3]), "labels"),
        (lambda: fashion_quality(good[:1], good), r"\(N, F\)"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message) as err:
            call()
        assert "\n" not in str(err.value)


def test_bad_weights_files_raise_an_error_naming_the_file(tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(ModelFileError, match=r"missing\.safetensors.*not found"):
        load_fashion_classifier(tmp_path / "missing.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    resource = files("flowmatch.metrics") / FASHION_CLASSIFIER_FILE
    truncated.write_bytes(resource.read_bytes()[:5000])
    with pytest.raises(ModelFileError, match=r"truncated\.safetensors"):
        load_fashion_classifier(truncated)
    wrong = tmp_path / "wrong.safetensors"
    save_file({"weight": torch.zeros(3)}, str(wrong))
    with pytest.raises(ModelFileError, match=r"wrong\.safetensors.*FashionClassifier"):
        load_fashion_classifier(wrong)


# ---------------------------------------------------------------------------- training script


def test_training_script_is_reproducible_and_writes_a_loadable_file(
    script, tmp_path, fashion, monkeypatch
):
    from safetensors import safe_open
    from safetensors.torch import load_file

    small = ImageSplit(
        fashion.train[:300], fashion.train_labels[:300], fashion.test[:200],
        fashion.test_labels[:200], fashion.class_names,
    )  # fmt: skip
    monkeypatch.setattr(script, "load_fashion_mnist", lambda uint8: small)
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    out = tmp_path / "a" / "clf.safetensors"
    scores = script.main(["--steps", "3", "--out", str(out)])
    assert set(scores) >= {"train_accuracy", "test_accuracy", "seconds"}
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    with script._deterministic(threads=1):
        again, _ = script.train(steps=3, seed=0, batch_size=128, lr=3e-3, weight_decay=1e-2)
    first = load_file(str(out))
    assert all(torch.equal(first[k], v) for k, v in again.state_dict().items())  # seeded
    with safe_open(str(out), "pt") as fh:
        assert fh.metadata()["steps"] == "3" and fh.metadata()["seed"] == "0"
    model = load_fashion_classifier(out)
    assert model is not load_fashion_classifier()
    assert model(unit_range(fashion.test[:4])).shape == (4, 10)
    assert list(tmp_path.glob("a/*.tmp*")) == []  # the temporary file was renamed away


def test_random_flip_mirrors_some_images_and_keeps_the_rest(script):
    x = torch.arange(8 * 28 * 28, dtype=torch.float32).reshape(8, 1, 28, 28)
    y = script.random_flip(x, torch.Generator().manual_seed(0))
    flipped = {i for i in range(8) if torch.equal(y[i], x[i].flip(-1))}
    kept = {i for i in range(8) if torch.equal(y[i], x[i])}
    assert flipped | kept == set(range(8)) and flipped and kept


# ------------------------------------------------------------------------------ Inception FID


def test_inception_fid_without_its_extra_is_a_one_line_error(monkeypatch):
    for name in ("torchmetrics", "torch_fidelity"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    x = torch.zeros(4, 1, 28, 28)
    with pytest.raises(MissingExtraError, match=r"pip install 'flowmatch\[fid\]'") as err:
        inception_fid(x, x)
    assert "\n" not in str(err.value) and "Inception FID" in str(err.value)
    assert isinstance(err.value, ImportError)
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(d.startswith("torchmetrics") for d in extras["optional-dependencies"]["fid"])
