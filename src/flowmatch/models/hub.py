"""Sharing models: the model card (``README.md``) and the Hugging Face Hub.

A model directory (``config.json`` + ``model.safetensors`` + ``ema.safetensors``) gets a
model card, ``README.md``: YAML front matter (``library_name: flowmatch``, tags, license)
and what the model is (its kind, architecture and arguments, path, prediction, training
data) with, for a finished training run, the measured quality table of ``eval.txt``.
Loading ignores it.

:func:`flowmatch.load` (and ``from_pretrained``) also accepts a Hub repo id
(``"user/name"``, with ``revision=``) when ``huggingface_hub`` is installed
(``pip install 'flowmatch[hub]'``): only ``config.json``, the safetensors weights and
``README.md`` are downloaded, never a pickle. :func:`push_to_hub` uploads the same files.
``huggingface_hub`` is imported only when a Hub id is used.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from flowmatch.atomic import atomic_path
from flowmatch.errors import ModelFileError

__all__ = [
    "HUB_FILES",
    "download",
    "is_hub_id",
    "model_card",
    "push_to_hub",
    "write_card",
    "write_model_card",
]

HUB_FILES = ("config.json", "*.safetensors", "README.md")
"""The files of a model that go to and come from the Hub (no pickle)."""

CARD_KEYS = ("title", "description", "license", "tags", "data", "quality", "repo_id")
"""The keys of a ``card`` dict (see :func:`model_card`)."""

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}")
_PLACEHOLDER = "path/to/model"
_INSTALL = "pip install 'flowmatch[hub]'"
_KINDS = {
    "flow": "continuous flow matching",
    "discrete": "discrete flow matching",
    "mixed": "mixed continuous/categorical table flow",
    "manifold": "Riemannian flow matching",
}
_SKIP = ("format_version", "arch", "kind", "standardizer", "vocab", "columns", "class_names")


def is_hub_id(path: Any) -> bool:
    """Whether ``path`` reads as a Hub repo id (``"user/name"``) and not an existing path.

    Only a ``str`` can be one (a :class:`~pathlib.Path` is always local), and a path that
    exists locally always wins.
    """
    return (
        isinstance(path, str)
        and _HUB_ID.fullmatch(path) is not None
        and ".." not in path
        and not Path(path).exists()
    )


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def download(repo_id: str, revision: str | None = None) -> Path:
    """The local snapshot of a Hub model repo: ``config.json``, ``*.safetensors`` and
    ``README.md`` only (``huggingface_hub.snapshot_download``; its cache, ``HF_HOME`` /
    ``HF_HUB_CACHE``, and offline mode, ``HF_HUB_OFFLINE=1``, apply).

    Raises:
        ModelFileError: one line naming the repo: huggingface_hub is not installed, the repo
            or revision does not exist (or is private), it is not cached while offline, the
            Hub cannot be reached, or the repo holds no ``config.json``.
    """
    where = repo_id if revision is None else f"{repo_id} (revision {revision!r})"
    try:
        import huggingface_hub
        from huggingface_hub import errors
    except ImportError:
        raise ModelFileError(
            f"{repo_id}: no such local directory; to load it from the Hugging Face Hub, {_INSTALL}"
        ) from None
    from flowmatch import __version__

    try:
        folder: str | Path = huggingface_hub.snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=list(HUB_FILES),
            library_name="flowmatch",
            library_version=__version__,
        )
    except errors.RevisionNotFoundError:
        raise ModelFileError(f"{where}: no such revision of the Hugging Face Hub repo") from None
    except errors.RepositoryNotFoundError:
        raise ModelFileError(
            f"{where}: no such local directory or Hugging Face Hub repo (a private or gated "
            "repo needs a token: `hf auth login` or HF_TOKEN)"
        ) from None
    except errors.LocalEntryNotFoundError:
        raise ModelFileError(
            f"{where}: no such local directory, and the Hugging Face Hub repo is not in the "
            "local cache while the Hub cannot be reached (HF_HUB_OFFLINE=1 or no network)"
        ) from None
    except errors.HFValidationError as err:
        raise ModelFileError(
            f"{repo_id}: no such local directory, nor a valid Hub repo id ({_one_line(err)})"
        ) from None
    except (errors.HfHubHTTPError, OSError, ValueError) as err:
        raise ModelFileError(
            f"{where}: cannot download from the Hugging Face Hub "
            f"({type(err).__name__}: {_one_line(err)})"
        ) from None
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ModelFileError(f"{where}: the Hub repo holds no config.json (not a flowmatch model)")
    return folder


# ------------------------------------------------------------------------------ model card
def _value(value: Any, limit: int = 160) -> str:
    """A table cell: compact JSON in backticks, cut at ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "))
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"


