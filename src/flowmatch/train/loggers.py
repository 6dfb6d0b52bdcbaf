"""The backends a training run logs to: ``metrics.csv`` (always), TensorBoard and Weights &
Biases (``train.loggers: [csv, tensorboard, wandb]``).

Each backend is opened with the run directory, the step training starts from and the run's
hyperparameters (the resolved config), then receives one :meth:`write` per logged step and a
:meth:`close`. :class:`~flowmatch.train.logging.MetricsLog` drives them on the main process
(rank 0) only. TensorBoard and W&B are optional packages (``pip install
'flowmatch[tensorboard]'``, ``'flowmatch[wandb]'``), imported only when a run asks for them.
"""

from __future__ import annotations

import csv
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from flowmatch.atomic import atomic_path
from flowmatch.errors import ConfigError

__all__ = [
    "LOGGER_NAMES",
    "METRICS_HEADER",
    "CSVLogger",
    "TensorBoardLogger",
    "WandbLogger",
    "check_loggers",
    "flat_hparams",
    "open_loggers",
    "resolve_loggers",
    "tensorboard_writer_class",
    "wandb_module",
]

LOGGER_NAMES = ("csv", "tensorboard", "wandb")
METRICS_HEADER = ["step", "loss", "lr", "grad_norm", "wall_time"]
_METRICS = ("loss", "lr", "grad_norm", "wall_time")


def resolve_loggers(loggers: Iterable[str] = ("csv",), *, tensorboard: bool = False) -> tuple:
    """The backends a run writes: ``csv`` first (always: resume and the reports read
    ``metrics.csv``), then the others in the order given, each once; ``tensorboard=True`` (the
    older ``train.tensorboard`` key) adds ``tensorboard``.

    Raises:
        ConfigError: an unknown backend name (key ``train.loggers``).
    """
    names = ["csv", *loggers, *(["tensorboard"] if tensorboard else [])]
    for name in names:
        if name not in LOGGER_NAMES:
            raise ConfigError(
                f"config: train.loggers: unknown logger {name!r}; choose from "
                f"{', '.join(LOGGER_NAMES)}",
                key="train.loggers",
            )
    return tuple(dict.fromkeys(names))


def _key(name: str, loggers: Iterable[str]) -> str:
    """The config key that asked for a backend (the ``train.tensorboard`` alias or the list)."""
    return "train.loggers" if name in loggers or name != "tensorboard" else "train.tensorboard"


def _missing(name: str, key: str) -> ConfigError:
    return ConfigError(
        f"config: {key}: {name} needs the {name} package, which is not installed; "
        f"pip install 'flowmatch[{name}]' (or pip install {name})",
        key=key,
    )


def tensorboard_writer_class(key: str = "train.tensorboard") -> Any:
    """TensorBoard's ``SummaryWriter`` (a one-line ConfigError naming ``key`` when the package
    is missing)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise _missing("tensorboard", key) from None
    return SummaryWriter


def wandb_module(key: str = "train.loggers") -> Any:
    """The ``wandb`` package (a one-line ConfigError naming ``key`` when it is missing)."""
    try:
        import wandb
    except ImportError:
        raise _missing("wandb", key) from None
    return wandb


def check_loggers(loggers: Iterable[str] = ("csv",), *, tensorboard: bool = False) -> tuple:
    """:func:`resolve_loggers`, and import the packages they need now (before a run directory
    is touched), so a missing one is a one-line ConfigError naming its key."""
    given = tuple(loggers)
    names = resolve_loggers(given, tensorboard=tensorboard)
    if "tensorboard" in names:
        tensorboard_writer_class(_key("tensorboard", given))
    if "wandb" in names:
        wandb_module()
    return names


def flat_hparams(hparams: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"train.lr": 0.001, ...}``: numbers, booleans and strings kept,
    lists and other values as text, None left out."""
    flat: dict[str, Any] = {}
    for key, value in hparams.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_hparams(value, f"{name}."))
        elif value is None:
            continue
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


