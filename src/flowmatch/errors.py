"""The errors flowmatch raises for bad input, one class per kind of input.

Each message is one line that names the file, key or option and what was expected, so the
command line can print it as it is (exit code 2). All derive from ``ValueError``.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "FlowmatchError",
    "ModelFileError",
    "NumericalError",
    "Preempted",
    "RunExistsError",
    "SamplerError",
]


class FlowmatchError(ValueError):
    """Base class of the input errors below; ``str(err)`` is always one line."""

    def __init__(self, message: str = "") -> None:
        super().__init__(" ".join(str(message).split()))


class DataError(FlowmatchError):
    """A data file (table, image folder, IDX file, pairs) that cannot be used."""


class ModelFileError(FlowmatchError):
    """A model directory that cannot be loaded (or a model that cannot be saved)."""


class ConfigError(FlowmatchError):
    """A run config that cannot be used.

    Attributes:
        key: the dotted key (``"train.steps"``) or file the first problem is about, or None.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class SamplerError(FlowmatchError):
    """A sampler (method, steps, eta, guidance, labels) that does not fit the model.

    Attributes:
        option: the option to change (``method``, ``steps``, ``eta``, ``guidance``, ``cond``),
            so the command line can name its flag and a config its key; None if unknown.
    """

    def __init__(self, message: str, *, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


class CheckpointError(FlowmatchError):
    """A checkpoint that cannot be read back (damaged, tampered, implausible) or written (a
    full disk); the message names the checkpoint and says what is left intact."""


class RunExistsError(FlowmatchError):
    """The output directory already holds a run and neither resume nor overwrite was asked."""


class NumericalError(RuntimeError):
    """A numerical stop (exit code 3): non-finite values where finite ones were needed (a
    loss, a gradient, samples), or an iterative routine that did not converge within its cap.
    Not a user-input error: the input was valid, the numbers went wrong. ``str(err)`` is one
    line."""

    def __init__(self, message: str = "") -> None:
        super().__init__(" ".join(str(message).split()))


class Preempted(Exception):
    """Training stopped on SIGTERM/SIGINT (or ``train.max_minutes``) after writing a complete
    checkpoint; ``flowmatch train`` exits with code 75 (EX_TEMPFAIL: resume me).

    Attributes:
        step: the step of the checkpoint written (or of the newest one, for a signal that
            came while no step was training: loading data, the final evaluation).
        reason: what asked for the stop (``SIGTERM``, ``SIGINT``, ``max_minutes``).
    """

    def __init__(self, step: int, reason: str, *, detail: str = "a checkpoint was written") -> None:
        super().__init__(f"stopped by {reason} at step {step}; {detail}")
        self.step, self.reason = step, reason
