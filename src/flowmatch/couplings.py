"""Couplings: how source points x0 are paired with data points x1 before the path is sampled.

A coupling is called as ``coupling(x0, x1, cond=None)`` and returns the re-paired
``(x0, x1, cond)``; labels travel with their data points.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor

__all__ = ["Coupling", "Independent"]


class Coupling(ABC):
    """Base class of the couplings."""

    @abstractmethod
    def __call__(
        self, x0: Tensor, x1: Tensor, cond: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Pair source and data points.

        Args:
            x0: source points, shape (B, *D).
            x1: data points, shape (B, *D).
            cond: optional labels of x1, shape (B, ...).

        Returns:
            (x0, x1, cond) re-paired, of the same shapes.
        """

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


class Independent(Coupling):
    """The independent coupling pi(x0, x1) = p(x0) q(x1): pairs are returned as drawn."""

    def __call__(
        self, x0: Tensor, x1: Tensor, cond: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        return x0, x1, cond
