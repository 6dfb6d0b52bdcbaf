"""Closed-form velocities of the flow from N(0, I) noise to N(mean, std^2 I) data on the linear
path, written out in each library's own convention (independently of flowmatch.oracle)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

MEAN = torch.tensor([1.5, -0.5, 0.25])
STD = 0.4


def velocity_ours(x: Tensor, t: Tensor) -> Tensor:
    """dx/dt at x (B, D), t (B,) or 0-dim, t=0 noise: x_t = t m + sqrt(var_t) z with
    var_t = t^2 s^2 + (1 - t)^2. Also the convention of TorchCFM and Meta's flow_matching."""
    t = t.reshape(-1, 1).to(x.dtype)
    mean = MEAN.to(x)
    var = t * t * STD**2 + (1 - t) ** 2
    dvar = 2 * t * STD**2 - 2 * (1 - t)
    return mean + dvar / (2 * var) * (x - t * mean)


def velocity_diffusers(x: Tensor, timestep: Tensor, num_train_timesteps: int = 1000) -> Tensor:
    """diffusers' model output: dx/dsigma at x (B, D), timestep = sigma * T (B,), where
    x_sigma = (1 - sigma) m + sqrt(var) z, var = (1 - sigma)^2 s^2 + sigma^2 (sigma 1: noise)."""
    sigma = (timestep / num_train_timesteps).reshape(-1, 1).to(x.dtype)
    mean = MEAN.to(x)
    var = (1 - sigma) ** 2 * STD**2 + sigma**2
    dvar = -2 * (1 - sigma) * STD**2 + 2 * sigma
    return -mean + dvar / (2 * var) * (x - (1 - sigma) * mean)


def data_log_prob(x: Tensor) -> Tensor:
    """log N(x; m, s^2 I) of points x (B, D), shape (B,)."""
    d = x.shape[1]
    sq = ((x - MEAN.to(x)) ** 2).sum(1) / STD**2
    return -0.5 * sq - d * math.log(STD) - 0.5 * d * math.log(2 * math.pi)


def normal_log_prob(x: Tensor) -> Tensor:
    """log N(x; 0, I) of points x (B, D), shape (B,)."""
    return -0.5 * (x**2).sum(1) - 0.5 * x.shape[1] * math.log(2 * math.pi)
