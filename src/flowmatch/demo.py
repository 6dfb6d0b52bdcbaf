"""Former home of the demos; they live in :mod:`flowmatch.app.demo` now (names kept)."""

from flowmatch.app.demo import (
    DEMO_OVERRIDES,
    DIGITS_OVERRIDES,
    DIGITS_STEPS,
    digits_demo,
    oracle_demo,
    training_demo,
)

__all__ = [
    "DEMO_OVERRIDES",
    "DIGITS_OVERRIDES",
    "DIGITS_STEPS",
    "digits_demo",
    "oracle_demo",
    "training_demo",
]
