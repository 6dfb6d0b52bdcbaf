"""Training and sampling a :class:`~flowmatch.discrete.MixedFlowModel` (product path).

The loss draws one time t per row; the continuous part is on the linear path from N(0, I)
(velocity regression), each categorical column on the mixture path from its mask
(cross-entropy of the true category where masked). The sampler runs both on the grid
t_k = k / steps with one network evaluation per step: an Euler step of the continuous part
and the mixture path's exact jump of each still-masked column.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from flowmatch.discrete.categorical import categorical
from flowmatch.discrete.mixed_model import KappaPath, MixedFlowModel
from flowmatch.discrete.path import _check_kappa, jump_probability
from flowmatch.errors import SamplerError
from flowmatch.schedules import Linear, Schedule

__all__ = ["MixedFlowMatchingLoss", "sample_mixed"]


def _check_layout(num_continuous: int, vocab_sizes: Sequence[int]) -> list[int]:
    if isinstance(num_continuous, bool) or not isinstance(num_continuous, int):
        raise ValueError(f"num_continuous must be an integer >= 0, got {num_continuous!r}")
    if num_continuous < 0:
        raise ValueError(f"num_continuous must be an integer >= 0, got {num_continuous!r}")
    if not isinstance(vocab_sizes, (list, tuple)) or any(
        isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in vocab_sizes
    ):
        raise ValueError(f"vocab_sizes must be a list of integers >= 1, got {vocab_sizes!r}")
    return [int(v) for v in vocab_sizes]


class MixedFlowMatchingLoss:
    """Flow matching on the product of the linear path and per-column mask mixture paths.

    For each row x1 = (x_c, k) one time t ~ U[0, 1] is drawn (shared by all its columns):

    - continuous: x_t = t x_c + (1 - t) x0 with x0 ~ N(0, I), target velocity x_c - x0; the
      MSE is averaged over the B * Dc cells;
    - categorical: column j is masked (code V_j) with probability 1 - kappa_t (kappa_t = t
      on the default linear schedule); the cross-entropy -log p(k_j | x_t) counts on masked
      cells only (an unmasked cell is its own data value) and is averaged over the B * Dk
      cells, as :class:`~flowmatch.discrete.DiscreteFlowMatchingLoss` does.

    The loss is ``mse + weight * ce``. With ``weight = 1`` both terms are per-cell means of
    similar size (on standardized columns); raise it to favour the categorical columns.

    Args:
        num_continuous: the number of continuous columns Dc of the model's layout;
            :meth:`for_model` reads it from a model.
        vocab_sizes: the category count V_j of each categorical column, [V_j].
        weight: the weight of the cross-entropy, >= 0 (default 1.0).
        schedule: kappa_t (linear by default); the model's, with :meth:`for_model`.

    Shapes:
        x1: (B, Dc + Dk) float: continuous values then codes (see
        :class:`~flowmatch.discrete.MixedFlowModel`).
    """

    def __init__(
        self,
        num_continuous: int,
        vocab_sizes: Sequence[int],
        *,
        weight: float = 1.0,
        schedule: Schedule | None = None,
    ) -> None:
        self.num_continuous = num_continuous
        self.vocab_sizes = _check_layout(num_continuous, vocab_sizes)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise ValueError(f"weight must be a finite number >= 0, got {weight!r}")
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"weight must be a finite number >= 0, got {weight!r}")
        self.weight = float(weight)
        schedule = Linear() if schedule is None else schedule
        if not isinstance(schedule, Schedule):
            raise ValueError(f"schedule must be a flowmatch Schedule, got {schedule!r}")
        _check_kappa(schedule)
        self.kappa_path = KappaPath(schedule)

    @classmethod
    def for_model(cls, model: MixedFlowModel, *, weight: float = 1.0) -> MixedFlowMatchingLoss:
        """The loss of a model's layout and kappa schedule."""
        if not isinstance(model, MixedFlowModel):
            raise ValueError(f"model must be a MixedFlowModel, got {type(model).__name__}")
        return cls(model.num_continuous, model.vocab_sizes, weight=weight, schedule=model.schedule)

    def __repr__(self) -> str:
        return (
            f"MixedFlowMatchingLoss(num_continuous={self.num_continuous}, "
            f"vocab_sizes={self.vocab_sizes}, weight={self.weight!r}, "
            f"kappa={self.kappa_path.schedule!r})"
        )

    def __call__(
        self,
        model: nn.Module,
        x1: Tensor,
        *,
        cond: Tensor | None = None,
        x0: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The loss on one batch (a scalar).

        Args:
            model: called as ``model(x_t, t)`` returning (B, Dc + sum(V_j)), e.g. a
                :class:`~flowmatch.discrete.MixedFlowModel`.
            x1: data rows (B, Dc + Dk) float.
            cond: must be None (a mixed model takes no labels).
            x0: the continuous source points (B, Dc) (or (B, Dc + Dk): the first Dc
                columns are used); drawn from N(0, I) when None.
            generator: the random stream of t, x0 and the masking.
        """
        dc, vocab = self.num_continuous, self.vocab_sizes
        dk = len(vocab)
        if cond is not None:
            raise ValueError("cond: a MixedFlowModel takes no labels; make it a column")
        if x1.ndim != 2 or x1.shape[1] != dc + dk or not x1.dtype.is_floating_point:
            raise ValueError(
                f"x1 must be float rows (B, {dc + dk}) (continuous values then codes), got "
                f"{x1.dtype} {tuple(x1.shape)}"
            )
        batch, dev = x1.shape[0], x1.device
        mask_ids = torch.tensor(vocab, dtype=torch.long, device=dev)
        codes = x1[:, dc:].round().long()
        if codes.numel() and bool(((codes < 0) | (codes >= mask_ids)).any()):
            raise ValueError(f"x1: column j's codes must be in [0, V_j), V = {vocab}")
        t = torch.rand(batch, generator=generator, device=dev)
        xc1 = x1[:, :dc]
        if x0 is None:
            x0 = torch.randn(xc1.shape, generator=generator, device=dev, dtype=x1.dtype)
        elif x0.shape in ((batch, dc), (batch, dc + dk)):
            x0 = x0[:, :dc].to(x1.dtype)
        else:
            raise ValueError(f"x0 must have shape ({batch}, {dc}), got {tuple(x0.shape)}")
        tc = t[:, None].to(x1.dtype)
        x_c = tc * xc1 + (1.0 - tc) * x0
        kappa, _ = self.kappa_path.kappa(t.to(torch.float64))
        coin = torch.rand((batch, dk), generator=generator, dtype=torch.float64, device=dev)
        masked = coin >= kappa[:, None]
        x_k = torch.where(masked, mask_ids.expand(batch, dk), codes)
        out = model(torch.cat([x_c, x_k.to(x1.dtype)], dim=1), t)
        zero = out.new_zeros(())
        mse = ((out[:, :dc].float() - (xc1 - x0).float()) ** 2).mean() if dc else zero
        ce = zero
        if dk:
            terms = []
            for j, logits in enumerate(out[:, dc:].float().split(vocab, dim=1)):
                nll = -logits.log_softmax(-1).gather(1, codes[:, j : j + 1]).squeeze(1)
                terms.append(torch.where(masked[:, j], nll, torch.zeros_like(nll)))
            ce = torch.stack(terms, dim=1).mean()
        return mse + self.weight * ce


def _check(model: MixedFlowModel, num: int, steps: int, temperature: float) -> None:
    if not isinstance(model, MixedFlowModel):
        raise SamplerError(f"expected a MixedFlowModel, got {type(model).__name__}", option="model")
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise SamplerError(f"num must be an integer >= 1, got {num!r}", option="num")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise SamplerError(f"steps must be an integer >= 1, got {steps!r}", option="steps")
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not (0 < temperature < math.inf)
    ):
        raise SamplerError(
            f"temperature must be a finite number > 0, got {temperature!r}", option="temperature"
        )


@torch.no_grad()
def sample_mixed(
    model: MixedFlowModel,
    num: int,
    *,
    steps: int,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    device: str | torch.device | None = None,
) -> Tensor:
    """Generate table rows with exactly ``steps`` network evaluations.

    From t = 0 (continuous part ~ N(0, I), every categorical column masked) to t = 1 on the
    grid t_k = k / steps. At each step the net is evaluated once at (x, t_k); the continuous
    part takes an Euler step with the predicted velocity, and each column still masked is
    unmasked with the mixture path's jump probability (kappa_{t+h} - kappa_t) / (1 -
    kappa_t) (1 at the last step, so every column ends unmasked), its category drawn from
    softmax(logits / temperature) in float64 (:func:`~flowmatch.discrete.categorical`).

    Args:
        model: the :class:`~flowmatch.discrete.MixedFlowModel`.
        num: how many rows, >= 1.
        steps: Euler steps = network evaluations (NFE), >= 1.
        generator: the random stream (the same generator state gives the same rows).
        temperature: divides the categorical logits (< 1 sharper, > 1 more diverse); the
            continuous part is not affected.
        device: where to sample; the model's device by default.

    Returns:
        Rows (num, Dc + Dk) float32 in data units: the continuous values (the
        standardizer's inverse applied), then the codes as floats; :meth:`MixedFlowModel.
        split` takes them apart.

    Raises:
        SamplerError: a bad option, naming it.
    """
    _check(model, num, steps, temperature)
    dev = (
        torch.device(device)
        if device is not None
        else next(model.parameters(), torch.zeros(0)).device
    )
    dc, dk, vocab = model.num_continuous, model.num_categorical, model.vocab_sizes
    x_c = torch.randn((num, dc), generator=generator, device=dev)
    mask_ids = torch.tensor(vocab, dtype=torch.long, device=dev)
    x_k = mask_ids.expand(num, dk).clone()
    width = max(vocab, default=1)
    h = 1.0 / steps
    step = torch.tensor(h, dtype=torch.float64, device=dev)
    for k in range(steps):
        t = torch.full((num,), k * h, device=dev)
        out = model(torch.cat([x_c, x_k.to(x_c.dtype)], dim=1), t)
        velocity, logits = model.split_output(out)
        x_c = x_c + h * velocity.to(x_c.dtype)
        if not dk:
            continue
        probs = torch.zeros(num, dk, width, dtype=torch.float64, device=dev)
        for j, lj in enumerate(logits):
            probs[:, j, : vocab[j]] = (lj.to(torch.float64) / temperature).softmax(-1)
        draw = categorical(probs, generator=generator)
        u = torch.rand((num, dk), generator=generator, dtype=torch.float64, device=dev)
        if k == steps - 1:  # the last step unmasks every column
            jump = torch.ones_like(u, dtype=torch.bool)
        else:
            now = torch.full((1,), k * h, dtype=torch.float64, device=dev)
            jump = u < jump_probability(model.kappa_path, now, step)  # type: ignore[arg-type]
        x_k = torch.where(jump & (x_k == mask_ids), draw, x_k)
    return model.decode(torch.cat([x_c, x_k.to(x_c.dtype)], dim=1))
