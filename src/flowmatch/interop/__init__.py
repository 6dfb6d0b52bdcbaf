"""Conversions to and from the conventions of peer flow-matching libraries.

Ours: t=0 is the source (N(0, I) noise), t=1 the data, x_t = alpha_t x1 + sigma_t x0, and a
velocity net is called ``net(x, t)`` with x (B, *D) and t (B,), returning dx/dt (B, *D).

* :mod:`flowmatch.interop.diffusers`: diffusers' ``FlowMatchEulerDiscreteScheduler``
  (sigma = 1 - t, velocity sign flipped, ``timestep = sigma * num_train_timesteps``, shift
  and dynamic shifting);
* :mod:`flowmatch.interop.torchcfm`: TorchCFM's ``(t, x)`` models and its flow matchers;
* :mod:`flowmatch.interop.flow_matching`: Meta's ``flow_matching`` ``ModelWrapper``.

The peer libraries are imported only inside the functions that need them, so importing
this package (and ``flowmatch``) loads none of them. See docs/coming_from.md.
"""

from flowmatch.interop.diffusers import (
    calculate_shift,
    from_diffusers_velocity,
    scheduler_shift,
    shifted_time_sampler,
    sigmas_from_diffusers,
    time_grid_from_diffusers,
    to_diffusers_velocity,
)
from flowmatch.interop.flow_matching import from_flow_matching, to_flow_matching
from flowmatch.interop.torchcfm import from_torchcfm, loss_from_torchcfm, to_torchcfm

__all__ = [
    "calculate_shift",
    "from_diffusers_velocity",
    "from_flow_matching",
    "from_torchcfm",
    "loss_from_torchcfm",
    "scheduler_shift",
    "shifted_time_sampler",
    "sigmas_from_diffusers",
    "time_grid_from_diffusers",
    "to_diffusers_velocity",
    "to_flow_matching",
    "to_torchcfm",
]
