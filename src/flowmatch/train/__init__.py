"""Training. ``fm.train(model, data, steps=..., ...)`` trains any network on any data (this
package is callable: it is :func:`flowmatch.train.api.train`); ``flowmatch train CONFIG``
trains from a run config (:class:`flowmatch.train.trainer.Trainer`). Both drive the same loop.

Modules: `loop` (the training loop, checkpoints, resume), `batches` (tensors, Datasets,
DataLoaders, pairs), `config` (the run-config schema), `build` (config -> objects), `trainer`
(the config-driven run), `api` (``fm.train``), `reports` (a run's evaluation and plots),
`logging`, `checkpoint`, `ema`, `distributed`, `data` (a run's data).

Kept free of imports, so that `flowmatch.train.config` can be loaded (for example to
validate a YAML file) without pulling in the trainer.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _TrainPackage(types.ModuleType):
    """This package, callable as ``fm.train(...)`` (see :func:`flowmatch.train.api.train`)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from flowmatch.train.api import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _TrainPackage
