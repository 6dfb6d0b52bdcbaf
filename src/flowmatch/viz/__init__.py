"""Plots of samples, ODE trajectories and quality-vs-NFE curves.

Time runs from t=0 (source, N(0, I) noise) to t=1 (data), as everywhere in flowmatch: a
trajectory ``traj[0]`` is noise and ``traj[-1]`` is the sample.

This package is the only part of flowmatch that imports matplotlib, and ``import flowmatch``
does not load it. matplotlib is optional (``pip install 'flowmatch[plots]'``): without it,
importing this package raises :class:`~flowmatch._extras.MissingExtraError`, one line naming
the extra. Its modules:

- :mod:`flowmatch.viz.points`: :func:`scatter` (2-D point clouds).
- :mod:`flowmatch.viz.trajectories`: :func:`trajectories`, :func:`trajectory_grid` and
  :func:`save_gif` (2-D ODE trajectories, still and animated).
- :mod:`flowmatch.viz.curves`: :func:`quality_vs_nfe` (a metric against the NFE) and
  :func:`loss_curve` (a run's loss and learning rate against the step).
- :mod:`flowmatch.viz.images`: :func:`image_grid`, :func:`trajectory_strip` and
  :data:`GRID_PADDING` (image PNGs, pixel for pixel).
- :mod:`flowmatch.viz.maps`: :func:`world_map` and :func:`globe` (points on the sphere),
  :func:`ramachandran` (angles on the torus) and :func:`rotations` (axis-angle views of SO(3)).
- :mod:`flowmatch.viz._common`: private helpers (input checks, atomic targets, figures).

Every public name is re-exported here, so ``from flowmatch import viz; viz.scatter(...)`` works.
Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas directly, so no
pyplot state is touched and a user's interactive backend is never switched. Every function
writes its file atomically (a temporary file in the same directory, then :func:`os.replace`),
creates missing parent directories, and returns the :class:`~pathlib.Path` it wrote.

Inputs may be torch tensors (any device and dtype) or numpy arrays.

    >>> from flowmatch import viz
    >>> viz.scatter(samples, "out/samples.png", reference=data, names=("model", "data"))
    >>> viz.trajectories(res.trajectory, "out/trajectories.png")
    >>> viz.quality_vs_nfe({"midpoint": [(2, 0.9, 0.05), (8, 0.3, 0.02)]}, "out/w2.png",
    ...                    floor=(0.2, 0.03))
"""

from __future__ import annotations

from flowmatch._extras import require

require("matplotlib", "plots", "plots (flowmatch.viz)")

from flowmatch.viz.curves import loss_curve, quality_vs_nfe  # noqa: E402
from flowmatch.viz.images import GRID_PADDING, image_grid, trajectory_strip  # noqa: E402
from flowmatch.viz.maps import globe, ramachandran, rotations, world_map  # noqa: E402
from flowmatch.viz.points import scatter  # noqa: E402
from flowmatch.viz.trajectories import save_gif, trajectories, trajectory_grid  # noqa: E402

__all__ = [
    "GRID_PADDING",
    "globe",
    "image_grid",
    "loss_curve",
    "quality_vs_nfe",
    "ramachandran",
    "rotations",
    "save_gif",
    "scatter",
    "trajectories",
    "trajectory_grid",
    "trajectory_strip",
    "world_map",
]
