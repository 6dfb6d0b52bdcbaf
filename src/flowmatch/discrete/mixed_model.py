"""MixedFlowModel: one network for tables of continuous and categorical columns.

A table row is a point of a product space: Dc continuous values (moved along the linear
affine path from N(0, I)) and Dk categorical columns (each on the mixture path from the
mask, column j's mask id being V_j). One network sees the whole noisy row and the time and
predicts both the velocity of the continuous part and, for every categorical column, the
posterior of its category, so the columns are generated jointly (a category can set the
mean of a continuous column and vice versa).

**Layout.** Data x1, the sampler's output and the net's input are ONE float tensor
(B, Dc + Dk): the Dc continuous values, then the Dk categorical codes stored as floats
(0 .. V_j - 1; V_j meaning "masked" in a noisy row). So ``fm.train``'s tensor batches work
unchanged. The continuous values are in the model's units (standardized when the model has
a :class:`~flowmatch.data.tabular.Standardizer`; :meth:`MixedFlowModel.encode` builds x1
from a table, :meth:`MixedFlowModel.split` takes a sample apart). The net returns
(B, Dc + sum(V_j)): the velocity, then each column's logits in column order.

Time runs from t = 0 (noise, everything masked) to t = 1 (data).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

import flowmatch.models.mixed_mlp  # noqa: F401  (registers "mixed_mlp" for fm.load)
from flowmatch.data.tabular import Standardizer
from flowmatch.discrete.path import _check_kappa, kappa_from_dict, kappa_to_dict
from flowmatch.models.base import Pretrained
from flowmatch.paths import AffinePath
from flowmatch.schedules import Linear, Schedule

__all__ = ["MixedFlowModel", "mixed_from_spec"]

INFO_KEYS = ("data", "columns", "kinds", "categories", "objective")


class KappaPath:
    """The kappa schedule every categorical column's mixture path shares.

    Each column j is on the mixture path p_t(x | x1) = kappa_t delta(x, x1) + (1 - kappa_t)
    delta(x, mask_j) with mask_j = V_j; the paths differ only in V_j, so one schedule
    stands for all of them (:func:`~flowmatch.discrete.jump_probability` takes it).
    """

    source = "mask"

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule

    def kappa(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(kappa_t, d kappa_t / dt), each of the shape of t."""
        out = self.schedule(t)
        return out.alpha_t, out.d_alpha_t


