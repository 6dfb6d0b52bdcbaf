"""The mixture path over tokens: each token is its data value with probability kappa_t.

For a vocabulary of V tokens and sequences of L positions, the conditional path is, position
by position and independently,

    p_t(x^i | x1) = kappa_t * delta(x^i, x1^i) + (1 - kappa_t) * p0^i(x^i),

with kappa(0) = 0 (pure source) and kappa(1) = 1 (pure data); t = 0 is the source and t = 1
the data, as everywhere in flowmatch. The source p0 is

- ``"mask"``: every token starts as an extra mask token, id V (inputs have V + 1 ids);
- ``"uniform"``: every token starts uniform over the V tokens;
- a tensor of probabilities, (V,) for every position or (L, V) per position.

Reference: Gat et al. 2024, "Discrete Flow Matching", the mixture path (section 2.3);
Shi et al. 2024 and Sahoo et al. 2024 for the masked source.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from flowmatch.schedules import SCHEDULES, Linear, Schedule

__all__ = ["SOURCES", "MixturePath", "jump_probability", "kappa_from_dict", "kappa_to_dict"]

SOURCES = ("mask", "uniform")


def _check_kappa(schedule: Schedule) -> None:
    ends = schedule(torch.tensor([0.0, 1.0], dtype=torch.float64)).alpha_t
    if not (abs(float(ends[0])) < 1e-9 and abs(float(ends[1]) - 1.0) < 1e-9):
        raise ValueError(
            f"kappa: the schedule's alpha must go from 0 at t=0 to 1 at t=1, got "
            f"{float(ends[0]):.3g} and {float(ends[1]):.3g} for {schedule!r} "
            "(use Linear, Polynomial or Cosine)"
        )


class MixturePath:
    """The mixture path from a source distribution over tokens to the data.

    Args:
        vocab_size: the number V of data tokens (ids 0..V-1), >= 2.
        source: ``"mask"`` (default), ``"uniform"``, or probabilities (V,) or (L, V) that
            sum to 1 along the last axis.
        schedule: kappa_t, any :mod:`flowmatch.schedules` schedule whose alpha goes from 0
            at t=0 to 1 at t=1 (:class:`~flowmatch.schedules.Linear` by default,
            :class:`~flowmatch.schedules.Polynomial`, :class:`~flowmatch.schedules.Cosine`).

    Shapes:
        x1, x_t: (B, L) token ids; t: (B,).

    Example:
        >>> path = MixturePath(27, source="mask")
        >>> x_t = path.sample(x1, torch.rand(x1.shape[0]))  # masked with prob 1 - t
    """

    def __init__(
        self, vocab_size: int, *, source: str | Tensor = "mask", schedule: Schedule | None = None
    ) -> None:
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 2:
            raise ValueError(f"vocab_size must be an integer >= 2, got {vocab_size!r}")
        self.vocab_size = vocab_size
        self.schedule = Linear() if schedule is None else schedule
        if not isinstance(self.schedule, Schedule):
            raise ValueError(f"schedule must be a flowmatch Schedule, got {schedule!r}")
        _check_kappa(self.schedule)
        self.probs: Tensor | None = None
        if isinstance(source, Tensor):
            self.probs = self._check_probs(source)
            self.source = "probs"
        elif source in SOURCES:
            self.source = str(source)
        else:
            raise ValueError(
                f"source must be one of {SOURCES} or a tensor of probabilities, got {source!r}"
            )

    def _check_probs(self, probs: Tensor) -> Tensor:
        probs = probs.detach().to(torch.float64)
        if probs.ndim not in (1, 2) or probs.shape[-1] != self.vocab_size:
            raise ValueError(
                f"source: probabilities must have shape (V,) or (L, V) with V = "
                f"{self.vocab_size}, got {tuple(probs.shape)}"
            )
        if not torch.isfinite(probs).all() or (probs < 0).any():
            raise ValueError("source: probabilities must be finite and >= 0")
        if not torch.allclose(probs.sum(-1), torch.ones((), dtype=torch.float64), atol=1e-6):
            raise ValueError("source: probabilities must sum to 1 along the last axis")
        return probs.clone()  # as given (draws renormalize), so files round-trip exactly

    # ------------------------------------------------------------------------ properties
    @property
    def mask_id(self) -> int | None:
        """The id of the mask token (V) with the mask source, else None."""
        return self.vocab_size if self.source == "mask" else None

    @property
    def num_ids(self) -> int:
        """How many ids a network's input embedding needs: V + 1 with a mask, else V."""
        return self.vocab_size + (1 if self.source == "mask" else 0)

    def __repr__(self) -> str:
        source = self.source if self.probs is None else f"probs{tuple(self.probs.shape)}"
        return (
            f"MixturePath(vocab_size={self.vocab_size}, source={source}, kappa={self.schedule!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MixturePath):
            return NotImplemented
        same_probs = (self.probs is None and other.probs is None) or (
            self.probs is not None
            and other.probs is not None
            and self.probs.shape == other.probs.shape
            and torch.equal(self.probs, other.probs)
        )
        return (
            self.vocab_size == other.vocab_size
            and self.source == other.source
            and self.schedule == other.schedule
            and same_probs
        )

    __hash__ = None  # type: ignore[assignment]

    # -------------------------------------------------------------------------- the path
    def kappa(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(kappa_t, d kappa_t / dt), each of the shape of t."""
        out = self.schedule(t)
        return out.alpha_t, out.d_alpha_t

    def time_of(self, kappa: Tensor) -> Tensor:
        """The time t with kappa_t = ``kappa`` (kappa in [0, 1]; bisection in float64, to
        about 1e-12; kappa must increase with t)."""
        target = kappa.to(torch.float64)
        lo, hi = torch.zeros_like(target), torch.ones_like(target)
        for _ in range(45):
            mid = 0.5 * (lo + hi)
            below = self.kappa(mid)[0] < target
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def source_probs(self, length: int, *, device: Any = None) -> Tensor:
        """p0 as probabilities over the V + (mask) ids: (L, num_ids), float64."""
        p = torch.zeros(length, self.num_ids, dtype=torch.float64, device=device)
        if self.source == "mask":
            p[:, self.vocab_size] = 1.0
        elif self.source == "uniform":
            p[:, : self.vocab_size] = 1.0 / self.vocab_size
        else:
            assert self.probs is not None
            probs = self.probs.to(device)
            if probs.ndim == 2 and probs.shape[0] != length:
                raise ValueError(
                    f"the source has probabilities for {probs.shape[0]} positions, the "
                    f"sequences have {length}"
                )
            p[:] = probs
        return p

    def sample_source(
        self,
        shape: tuple[int, int],
        *,
        generator: torch.Generator | None = None,
        device: Any = None,
    ) -> Tensor:
        """Draw x0 ~ p0: (B, L) token ids (the mask id V everywhere with the mask source)."""
        batch, length = shape
        if self.source == "mask":
            return torch.full(shape, self.vocab_size, dtype=torch.long, device=device)
        from flowmatch.discrete.categorical import categorical

        probs = self.source_probs(length, device=device).expand(batch, length, -1)
        return categorical(probs, generator=generator)

    def sample(
        self,
        x1: Tensor,
        t: Tensor,
        *,
        x0: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """x_t ~ p_t(. | x1): each token is x1's with probability kappa_t, else x0's.

        Args:
            x1: data tokens (B, L), ids in [0, V).
            t: times (B,) in [0, 1].
            x0: source tokens (B, L); drawn from p0 when None.
            generator: for the source draw and the mixing coin flips.
        """
        if x1.ndim != 2 or t.shape != (x1.shape[0],):
            raise ValueError(
                f"x1 must be (B, L) and t (B,), got {tuple(x1.shape)} and {tuple(t.shape)}"
            )
        if x0 is None:
            x0 = self.sample_source(
                (x1.shape[0], x1.shape[1]), generator=generator, device=x1.device
            )
        kappa, _ = self.kappa(t.to(torch.float64))
        coin = torch.rand(x1.shape, generator=generator, dtype=torch.float64, device=x1.device)
        return torch.where(coin < kappa[:, None], x1, x0)

    # ------------------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        """A JSON description, read back by :meth:`from_dict`."""
        source: Any = self.source if self.probs is None else self.probs.tolist()
        return {
            "vocab_size": self.vocab_size,
            "source": source,
            "kappa": kappa_to_dict(self.schedule),
        }

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> MixturePath:
        """The path of a :meth:`to_dict` description.

        Raises:
            ValueError: a missing or bad field, named.
        """
        if not isinstance(spec, dict):
            raise ValueError(f"a mixture path must be a mapping, got {type(spec).__name__}")
        schedule = kappa_from_dict(spec.get("kappa"))
        source = spec.get("source", "mask")
        if isinstance(source, list):
            source = torch.tensor(source, dtype=torch.float64)
        vocab_size = spec.get("vocab_size")
        return cls(vocab_size, source=source, schedule=schedule)  # type: ignore[arg-type]


def kappa_to_dict(schedule: Schedule) -> dict[str, Any]:
    """A kappa schedule as JSON, ``{"schedule": name, **parameters}`` (read back by
    :func:`kappa_from_dict`).

    Raises:
        ValueError: a schedule that is not one of the named ones.
    """
    names = [name for name, cls in SCHEDULES.items() if type(schedule) is cls]
    if not names:
        raise ValueError(f"kappa schedule {schedule!r} has no name, so it cannot be saved")
    return {"schedule": names[0], **vars(schedule)}


def kappa_from_dict(raw: Any) -> Schedule:
    """The schedule of a :func:`kappa_to_dict` description (None: linear).

    Raises:
        ValueError: not a mapping, an unknown schedule or bad parameters, naming kappa.
    """
    raw = raw or {"schedule": "linear"}
    if not isinstance(raw, dict):
        raise ValueError(f"kappa must be a mapping with a 'schedule', got {raw!r}")
    kappa = dict(raw)
    name = kappa.pop("schedule", "linear")
    if not isinstance(name, str) or name not in SCHEDULES:
        raise ValueError(f"kappa.schedule must be one of {tuple(SCHEDULES)}, got {name!r}")
    try:
        return SCHEDULES[name](**kappa)
    except (TypeError, ValueError) as err:
        raise ValueError(f"kappa: bad parameters for {name!r} ({err})") from None


def jump_probability(path: MixturePath, t: Tensor, h: Tensor | float) -> Tensor:
    """The probability (kappa_{t+h} - kappa_t) / (1 - kappa_t) that a token still at its
    source value takes its data value during [t, t+h]: exact for the mixture path, and 1 at
    the last step (t + h = 1, within 1e-9, or 1e-6 for float32 times, for the rounding of a
    grid k / K). Computed in float64; the shape of t."""
    t64 = t.to(torch.float64)
    end = (t64 + torch.as_tensor(h, dtype=torch.float64, device=t.device)).clamp(max=1.0)
    k0, _ = path.kappa(t64)
    k1, _ = path.kappa(end)
    gap = (1.0 - k0).clamp_min(0.0)
    out = torch.where(gap > 0, (k1 - k0) / gap.clamp_min(math.ulp(1.0)), torch.ones_like(k0))
    last = end >= 1.0 - (1e-9 if t.dtype == torch.float64 else 1e-6)  # a float32 grid: ~1e-7 off
    return torch.where(last, torch.ones_like(out), out.clamp(0.0, 1.0))
