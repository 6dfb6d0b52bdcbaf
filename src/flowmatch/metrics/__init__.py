"""Sample-quality metrics: exact W2 (POT) and kernel MMD."""

from flowmatch.metrics.kernel import mmd
from flowmatch.metrics.transport import w2

__all__ = ["mmd", "w2"]