class MixedFlowModel(Pretrained, nn.Module):
    """A flow over table rows with Dc continuous and Dk categorical columns (see the module
    docstring for the data layout).

    Args:
        net: called as ``net(x_t, t)`` with x_t (B, Dc + Dk) (codes as floats, V_j =
            masked) and t (B,), returning (B, Dc + sum(V_j)); e.g.
            :class:`~flowmatch.models.mixed_mlp.MixedMLP`.
        num_continuous: Dc >= 0.
        vocab_sizes: V_j >= 1 for each categorical column (a one-category column is
            constant: its only category is always drawn).
        schedule: kappa_t of the categorical columns (linear by default: a column is masked
            with probability 1 - t); its alpha must go from 0 at t = 0 to 1 at t = 1.
        standardizer: the continuous columns' standardization (Dc columns); samples are
            returned in data units through its inverse. None: the continuous values are
            used as they are.
        info: JSON-serializable facts kept in the model file: ``columns``, ``kinds``,
            ``categories`` (a :attr:`~flowmatch.data.mixed.MixedTable.layout`), ``data``.

    Attributes:
        path: the continuous part's path, the linear :class:`~flowmatch.paths.AffinePath`.
        kappa_path: the categorical columns' shared kappa (:class:`KappaPath`).
        mask_ids: (Dk,) long, V_j: the mask code of each column.
    """

    mask_ids: Tensor  # a buffer

    kind = "mixed"

    def __init__(
        self,
        net: nn.Module,
        *,
        num_continuous: int,
        vocab_sizes: Sequence[int],
        schedule: Schedule | None = None,
        standardizer: Standardizer | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise ValueError(f"net must be an nn.Module, got {type(net).__name__}")
        if isinstance(num_continuous, bool) or not isinstance(num_continuous, int):
            raise ValueError(f"num_continuous must be an integer >= 0, got {num_continuous!r}")
        if num_continuous < 0:
            raise ValueError(f"num_continuous must be an integer >= 0, got {num_continuous!r}")
        if not isinstance(vocab_sizes, (list, tuple)) or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in vocab_sizes
        ):
            raise ValueError(f"vocab_sizes must be a list of integers >= 1, got {vocab_sizes!r}")
        if num_continuous + len(vocab_sizes) < 1:
            raise ValueError("num_continuous and vocab_sizes: the table needs at least one column")
        schedule = Linear() if schedule is None else schedule
        if not isinstance(schedule, Schedule):
            raise ValueError(f"schedule must be a flowmatch Schedule, got {schedule!r}")
        _check_kappa(schedule)
        if standardizer is not None and (
            not isinstance(standardizer, Standardizer) or standardizer.dim != num_continuous
        ):
            raise ValueError(
                f"standardizer must be a Standardizer of {num_continuous} columns, got "
                f"{standardizer!r}"
            )
        self.net = net
        self.num_continuous = num_continuous
        self.vocab_sizes = [int(v) for v in vocab_sizes]
        self.path = AffinePath()
        self.kappa_path = KappaPath(schedule)
        self.standardizer = standardizer
        self.info = dict(info or {})
        self.register_buffer("mask_ids", torch.tensor(self.vocab_sizes, dtype=torch.long), False)
        # What the shared training loop reads: no source to draw, points of shape (Dc + Dk,).
        self.source = None
        self.shape = (num_continuous + len(self.vocab_sizes),)
        self.two_times = False

    @property
    def num_categorical(self) -> int:
        """Dk, the number of categorical columns."""
        return len(self.vocab_sizes)

    @property
    def schedule(self) -> Schedule:
        """kappa_t of the categorical columns."""
        return self.kappa_path.schedule

    def extra_repr(self) -> str:
        return (
            f"num_continuous={self.num_continuous}, vocab_sizes={self.vocab_sizes}, "
            f"kappa={self.schedule!r}, standardized={self.standardizer is not None}"
        )

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """The net's output (B, Dc + sum(V_j)) at noisy rows x (B, Dc + Dk) and times t."""
        if cond is not None:
            raise ValueError(
                "cond: a MixedFlowModel takes no labels; make the label a categorical column"
            )
        out = self.net(x, t)
        want = (x.shape[0], self.num_continuous + sum(self.vocab_sizes))
        if tuple(out.shape) != want:
            raise ValueError(
                f"the network returned shape {tuple(out.shape)} for rows of shape "
                f"{tuple(x.shape)}; it must return {want} (velocity, then each column's logits)"
            )
        return out

    def split_output(self, out: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The net's output as (velocity (B, Dc), [logits (B, V_j) for each column])."""
        dc = self.num_continuous
        return out[:, :dc], list(out[:, dc:].split(self.vocab_sizes, dim=1))

    # ---------------------------------------------------------------------------- layout
    def encode(self, continuous: Tensor, codes: Tensor) -> Tensor:
        """Data x1 (N, Dc + Dk) float32 from a table's values (N, Dc) in data units and codes
        (N, Dk): the standardized values, then the codes as floats.

        Raises:
            ValueError: shapes or codes that do not fit the model, naming the argument.
        """
        dc, dk = self.num_continuous, self.num_categorical
        if continuous.ndim != 2 or continuous.shape[1] != dc:
            raise ValueError(f"continuous must have shape (N, {dc}), got {tuple(continuous.shape)}")
        if codes.ndim != 2 or codes.shape != (continuous.shape[0], dk):
            raise ValueError(
                f"codes must have shape ({continuous.shape[0]}, {dk}), got {tuple(codes.shape)}"
            )
        if codes.is_floating_point() or codes.dtype == torch.bool:
            raise ValueError(f"codes must be integer category codes, got {codes.dtype}")
        if codes.numel() and bool(((codes < 0) | (codes >= self.mask_ids.to(codes.device))).any()):
            raise ValueError(f"codes: column j's codes must be in [0, V_j), V = {self.vocab_sizes}")
        cont = continuous.float()
        if self.standardizer is not None:
            cont = self.standardizer.transform(cont)
        return torch.cat([cont, codes.to(cont.dtype)], dim=1)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """A row tensor (B, Dc + Dk) as (continuous (B, Dc), codes (B, Dk) long)."""
        if x.ndim != 2 or x.shape[1] != self.shape[0]:
            raise ValueError(f"x must have shape (B, {self.shape[0]}), got {tuple(x.shape)}")
        return x[:, : self.num_continuous], x[:, self.num_continuous :].round().long()

    def decode(self, x: Tensor) -> Tensor:
        """Rows in data units: the continuous part through the standardizer's inverse."""
        if self.standardizer is None:
            return x
        cont = self.standardizer.inverse(x[:, : self.num_continuous])
        return torch.cat([cont, x[:, self.num_continuous :]], dim=1)

    @property
    def layout(self) -> dict[str, Any]:
        """``{"columns", "kinds", "categories"}`` for :func:`~flowmatch.data.mixed.
        save_mixed_table`: from ``info``, else columns ``x1``.. then ``c1``.., categories
        the codes as strings."""
        if all(k in self.info for k in ("columns", "kinds", "categories")):
            return {k: self.info[k] for k in ("columns", "kinds", "categories")}
        cont = [f"x{j + 1}" for j in range(self.num_continuous)]
        cat = [f"c{j + 1}" for j in range(self.num_categorical)]
        return {
            "columns": cont + cat,
            "kinds": ["continuous"] * len(cont) + ["categorical"] * len(cat),
            "categories": {
                c: [str(i) for i in range(v)] for c, v in zip(cat, self.vocab_sizes, strict=True)
            },
        }

    @classmethod
    def from_table(
        cls, table: Any, *, hidden: int = 256, depth: int = 3, schedule: Schedule | None = None
    ) -> MixedFlowModel:
        """A model for a :class:`~flowmatch.data.mixed.MixedTable`: a
        :class:`~flowmatch.models.mixed_mlp.MixedMLP`, the Standardizer fitted on its
        continuous columns and its layout in ``info``. Train it on ``model.encode(
        table.continuous, table.categorical)``."""
        from flowmatch.models.mixed_mlp import MixedMLP

        dc = table.continuous.shape[1]
        net = MixedMLP(dc, table.vocab_sizes, hidden=hidden, depth=depth)
        std = Standardizer.fit(table.continuous) if dc else None
        return cls(
            net,
            num_continuous=dc,
            vocab_sizes=table.vocab_sizes,
            schedule=schedule,
            standardizer=std,
            info=table.layout,
        )

    # ------------------------------------------------------------------------------ files
    def config(self) -> dict[str, Any]:
        """The ``config.json`` description (``"kind": "mixed"``).

        Raises:
            ValueError: an unregistered net or a kappa schedule with no name.
        """
        from flowmatch.models import registry

        return {
            **self.info,
            "kind": "mixed",
            "arch": registry.architecture(self.net),
            "num_continuous": self.num_continuous,
            "vocab_sizes": list(self.vocab_sizes),
            "kappa": kappa_to_dict(self.schedule),
            "standardizer": None if self.standardizer is None else self.standardizer.to_dict(),
        }


def mixed_from_spec(spec: dict[str, Any]) -> MixedFlowModel:
    """The model a ``"kind": "mixed"`` ``config.json`` describes (weights not loaded).

    Raises:
        ValueError / TypeError / KeyError: a bad field (the caller names the file).
    """
    from flowmatch.models.files import build_model

    if not isinstance(spec.get("arch"), dict):
        raise ValueError(f"arch must be a mapping, got {spec.get('arch')!r}")
    std = spec.get("standardizer")
    return MixedFlowModel(
        build_model(spec["arch"]),
        num_continuous=spec["num_continuous"],
        vocab_sizes=spec["vocab_sizes"],
        schedule=kappa_from_dict(spec.get("kappa")),
        standardizer=None if std is None else Standardizer.from_dict(std),
        info={k: spec[k] for k in INFO_KEYS if k in spec},
    )
