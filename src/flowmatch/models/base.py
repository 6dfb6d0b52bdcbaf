"""How the library calls a model: ``model(x_t, t)`` or ``model(x_t, t, cond=cond)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from torch import Tensor, nn

__all__ = ["Pretrained", "call_model", "net_labels"]

T = TypeVar("T")


def call_model(
    model: nn.Module,
    x: Tensor,
    t: Tensor,
    cond: Tensor | None = None,
    *,
    t_end: Tensor | None = None,
) -> Tensor:
    """Evaluate a model at points x (B, *D) and times t (B,), passing ``cond`` and ``t_end``
    (the end time (B,) of a two-time model's averaging interval) only when given.

    Models that take no conditioning (or one time) need not accept those arguments at all.

    Raises:
        ValueError: if the output does not have the shape of x.
    """
    kwargs = {} if t_end is None else {"t_end": t_end}
    if cond is not None:
        kwargs["cond"] = cond
    out = model(x, t, **kwargs)
    if out.shape != x.shape:
        raise ValueError(
            f"the model returned shape {tuple(out.shape)} for input of shape {tuple(x.shape)}; "
            "it must return a tensor of the input's shape"
        )
    return out


class Pretrained:
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for a model class with
    ``config()`` and a ``net`` (FlowModel and the discrete, mixed-table and manifold models):
    files as :func:`flowmatch.models.files.save_flow` writes them, read back by
    :func:`flowmatch.load`, shared as :mod:`flowmatch.models.hub` describes.
    """

    def save_pretrained(
        self,
        directory: str | Path,
        *,
        ema: nn.Module | None = None,
        card: dict[str, Any] | None = None,
    ) -> Path:
        """Write ``config.json``, ``model.safetensors``, ``ema.safetensors`` (no pickle) and
        the model card ``README.md``.

        Args:
            directory: the model directory (created; files replaced atomically).
            ema: a model of this class (or a net) holding averaged weights for
                ``ema.safetensors``, what :func:`flowmatch.load` reads by default; this
                model's weights when None.
            card: facts for the model card: ``license``, ``data`` (the training data's
                name), ``quality`` (the measured quality table), ``title``,
                ``description``, ``tags`` (see :func:`flowmatch.models.hub.model_card`).
        """
        from flowmatch.models.files import save_flow

        return save_flow(directory, self, ema=ema, card=card)

    @classmethod
    def from_pretrained(
        cls: type[T], path: str | Path, *, revision: str | None = None, **kwargs: Any
    ) -> T:
        """Load a run directory, model directory or Hugging Face Hub repo id (``"user/name"``,
        at ``revision``) holding a model of this class; see :func:`flowmatch.load` for
        ``weights`` and ``device``.

        Raises:
            ValueError: the directory holds another kind of model.
            ModelFileError: a missing or bad file, or a Hub repo that cannot be had.
        """
        from flowmatch.models.files import load

        model = load(path, revision=revision, **kwargs)
        if not isinstance(model, cls):
            raise ValueError(f"{path}: not a {cls.__name__}")
        return model

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> Any:
        """Upload this model to the Hugging Face Hub (see
        :func:`flowmatch.models.hub.push_to_hub` for ``token``, ``private``,
        ``commit_message``); push the run directory instead to share its averaged weights."""
        from flowmatch.models.hub import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)


def net_labels(
    net: nn.Module, num_classes: int | None, null_class: int | None
) -> tuple[int | None, int | None]:
    """A model's labels: the arguments given, else the net's ``num_classes`` / ``null_class``
    attributes; the null class ("no label", classifier-free guidance) defaults to K."""
    if num_classes is None:
        num_classes = getattr(net, "num_classes", None)
    if null_class is None:
        null_class = getattr(net, "null_class", None)
    return num_classes, num_classes if null_class is None else null_class
