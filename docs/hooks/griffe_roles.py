"""griffe extension: show the Sphinx roles of the docstrings as inline code.

The docstrings are Google style but name objects with Sphinx roles (``:func:`sample```,
``:class:`~flowmatch.flow.FlowModel```), which Markdown would print as they are. This turns
each into inline code of the name (its last part when the role says ``~``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):`(~?)([^`]+)`")


def _plain(match: re.Match[str]) -> str:
    name = match.group(2)
    return f"`{name.rsplit('.', 1)[-1] if match.group(1) else name}`"


class SphinxRolesAsCode(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_plain, obj.docstring.value)
