"""Sample-quality metrics: exact W2 (POT), kernel MMD, and the straightness of a flow."""

from flowmatch.metrics.kernel import mmd
from flowmatch.metrics.straightness import straightness
from flowmatch.metrics.transport import w2

__all__ = ["mmd", "straightness", "w2"]
