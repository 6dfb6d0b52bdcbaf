"""Optional dependencies: each one belongs to an extra of the package
(``pip install 'flowmatch[plots]'``), and a missing one is reported in one line that names it.

``import flowmatch`` and training on tensors need none of them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from flowmatch.errors import FlowmatchError

__all__ = ["MissingExtraError", "require"]

_DISTRIBUTIONS = {"PIL": "Pillow", "sklearn": "scikit-learn"}
"""Import names whose package (what pip installs) is named otherwise."""


class MissingExtraError(FlowmatchError, ModuleNotFoundError):
    """An optional package is not installed; the message names the extra that installs it.

    Both an input error (the command line prints it as one line, exit code 2) and a
    :class:`ModuleNotFoundError` (so ``except ImportError`` still catches it).
    """


def require(module: str, extra: str, needed_by: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``flowmatch[extra]``.

    Args:
        module: the module to import (``"matplotlib"``, ``"sklearn"``, ``"PIL"``).
        extra: the extra of flowmatch that installs it (``"plots"``).
        needed_by: what needs it, for the message (``"plots (flowmatch.viz)"``).
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        name = (exc.name or module).split(".")[0]
        package = _DISTRIBUTIONS.get(name, name)
        raise MissingExtraError(
            f"{needed_by}: needs {package}, which is not installed; "
            f"pip install 'flowmatch[{extra}]'"
        ) from None
