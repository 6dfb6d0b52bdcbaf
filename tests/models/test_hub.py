"""Hub-style sharing: the model card, loading a Hub repo id from a cache the test fills
(``HF_HUB_OFFLINE=1``, no network), and ``push_to_hub`` against a recording fake ``HfApi``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest
import torch

import flowmatch as fm
from flowmatch.errors import ModelFileError
from flowmatch.models import hub
from flowmatch.models.files import load_spec

hf = pytest.importorskip("huggingface_hub")

COMMIT = "0123456789abcdef0123456789abcdef01234567"  # a 40-hex commit hash
PICKLES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")


def _model(seed: int = 0) -> fm.FlowModel:
    torch.manual_seed(seed)
    net = fm.models.MLP(dim=2, hidden=16, depth=2, time_embed_dim=8)
    path = fm.AffinePath(fm.schedules.Cosine())
    model = fm.FlowModel(net, path=path, shape=(2,), info={"data": "moons"})
    with torch.no_grad():  # the output layer starts at zero: make samples depend on weights
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def _samples(model: torch.nn.Module) -> torch.Tensor:
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    return fm.sample(model, x0, steps=4)


def _front_matter(text: str) -> list[str]:
    lines = text.splitlines()
    assert lines[0] == "---", text[:200]
    return lines[1 : lines.index("---", 1)]


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An offline Hub with an empty cache under tmp_path (the constants are read at import:
    set both the environment and the loaded module's values)."""
    from huggingface_hub import constants

    home = tmp_path / "hf_home"
    cache = home / "hub"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def _fill_cache(cache: Path, repo_id: str, source: Path, *, ref: str = "main") -> Path:
    """Lay ``source``'s files out as huggingface_hub 2.4 does after a download:
    ``models--user--name/blobs/<sha256>``, ``snapshots/<commit>/<file>`` symlinks to the blobs
    and ``refs/<ref>`` holding the commit hash (no newline)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for file in sorted(source.iterdir()):
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(COMMIT)
    return snapshot


# ------------------------------------------------------------------------------ model card
def test_save_pretrained_writes_a_model_card_that_loading_ignores(tmp_path):
    model = _model()
    model.save_pretrained(tmp_path / "m")
    text = (tmp_path / "m" / "README.md").read_text()
    front = _front_matter(text)
    assert "library_name: flowmatch" in front
    assert '- "flow-matching"' in front and '- "mlp"' in front
    assert not any(line.startswith("license") for line in front)  # not known: not claimed
    assert "| kind | `flow` |" in text and "| architecture | `mlp` |" in text
    assert "| training data | `moons` |" in text
    assert '| path | `{"schedule": "cosine"}` |' in text
    assert "| prediction | `velocity` |" in text
    assert "| hidden | `16` |" in text and "| time_embed_dim | `8` |" in text
    assert "## Quality" not in text
    assert not list((tmp_path / "m").glob(".*"))  # written atomically: no temporary left
    # the loader and the schema take the directory with its README as before
    assert load_spec(tmp_path / "m")["arch"]["name"] == "mlp"
    torch.testing.assert_close(_samples(fm.load(tmp_path / "m")), _samples(model))


def test_card_facts_license_data_and_quality_table(tmp_path):
    table = "method steps NFE W2\nmidpoint 2 4 0.1234\n"
    card = {"license": "mit", "data": "/home/me/data/points.csv", "quality": table}
    _model().save_pretrained(tmp_path / "m", card=card)
    text = (tmp_path / "m" / "README.md").read_text()
    assert 'license: "mit"' in _front_matter(text)
    assert "| training data | `points.csv` |" in text  # a file's name, not a local path
    assert "/home/me" not in text
    assert "## Quality" in text and "midpoint 2 4 0.1234" in text


def test_an_unknown_card_key_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ModelFileError, match="unknown keys"):
        _model().save_pretrained(tmp_path / "m", card={"licence": "mit"})
    assert not (tmp_path / "m").exists()


def test_a_discrete_model_gets_a_card_too(tmp_path):
    fd = fm.discrete
    path = fd.MixturePath(5, source="mask")
    net = fm.models.SequenceTransformer(
        4, vocab_size=path.num_ids, out_size=5, dim=32, depth=1, heads=2
    )
    fd.DiscreteFlowModel(net, path, length=4).save_pretrained(tmp_path / "d")
    text = (tmp_path / "d" / "README.md").read_text()
    assert "| kind | `discrete` |" in text and '- "discrete-flow-matching"' in text
    assert isinstance(fm.load(tmp_path / "d"), fm.discrete.DiscreteFlowModel)


TINY = [
    "model.hidden=32",
    "model.depth=2",
    "train.batch_size=64",
    "train.steps=20",
    "train.log_every=10",
    "train.eval_every=100000",
    "eval.steps=[2]",
    "eval.methods=[midpoint]",
    "eval.num_samples=200",
    "eval.draws=2",
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from flowmatch.train.config import load_config
    from flowmatch.train.trainer import Trainer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("hub") / "run"
        Trainer(load_config(None, TINY), out, progress=False, echo=lambda _: None).run()
    finally:
        torch.set_num_threads(threads)
    return out


def test_a_finished_run_has_a_card_with_its_quality_table(finished_run):
    text = (finished_run / "model" / "README.md").read_text()
    table = (finished_run / "eval.txt").read_text().strip()
    assert table and table in text
    assert "## Quality" in text and "| training data | `checkerboard` |" in text
    assert "library_name: flowmatch" in _front_matter(text)


def test_write_model_card_rewrites_it_from_the_run(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "model" / "README.md").unlink()
    (run / "eval.txt").write_text("method W2\nmidpoint 0.5\n")
    written = hub.write_model_card(run, {"license": "apache-2.0"})
    assert written == run / "model" / "README.md"
    text = written.read_text()
    assert "midpoint 0.5" in text and 'license: "apache-2.0"' in text


# ------------------------------------------------------------------------------ loading
def test_load_a_hub_id_from_the_cache_samples_as_the_original(tmp_path, hub_cache):
    model = _model()
    model.save_pretrained(tmp_path / "m")
    _fill_cache(hub_cache, "user/name", tmp_path / "m")
    loaded = fm.load("user/name")
    assert isinstance(loaded, fm.FlowModel) and loaded.info["data"] == "moons"
    torch.testing.assert_close(_samples(loaded), _samples(model), rtol=0, atol=0)
    again = fm.FlowModel.from_pretrained("user/name", revision=COMMIT, weights="model")
    torch.testing.assert_close(_samples(again), _samples(model), rtol=0, atol=0)
    assert load_spec("user/name")["path"] == {"schedule": "cosine"}


def test_a_tag_revision_is_read_from_its_ref(tmp_path, hub_cache):
    model = _model(3)
    model.save_pretrained(tmp_path / "m")
    _fill_cache(hub_cache, "user/tagged", tmp_path / "m", ref="v1")
    loaded = fm.load("user/tagged", revision="v1")
    torch.testing.assert_close(_samples(loaded), _samples(model), rtol=0, atol=0)
    with pytest.raises(ModelFileError, match=r"^user/tagged: .*not in the local cache"):
        fm.load("user/tagged")  # no refs/main in the cache


def test_a_local_path_wins_over_a_hub_id(tmp_path, hub_cache, monkeypatch):
    hub_model, local_model = _model(1), _model(2)
    hub_model.save_pretrained(tmp_path / "h")
    _fill_cache(hub_cache, "user/name", tmp_path / "h")
    monkeypatch.chdir(tmp_path)
    local_model.save_pretrained(Path("user") / "name")
    torch.testing.assert_close(_samples(fm.load("user/name")), _samples(local_model))


@pytest.mark.parametrize("revision", [None, "v2"])
def test_a_repo_missing_offline_is_one_line_naming_it(hub_cache, revision):
    with pytest.raises(ModelFileError) as err:
        fm.load("someone/missing-model", revision=revision)
    message = str(err.value)
    assert "\n" not in message and message.startswith("someone/missing-model")
    assert "cache" in message and "HF_HUB_OFFLINE" in message


def test_a_hub_repo_without_config_json_is_named(tmp_path, hub_cache):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model.safetensors").write_bytes(b"x")
    _fill_cache(hub_cache, "user/other", tmp_path / "other")
    with pytest.raises(ModelFileError, match=r"^user/other: .*no config\.json"):
        fm.load("user/other")


def test_without_huggingface_hub_a_hub_id_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import raises ImportError
    with pytest.raises(ModelFileError) as err:
        fm.load("user/name")
    message = str(err.value)
    assert "\n" not in message and "pip install 'flowmatch[hub]'" in message
    with pytest.raises(ModelFileError, match=r"flowmatch\[hub\]"):
        hub.push_to_hub(_model(), "user/name")


def test_only_config_safetensors_and_card_are_downloaded(monkeypatch, tmp_path):
    calls = []
    _model().save_pretrained(tmp_path / "m")

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(tmp_path / "m")

    monkeypatch.setattr(hf, "snapshot_download", fake_snapshot_download)
    fm.load("user/name", revision="v3")
    ((repo_id, kwargs),) = calls
    assert repo_id == "user/name" and kwargs["revision"] == "v3"
    assert sorted(kwargs["allow_patterns"]) == ["*.safetensors", "README.md", "config.json"]


def test_hub_errors_become_one_line_model_file_errors(monkeypatch):
    from huggingface_hub import errors

    response = SimpleNamespace(headers={}, request=None, status_code=404)

    def missing(repo_id, **kwargs):
        message = "404 Client Error.\n\nRepository Not Found"
        raise errors.RepositoryNotFoundError(message, response=response)

    monkeypatch.setattr(hf, "snapshot_download", missing)
    with pytest.raises(ModelFileError) as err:
        fm.load("user/nothing")
    assert "\n" not in str(err.value) and "no such local directory or Hugging Face Hub repo" in (
        str(err.value)
    )


def test_import_flowmatch_and_local_loading_do_not_import_huggingface_hub(tmp_path):
    _model().save_pretrained(tmp_path / "m")
    code = (
        "import sys, flowmatch as fm; fm.load(sys.argv[1]); print('huggingface_hub' in sys.modules)"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "m")],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------ upload
class FakeApi:
    """Records ``create_repo`` and ``upload_folder``; the upload keeps the files it would send
    (as the real one filters them with ``allow_patterns``)."""

    calls: ClassVar[list[tuple[str, dict]]] = []

    def __init__(self, token=None, **kwargs):
        self.token = token

    def create_repo(self, repo_id, **kwargs):
        FakeApi.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, *, folder_path, allow_patterns, **kwargs):
        from huggingface_hub.utils import filter_repo_objects

        folder = Path(folder_path)
        names = sorted(p.name for p in folder.rglob("*") if p.is_file())
        kept = list(filter_repo_objects(names, allow_patterns=allow_patterns))
        files = {name: (folder / name).read_bytes() for name in kept}
        FakeApi.calls.append(
            ("upload_folder", {"allow_patterns": allow_patterns, "files": files, **kwargs})
        )
        return "commit-info"


@pytest.fixture
def fake_api(monkeypatch):
    FakeApi.calls = []
    monkeypatch.setattr(hf, "HfApi", FakeApi)
    return FakeApi


def test_push_to_hub_uploads_the_model_files_and_card_only(fake_api, finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "model" / "weights.pt").write_bytes(b"a pickle that must not be uploaded")
    result = hub.push_to_hub(
        run, "user/name", token="hf_x", private=True, commit_message="first model"
    )
    assert result == "commit-info"
    (create, c_kwargs), (upload, u_kwargs) = fake_api.calls
    assert create == "create_repo" and upload == "upload_folder"
    assert c_kwargs["repo_id"] == "user/name" and c_kwargs["exist_ok"] is True
    assert c_kwargs["private"] is True and c_kwargs["token"] == "hf_x"
    assert u_kwargs["repo_id"] == "user/name" and u_kwargs["commit_message"] == "first model"
    assert sorted(u_kwargs["allow_patterns"]) == ["*.safetensors", "README.md", "config.json"]
    files = u_kwargs["files"]
    assert sorted(files) == ["README.md", "config.json", "ema.safetensors", "model.safetensors"]
    assert not any(name.endswith(PICKLES) for name in files)
    card = files["README.md"].decode()
    assert 'fm.load("user/name")' in card and "## Quality" in card
    assert files["ema.safetensors"] == (run / "model" / "ema.safetensors").read_bytes()


def test_a_pushed_model_loads_back_from_the_hub_cache(fake_api, tmp_path, hub_cache):
    model = _model(4)
    model.push_to_hub("user/pushed")  # the method: saves the model, then uploads
    files = fake_api.calls[-1][1]["files"]
    assert sorted(files) == ["README.md", "config.json", "ema.safetensors", "model.safetensors"]
    staged = tmp_path / "staged"
    staged.mkdir()
    for name, data in files.items():
        (staged / name).write_bytes(data)
    _fill_cache(hub_cache, "user/pushed", staged)
    loaded = fm.load("user/pushed")
    torch.testing.assert_close(_samples(loaded), _samples(model), rtol=0, atol=0)
    assert json.loads(files["config.json"])["arch"]["name"] == "mlp"


def test_push_to_hub_refuses_a_directory_that_is_no_model(fake_api, tmp_path):
    with pytest.raises(ModelFileError, match="not a run or model directory"):
        hub.push_to_hub(tmp_path, "user/name")
    assert fake_api.calls == []