class CSVLogger:
    """``metrics.csv``: one row per logged step; the rows after ``step`` are dropped."""

    def __init__(self, out: Path, *, step: int = 0, **_: Any) -> None:
        path = out / "metrics.csv"
        rows: list[list[str]] = []
        if path.exists():
            with open(path, newline="") as fh:
                for row in csv.reader(fh):
                    if len(row) == len(METRICS_HEADER) and row[0].isdigit():
                        if int(row[0]) <= step:
                            rows.append(row)
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(METRICS_HEADER)
            writer.writerows(rows)
        self.path = path
        self._fh = open(path, "a", newline="")
        self._csv = csv.writer(self._fh)

    def write(self, step: int, loss: float, lr: float, grad_norm: float, wall: float) -> None:
        self._csv.writerow([step, f"{loss:.6f}", f"{lr:.6g}", f"{grad_norm:.6g}", f"{wall:.3f}"])
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class TensorBoardLogger:
    """Scalars ``train/loss``, ``train/lr``, ``train/grad_norm`` under ``out/tensorboard``; the
    resolved config as text (``config``) and as hyperparameters (the HParams tab). On resume
    the events past ``step`` are purged from view."""

    def __init__(
        self,
        out: Path,
        *,
        step: int = 0,
        hparams: Mapping[str, Any] | None = None,
        key: str = "train.tensorboard",
        **_: Any,
    ) -> None:
        writer_class = tensorboard_writer_class(key)
        self._tb = writer_class(str(out / "tensorboard"), purge_step=step + 1 if step else None)
        if hparams:
            import yaml
            from torch.utils.tensorboard.summary import hparams as hparams_summary

            text = yaml.safe_dump(dict(hparams), sort_keys=False, default_flow_style=False)
            self._tb.add_text("config", "".join(f"    {line}\n" for line in text.splitlines()))
            metrics = {f"train/{name}": 0.0 for name in _METRICS[:3]}
            file_writer = self._tb._get_file_writer()
            for summary in hparams_summary(flat_hparams(hparams), metrics):
                file_writer.add_summary(summary)

    def write(self, step: int, loss: float, lr: float, grad_norm: float, wall: float) -> None:
        for name, value in (("loss", loss), ("lr", lr), ("grad_norm", grad_norm)):
            self._tb.add_scalar(f"train/{name}", value, step)

    def close(self) -> None:
        self._tb.close()


class WandbLogger:
    """A Weights & Biases run named after the run directory, its config the resolved config.

    The metrics are logged against ``train/step`` (W&B's own step only grows), so a resumed
    run continues the same W&B run (its id is kept in ``out/wandb/run_id``) and the steps
    trained again after the checkpoint are logged again. Files go under ``out/wandb`` unless
    ``WANDB_DIR`` says otherwise; ``WANDB_MODE=offline`` writes them without a network, for
    ``wandb sync`` later.
    """

    def __init__(
        self,
        out: Path,
        *,
        step: int = 0,
        hparams: Mapping[str, Any] | None = None,
        project: str | None = None,
        **_: Any,
    ) -> None:
        wandb = wandb_module()
        id_file = out / "wandb" / "run_id"
        resuming = step > 0 and id_file.is_file()
        run_id = id_file.read_text().strip() if resuming else secrets.token_hex(4)
        try:
            self._run = wandb.init(
                project=project or "flowmatch",
                name=out.name,
                dir=None if os.environ.get("WANDB_DIR") else str(out),
                config=dict(hparams) if hparams else None,
                id=run_id,
                resume="allow" if resuming else None,
                job_type="train",
            )
        except Exception as err:  # wandb raises its own errors: not logged in, no network
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ConfigError(
                f"config: train.loggers: wandb could not start a run ({first[:200]}); log in "
                "with `wandb login`, or set WANDB_MODE=offline",
                key="train.loggers",
            ) from None
        id_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(id_file) as tmp:
            tmp.write_text(run_id + "\n")
        self._run.define_metric("train/step")
        self._run.define_metric("train/*", step_metric="train/step")

    def write(self, step: int, loss: float, lr: float, grad_norm: float, wall: float) -> None:
        values = dict(zip(_METRICS, (loss, lr, grad_norm, wall), strict=True))
        self._run.log({"train/step": step, **{f"train/{k}": v for k, v in values.items()}})

    def close(self) -> None:
        self._run.finish()


def open_loggers(
    out: Path,
    names: Iterable[str],
    *,
    step: int = 0,
    hparams: Mapping[str, Any] | None = None,
    wandb_project: str | None = None,
    tensorboard_key: str = "train.loggers",
) -> list[Any]:
    """Open the named backends (``names`` from :func:`resolve_loggers`); the ones opened so
    far are closed again when one fails."""
    classes = {"csv": CSVLogger, "tensorboard": TensorBoardLogger, "wandb": WandbLogger}
    opened: list[Any] = []
    try:
        for name in names:
            opened.append(
                classes[name](
                    out, step=step, hparams=hparams, project=wandb_project, key=tensorboard_key
                )
            )
    except BaseException:
        for backend in reversed(opened):
            backend.close()
        raise
    return opened