def _data_name(data: Any) -> str | None:
    """The training data's name (a file's name, not its local path)."""
    if not isinstance(data, str) or not data:
        return None
    return Path(data).name if "/" in data or "\\" in data else data


def _tag(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-")


def model_card(spec: dict[str, Any], card: dict[str, Any] | None = None) -> str:
    """The text of ``README.md`` for a model's ``config.json`` description.

    Args:
        spec: the ``config.json`` description (``model.config()`` or a checked file).
        card: optional facts: ``title``, ``description``, ``license`` (an SPDX id such as
            ``mit``), extra ``tags``, ``data`` (the training data's name; default: the
            spec's), ``quality`` (the measured quality table, plain text such as
            ``eval.txt``) and ``repo_id`` (used in the usage example).

    Raises:
        ValueError: an unknown key in ``card``.
    """
    card = dict(card or {})
    unknown = sorted(set(card) - set(CARD_KEYS))
    if unknown:
        raise ValueError(f"card: unknown keys {unknown} (known: {', '.join(CARD_KEYS)})")
    kind = spec.get("kind") or "flow"
    arch = spec["arch"] if isinstance(spec.get("arch"), dict) else {}
    arch_name = str(arch.get("name", "custom"))
    data = _data_name(card.get("data", spec.get("data")))
    tags = ["flowmatch", "flow-matching", _tag(_KINDS.get(kind, kind)), _tag(arch_name)]
    tags += [str(t) for t in card.get("tags") or []]
    tags = list(dict.fromkeys(t for t in tags if t))
    front = ["---", "library_name: flowmatch", "tags:"]
    front += [f"- {json.dumps(t)}" for t in tags]
    if card.get("license"):
        front.append(f"license: {json.dumps(str(card['license']))}")
    front.append("---")
    title = card.get("title") or (
        f"{arch_name} {kind} model" + (f" trained on {data}" if data else "")
    )
    lines = [*front, "", f"# {title}", ""]
    if card.get("description"):
        lines += [str(card["description"]).strip(), ""]
    lines += [
        f"A {_KINDS.get(kind, kind)} model saved by "
        "[flowmatch](https://pypi.org/project/flowmatch/): `config.json` (what the model "
        "is), `model.safetensors` (raw weights) and `ema.safetensors` (averaged weights, "
        "loaded by default). No pickle.",
        "",
        "## Model",
        "",
        "| | |",
        "|---|---|",
        f"| kind | `{kind}` |",
        f"| architecture | `{arch_name}` |",
    ]
    if data:
        lines.append(f"| training data | {_value(data)} |")
    for key, value in spec.items():
        if key not in _SKIP and key != "data" and value is not None:
            lines.append(f"| {key} | {_value(value)} |")
    if isinstance(spec.get("class_names"), list):
        lines.append(f"| class_names | {_value(spec['class_names'])} |")
    args = {k: v for k, v in arch.items() if k != "name"}
    if args:
        lines += ["", f"### Architecture arguments (`{arch_name}`)", "", "| argument | value |"]
        lines += ["|---|---|", *(f"| {k} | {_value(v)} |" for k, v in sorted(args.items()))]
    where = card.get("repo_id") or _PLACEHOLDER
    lines += ["", "## Usage", "", "```python", "import flowmatch as fm", ""]
    lines.append(f'model = fm.load("{where}")  # a local directory or a Hub repo id')
    shape = spec.get("shape")
    if kind == "flow" and isinstance(shape, list):
        dims = ", ".join(str(d) for d in shape)
        lines += [f"x1 = fm.sample(model, model.draw_source(1000), steps=8)  # (1000, {dims})"]
        if spec.get("standardizer") is not None:
            lines.append("x1 = model.decode(x1)  # in the data's units")
    lines += ["```", ""]
    if card.get("quality"):
        lines += [
            "## Quality",
            "",
            "Measured by flowmatch at the end of training (`eval.txt`):",
            "",
            "```text",
            str(card["quality"]).rstrip(),
            "```",
            "",
        ]
    return "\n".join(lines)


def write_card(
    directory: str | Path, spec: dict[str, Any], card: dict[str, Any] | None = None
) -> Path:
    """Write :func:`model_card` to ``directory/README.md`` atomically; its path."""
    target = Path(directory) / "README.md"
    text = model_card(spec, card)
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target


def write_model_card(run_dir: str | Path, card: dict[str, Any] | None = None) -> Path:
    """(Re)write the model card of a run (or model) directory from its ``config.json``
    and, for a run, the measured quality table of its ``eval.txt``.

    Args:
        run_dir: a run directory (holding ``model/``) or a model directory.
        card: further facts (see :func:`model_card`); its ``quality`` wins over eval.txt.

    Returns:
        The path of the ``README.md`` written (in the model directory).

    Raises:
        ModelFileError: not a run or model directory, or an invalid ``config.json``.
    """
    from flowmatch.models.files import _model_dir, load_spec

    directory = _model_dir(Path(run_dir))
    spec = load_spec(directory)
    card = dict(card or {})
    for report in (Path(run_dir) / "eval.txt", directory / "eval.txt"):
        if "quality" not in card and report.is_file():
            card["quality"] = report.read_text(encoding="utf-8", errors="replace")
    return write_card(directory, spec, card)


# ------------------------------------------------------------------------------ upload
def _stage(model_or_run_dir: Any, folder: Path, repo_id: str) -> None:
    """Copy (or save) the model's Hub files into ``folder``, the card naming ``repo_id``."""
    from flowmatch.models.files import _model_dir, load_spec

    if hasattr(model_or_run_dir, "save_pretrained"):
        model_or_run_dir.save_pretrained(folder, card={"repo_id": repo_id})
        return
    directory = _model_dir(Path(model_or_run_dir))
    spec = load_spec(directory)  # a model that cannot be loaded back is never uploaded
    for name in ("config.json", "model.safetensors", "ema.safetensors"):
        if not (directory / name).is_file():
            raise ModelFileError(f"{directory / name}: missing; cannot upload the model")
        shutil.copyfile(directory / name, folder / name)
    readme = directory / "README.md"
    if readme.is_file():
        text = readme.read_text(encoding="utf-8", errors="replace")
        (folder / "README.md").write_text(
            text.replace(f'fm.load("{_PLACEHOLDER}")', f'fm.load("{repo_id}")'), encoding="utf-8"
        )
    else:
        write_card(folder, spec, {"repo_id": repo_id})


def push_to_hub(
    model_or_run_dir: Any,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload flowmatch model",
    revision: str | None = None,
) -> Any:
    """Upload a model to the Hugging Face Hub: ``config.json``, ``model.safetensors``,
    ``ema.safetensors`` and the ``README.md`` model card (nothing else, no pickle).

    The repo is created if needed (``HfApi().create_repo(exist_ok=True)``), then the files
    go up in one commit (``upload_folder``). ``fm.load(repo_id)`` reads them back.

    Args:
        model_or_run_dir: a model (saved with its own weights as ``ema.safetensors``: push a
            run directory to share the averaged weights), or a run or model directory.
        repo_id: ``"user/name"`` or ``"org/name"``.
        token: a Hub token; None: the saved login or ``HF_TOKEN``.
        private: create the repo private.
        commit_message: the commit's message.
        revision: the branch to commit to (the default branch when None).

    Returns:
        The ``CommitInfo`` of ``upload_folder``.

    Raises:
        ModelFileError: huggingface_hub is not installed, or the model cannot be saved or
            read back.
    """
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise ModelFileError(f"push_to_hub needs huggingface_hub: {_INSTALL}") from None
    with tempfile.TemporaryDirectory(prefix="flowmatch-hub-") as tmp:
        folder = Path(tmp)
        _stage(model_or_run_dir, folder, repo_id)
        api = HfApi(token=token)
        api.create_repo(repo_id, token=token, private=private, exist_ok=True)
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            commit_message=commit_message,
            token=token,
            revision=revision,
            allow_patterns=list(HUB_FILES),
        )
