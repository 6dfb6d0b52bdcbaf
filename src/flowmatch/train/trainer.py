"""The Trainer: one loop for one CPU, one GPU or many processes (torchrun + DDP).

A run directory holds ``config.yaml`` (the resolved config), ``model/`` (``config.json``,
``model.safetensors``, ``ema.safetensors``), ``checkpoints/`` (resumable state),
``metrics.csv`` (step, loss, lr, grad_norm, wall_time), ``eval.csv`` and, at the end, the
evaluation table and plots. Every random draw comes from seeded generators whose states are
checkpointed, so a run killed at any moment and resumed ends bit-identical (on CPU) to an
uninterrupted one.
"""

from __future__ import annotations

import csv
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flowmatch.atomic import atomic_path
from flowmatch.couplings import Coupling, Independent, MinibatchOT, Pairs, SchrodingerBridge
from flowmatch.loss import FlowMatchingLoss
from flowmatch.meanflow import MeanFlowLoss
from flowmatch.models.embeddings import time_frequency
from flowmatch.models.files import ModelFileError, build_model, build_path, load, save_model
from flowmatch.sampling import SCORE_METHODS, labels_in_turn
from flowmatch.time import Constant, Discrete, LogitNormal, Shifted, TimeSampler, Uniform
from flowmatch.train import distributed
from flowmatch.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    remove_partial,
    save_checkpoint,
)
from flowmatch.train.config import (
    ConfigError,
    RunConfig,
    config_from_dict,
    config_to_dict,
    dump_config,
)
from flowmatch.train.data import RunData, load_run_data
from flowmatch.train.ema import EMA
from flowmatch.train.evaluate import (
    EvalRow,
    evaluate,
    format_row,
    model_straightness,
    noise_floor,
    write_report,
)

__all__ = ["NonFiniteLossError", "RunExistsError", "TrainResult", "Trainer", "model_spec"]

METRICS_HEADER = ["step", "loss", "lr", "grad_norm", "wall_time"]
EVAL_HEADER = ["step", "method", "steps", "nfe", "w2_mean", "w2_std", "mmd_mean", "mmd_std"]
IMAGE_EVAL_HEADER = [
    "step",
    "method",
    "steps",
    "nfe",
    "fd_mean",
    "fd_std",
    "kid_mean",
    "kid_std",
    "accuracy",
]
DATA_STREAM = 10  # seed offset of the per-rank batch/noise generator


class NonFiniteLossError(RuntimeError):
    """The loss or the gradient became NaN/Inf; the run stopped before applying it."""


class RunExistsError(ValueError):
    """The output directory already holds a run and neither resume nor overwrite was asked."""


@dataclass
class TrainResult:
    """What a finished run reports."""

    out: Path
    steps: int
    final_loss: float
    wall_time: float
    eval_rows: list[Any]  # EvalRow, or ImageEvalRow for digits
    floor: Any


def _time_sampler(cfg: RunConfig) -> TimeSampler:
    t = cfg.time
    if t.sampler == "uniform":
        return Uniform()
    if t.sampler == "logit_normal":
        return LogitNormal(t.mean, t.std)
    if t.sampler == "constant":
        return Constant(t.value)
    if t.sampler == "discrete":
        return Discrete(cfg.path.timesteps)
    return Shifted(t.shift)


def _coupling(cfg: RunConfig) -> Coupling:
    c = cfg.coupling
    if c.name == "minibatch_ot":
        return MinibatchOT(c.method, reg=c.reg)
    if c.name == "schrodinger_bridge":
        return SchrodingerBridge(c.sigma)
    return Independent()


def _absolute_paths(cfg: RunConfig, base_dir: str | Path) -> RunConfig:
    """The config with its file paths (data.path, data.images, data.labels, data.pairs,
    model.init) made absolute, so the run's ``config.yaml`` still finds them from any working
    directory (eval, reflow, resume)."""
    raw = config_to_dict(cfg)
    changed = False
    for section, key in (
        ("data", "path"),
        ("data", "images"),
        ("data", "labels"),
        ("data", "pairs"),
        ("model", "init"),
    ):
        value = raw[section].get(key)
        if value is not None and not Path(value).is_absolute():
            raw[section][key] = str((Path(base_dir) / value).resolve())
            changed = True
    return config_from_dict(raw) if changed else cfg


def _path_spec(cfg: RunConfig) -> dict[str, Any]:
    p = cfg.path
    params = {
        "linear": {},
        "cosine": {},
        "polynomial": {"n": p.n},
        "vp": {"beta_min": p.beta_min, "beta_max": p.beta_max},
        "ve": {"sigma_min": p.sigma_min, "sigma_max": p.sigma_max},
        "ddpm": {
            "timesteps": p.timesteps,
            "betas": p.betas,
            "beta_start": p.beta_start,
            "beta_end": p.beta_end,
        },
    }[p.schedule]
    return {"schedule": p.schedule, **params}


def _check_samplers(cfg: RunConfig) -> None:
    """Config errors of the diffusion and SDE samplers and of DDPM's discrete training times."""
    if cfg.time.sampler == "discrete" and cfg.path.schedule != "ddpm":
        raise ConfigError(
            "config: time.sampler: discrete draws the timesteps of a ddpm path; set "
            f"path.schedule=ddpm, got {cfg.path.schedule!r}",
            key="time.sampler",
        )
    uses = [("sample.method", [cfg.sample.method], [cfg.sample.steps])]
    uses.append(("eval.methods", list(cfg.eval.methods), list(cfg.eval.steps)))
    for key, methods, steps in uses:
        wanted = [m for m in methods if m in SCORE_METHODS]
        if not wanted:
            continue
        if cfg.coupling.name == "schrodinger_bridge":
            raise ConfigError(
                f"config: {key}: {wanted[0]} needs the Gaussian affine path of the model; a "
                "schrodinger_bridge run has its own path; use an ODE solver",
                key=key,
            )
        if cfg.data.source is not None:
            raise ConfigError(
                f"config: {key}: {wanted[0]} needs the N(0, I) source, got data.source "
                f"{cfg.data.source.name!r}; use an ODE solver",
                key=key,
            )
        diffusion = [m for m in wanted if m in ("ddpm", "ddim")]
        if diffusion and cfg.path.schedule == "ddpm" and max(steps) > cfg.path.timesteps:
            steps_key = key.split(".")[0] + ".steps"
            raise ConfigError(
                f"config: {steps_key}: {diffusion[0]} with {max(steps)} steps does not fit "
                f"the {cfg.path.timesteps} timesteps of the ddpm path (path.timesteps)",
                key=steps_key,
            )


def model_spec(cfg: RunConfig, data: RunData) -> dict[str, Any]:
    """The ``model/config.json`` content of a run: enough to rebuild and sample the model."""
    m = cfg.model
    arch: dict[str, Any]
    if m.name == "unet":
        channels, size = data.shape[0], data.shape[1]
        arch = {
            "name": "unet",
            "channels": channels,
            "size": size,
            "base": m.channels,
            "multipliers": list(m.multipliers),
            "num_res_blocks": m.res_blocks,
            "attention_resolutions": list(m.attention),
            "groups": m.groups,
            "time_embed_dim": m.time_embed_dim,
            "num_classes": data.num_classes,
            "dropout": m.dropout,
        }
    else:
        arch = {
            "name": m.name,
            "dim": data.dim,
            "hidden": m.hidden,
            "depth": m.depth,
            "activation": m.activation,
            "time_embed_dim": m.time_embed_dim,
        }
    two_times = cfg.objective.name == "meanflow"
    arch["time_frequency"] = time_frequency(cfg.model.time_frequency, two_times=two_times)
    if two_times:
        arch["two_times"] = True
    spec: dict[str, Any] = {
        "arch": arch,
        "path": _path_spec(cfg),
        "prediction": cfg.objective.prediction,
        "source": data.source,
        "data": data.name,
        "shape": list(data.shape),
    }
    if data.class_names is not None:
        spec["class_names"] = data.class_names
    if data.standardizer is not None:
        spec["standardizer"] = data.standardizer.to_dict()
        spec["columns"] = data.columns
    return spec


def _lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warmup from 0 to 1 over ``warmup`` steps, then cosine decay to 0 at ``total``."""

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class Trainer:
    """Train a flow matching model as a run config says, into a run directory.

    Args:
        cfg: the validated run config.
        out: the run directory.
        resume: continue from the newest complete checkpoint in ``out``.
        overwrite: replace an existing run in ``out`` (used by the demo).
        progress: show a progress bar (loss, it/s, ETA) on rank 0.
        final_eval: evaluate at the end (table, plots).
        base_dir: directory a relative ``data.path`` is resolved against.
        echo: where messages go (rank 0 only).

    Raises:
        ConfigError: a config value this build cannot honour (named key).
        DataError: unreadable data.
        RunExistsError: ``out`` holds a run and neither resume nor overwrite was given.
    """

    def __init__(
        self,
        cfg: RunConfig,
        out: str | Path,
        *,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = True,
        final_eval: bool = True,
        base_dir: str | Path = ".",
        echo: Callable[[str], None] = print,
    ) -> None:
        cfg = _absolute_paths(cfg, base_dir)
        self.cfg = cfg
        self.out = Path(out)
        self.resume = resume
        self.progress = progress
        self.final_eval = final_eval
        self._check_supported(cfg)
        self._tensorboard = self._tensorboard_writer_class() if cfg.train.tensorboard else None
        if (self.out / "config.yaml").exists() and not (resume or overwrite):
            raise RunExistsError(
                f"{self.out}: already holds a run; pass --resume to continue it or choose "
                "another --out"
            )
        if resume and not (self.out / "config.yaml").exists():
            raise RunExistsError(f"{self.out}: no run to resume (no config.yaml)")
        if overwrite and self.out.is_dir() and not (self.out / "config.yaml").exists():
            if any(self.out.iterdir()):
                raise RunExistsError(
                    f"{self.out}: exists and is not a flowmatch run (no config.yaml); "
                    "refusing to overwrite it, choose another --out"
                )
        # Everything that can fail on bad input happens before the run directory is touched.
        self.data = load_run_data(cfg.data, seed=cfg.train.seed, base_dir=base_dir)
        self.pairs = self._load_pairs(cfg)  # their paths are absolute by now
        self.init_state = self._load_init(cfg)
        self.dist = distributed.setup(cfg.train.device)
        self.echo = echo if self.dist.is_main else (lambda _msg: None)
        if overwrite and not resume and self.dist.is_main and self.out.exists():
            shutil.rmtree(self.out)

    @staticmethod
    def _check_supported(cfg: RunConfig) -> None:
        if cfg.data.pairs is not None and cfg.coupling.name != "independent":
            raise ConfigError(
                f"config: coupling.name: fixed pairs (data.pairs) are already coupled; use "
                f"'independent', got {cfg.coupling.name!r}",
                key="coupling.name",
            )
        if cfg.objective.name == "meanflow":
            for key, value, wanted in (
                ("objective.prediction", cfg.objective.prediction, "velocity"),
                ("path.schedule", cfg.path.schedule, "linear"),
            ):
                if value != wanted:
                    raise ConfigError(
                        f"config: {key}: objective meanflow needs {wanted!r}, got {value!r}",
                        key=key,
                    )
            if cfg.coupling.name == "schrodinger_bridge":
                raise ConfigError(
                    "config: coupling.name: objective meanflow needs the linear path; "
                    "schrodinger_bridge has its own (use independent or minibatch_ot)",
                    key="coupling.name",
                )
        if cfg.coupling.name == "schrodinger_bridge":
            if cfg.objective.prediction != "velocity":
                raise ConfigError(
                    "config: objective.prediction: schrodinger_bridge trains a velocity, got "
                    f"{cfg.objective.prediction!r}",
                    key="objective.prediction",
                )
            if cfg.path.schedule != "linear":
                raise ConfigError(
                    "config: path.schedule: schrodinger_bridge has its own (linear + bridge "
                    f"noise) path; use 'linear', got {cfg.path.schedule!r}",
                    key="path.schedule",
                )
        _check_samplers(cfg)
        if cfg.data.is_image != (cfg.model.name == "unet"):
            wanted = "unet" if cfg.data.is_image else "mlp"
            what = "image data" if cfg.data.is_image else "points (toy sets, tables)"
            raise ConfigError(
                f"config: model.name: {what} need model.name={wanted}, got {cfg.model.name!r}",
                key="model.name",
            )
        if cfg.sample.guidance is not None and not cfg.data.is_image:
            raise ConfigError(
                "config: sample.guidance: guidance needs labelled (image) data",
                key="sample.guidance",
            )
        if cfg.train.precision == "fp16" and not torch.cuda.is_available():
            raise ConfigError(
                "config: train.precision: fp16 needs a CUDA device; use bf16",
                key="train.precision",
            )

    def _load_pairs(self, cfg: RunConfig) -> Pairs | None:
        if cfg.data.pairs is None:
            return None
        from flowmatch.data.tabular import DataError
        from flowmatch.rectify import load_pairs

        path = Path(cfg.data.pairs)
        pairs = load_pairs(path)
        if tuple(pairs.x0.shape[1:]) != self.data.shape:
            raise DataError(
                f"{path}: pairs of shape {tuple(pairs.x0.shape[1:])} do not match the data "
                f"points of shape {self.data.shape} of {self.data.name}"
            )
        return Pairs(pairs.x0.float(), pairs.x1.float(), pairs.cond)

    def _load_init(self, cfg: RunConfig) -> dict[str, torch.Tensor] | None:
        if cfg.model.init is None:
            return None
        path = Path(cfg.model.init)
        try:
            source = load(path)
        except ModelFileError as err:
            raise ConfigError(f"config: model.init: {err}", key="model.init") from None
        wanted = model_spec(cfg, self.data)["arch"]
        if source.spec["arch"] != wanted:
            raise ConfigError(
                f"config: model.init: {path} has architecture {source.spec['arch']}, the run "
                f"needs {wanted}",
                key="model.init",
            )
        return {k: v.detach().clone() for k, v in source.state_dict().items()}

    @staticmethod
    def _tensorboard_writer_class() -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "config: train.tensorboard: needs the tensorboard package "
                "(pip install tensorboard), which is not installed",
                key="train.tensorboard",
            ) from None
        return SummaryWriter

    # ----------------------------------------------------------------------------- setup
    def _build(self) -> None:
        cfg, dev = self.cfg, self.dist.device
        torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank
        self.spec = model_spec(cfg, self.data)
        self.model = build_model(self.spec["arch"])
        if self.init_state is not None:
            self.model.load_state_dict(self.init_state)
        self.model = self.model.to(dev)
        self.path = build_path(self.spec["path"])
        self.ema = EMA(self.model, cfg.train.ema_decay)
        self.opt = torch.optim.AdamW(
            self.model.parameters(),
            lr=cfg.optim.lr,
            betas=cfg.optim.betas,
            weight_decay=cfg.optim.weight_decay,
        )
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, _lr_lambda(cfg.optim.warmup_steps, cfg.train.steps)
        )
        self.loss_fn: Any
        labelled = self.data.num_classes is not None
        if cfg.objective.name == "meanflow":
            self.loss_fn = MeanFlowLoss(
                time_sampler=_time_sampler(cfg),
                ratio_distinct=cfg.objective.ratio_distinct,
                adaptive_p=cfg.objective.adaptive_p,
                tangent=cfg.objective.tangent,
                time_pairs=cfg.objective.time_pairs,
                coupling=_coupling(cfg),
                cond_dropout=cfg.objective.cond_dropout if labelled else 0.0,
                null_cond=self.data.num_classes,
            )
        else:
            self.loss_fn = FlowMatchingLoss(
                self.path,
                coupling=_coupling(cfg),
                time_sampler=_time_sampler(cfg),
                prediction=cfg.objective.prediction,
                cond_dropout=cfg.objective.cond_dropout if labelled else 0.0,
                null_cond=self.data.num_classes,
            )
        self.gen = torch.Generator(device=dev).manual_seed(
            cfg.train.seed * 1000 + DATA_STREAM + self.dist.rank
        )
        self.train_pool = self.data.train.to(dev)
        self.train_labels = self.data.labels.to(dev) if self.data.labels is not None else None
        self.train_pairs = self.pairs.to(dev) if self.pairs is not None else None
        net: nn.Module = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(
                net, device_ids=[dev.index] if dev.type == "cuda" else None
            )
        if cfg.train.compile:
            net = torch.compile(net)
        self.net = net
        self.step = 0
        self.elapsed = 0.0

    def _rng_state(self) -> dict[str, torch.Tensor]:
        state = {"torch": torch.get_rng_state(), "data": self.gen.get_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                state[f"cuda{i}"] = s
        return state

    def _restore(self) -> bool:
        ckpt_dir = self.out / "checkpoints"
        if self.dist.is_main:
            remove_partial(ckpt_dir)
        distributed.barrier(self.dist)
        latest = latest_checkpoint(ckpt_dir)
        if latest is None:
            return False
        ck = load_checkpoint(latest, device=self.dist.device)
        self.model.load_state_dict(ck.model)
        self.ema.load_state_dict(ck.ema)
        self.opt.load_state_dict(ck.optim["optimizer"])
        self.sched.load_state_dict(ck.optim["scheduler"])
        torch.set_rng_state(ck.rng["torch"])
        data_key = f"data_rank{self.dist.rank}"
        self.gen.set_state(ck.rng[data_key if data_key in ck.rng else "data"].to("cpu"))
        for key, value in ck.rng.items():
            if key.startswith("cuda") and torch.cuda.is_available():
                torch.cuda.set_rng_state(value, int(key[4:]))
        self.step = ck.step
        self.elapsed = float(ck.optim.get("elapsed", 0.0))
        self.echo(f"resumed from {latest} (step {self.step})")
        return True

    def _gather_rng(self) -> dict[str, torch.Tensor]:
        """RNG states of every rank (each rank's data generator differs)."""
        state = self._rng_state()
        if not self.dist.enabled:
            return state
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.dist.world_size
        dist.all_gather_object(gathered, state["data"].cpu())
        for r, s in enumerate(gathered):
            state[f"data_rank{r}"] = s
        return state

    def _checkpoint(self) -> None:
        rng = self._gather_rng()  # collective: every rank takes part
        if self.dist.is_main:
            optim = {
                "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(),
                "elapsed": self.elapsed,
            }
            save_checkpoint(
                self.out / "checkpoints",
                step=self.step,
                model=self.model.state_dict(),
                ema=self.ema.state_dict(),
                optim=optim,
                rng=rng,
            )
            save_model(self.out / "model", self.spec, self.model, self.ema.module)
        distributed.barrier(self.dist)

    # ------------------------------------------------------------------------- metrics io
    def _open_metrics(self) -> None:
        """Open metrics.csv for appending, dropping rows beyond the resumed step."""
        path = self.out / "metrics.csv"
        rows: list[list[str]] = []
        if path.exists():
            with open(path, newline="") as fh:
                for row in csv.reader(fh):
                    if len(row) == len(METRICS_HEADER) and row[0].isdigit():
                        if int(row[0]) <= self.step:
                            rows.append(row)
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(METRICS_HEADER)
            writer.writerows(rows)
        self._metrics_fh = open(path, "a", newline="")
        self._metrics = csv.writer(self._metrics_fh)
        self._tb = self._tensorboard(str(self.out / "tensorboard")) if self._tensorboard else None

    def _append_eval(self, rows: list[Any]) -> None:
        path = self.out / "eval.csv"
        new = not path.exists()
        digits = self.data.name == "digits"
        with open(path, "a", newline="") as fh:
            writer = csv.writer(fh)
            if new:
                writer.writerow(IMAGE_EVAL_HEADER if digits else EVAL_HEADER)
            for r in rows:
                if digits:
                    values = [
                        f"{r.fd_mean:.6f}",
                        f"{r.fd_std:.6f}",
                        f"{r.kid_mean:.6g}",
                        f"{r.kid_std:.6g}",
                        f"{r.accuracy:.6f}",
                    ]
                else:
                    values = [
                        f"{r.w2_mean:.6f}",
                        f"{r.w2_std:.6f}",
                        f"{r.mmd_mean:.6g}",
                        f"{r.mmd_std:.6g}",
                    ]
                writer.writerow([self.step, r.method, r.steps, r.nfe, *values])

    # ------------------------------------------------------------------------------ run
    def _eval(self, *, final: bool) -> tuple[list[EvalRow], EvalRow | None]:
        """Final: the full table (draws, noise floor); periodic: one quick draw of 1000 points."""
        ev = self.cfg.eval
        n = self.data.max_eval_points(ev.num_samples if final else min(ev.num_samples, 1000))
        draws = ev.draws if final else 1
        seed = self.cfg.train.seed + 7
        reference = self.data.reference()
        rows = evaluate(
            self.ema.module,
            reference,
            self.data.draw_source,
            steps=ev.steps,
            methods=ev.methods,
            num_samples=n,
            draws=draws,
            seed=seed,
            eta=self.cfg.sample.eta,
            noise=self.cfg.sample.noise,
            on_row=(lambda r: self.echo(format_row(r))) if final else None,
        )
        floor = noise_floor(reference, num_samples=n, draws=draws, seed=seed) if final else None
        return rows, floor

    def run(self) -> TrainResult:
        """Train to ``train.steps``, checkpointing and evaluating as configured."""
        cfg = self.cfg
        self._build()
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            dump_config(cfg, self.out / "config.yaml")  # on resume: with its --set overrides
        distributed.barrier(self.dist)
        if self.resume:
            self._restore()
        if self.dist.is_main:
            self._open_metrics()
        try:
            final_loss = self._loop()
        finally:
            if self.dist.is_main:
                self._metrics_fh.close()
                if self._tb is not None:
                    self._tb.close()
        rows, floor = [], None
        if self.dist.is_main and self.final_eval:
            rows, floor = self._finish()
        distributed.barrier(self.dist)
        distributed.cleanup(self.dist)
        return TrainResult(self.out, self.step, final_loss, self.elapsed, rows, floor)

    def _loop(self) -> float:
        cfg = self.cfg
        tcfg, total = cfg.train, cfg.train.steps
        batch, clip = tcfg.batch_size, cfg.optim.grad_clip
        params = list(self.model.parameters())
        autocast = self._autocast()
        bar = self._progress_bar()
        window_loss, window_n, last_loss = 0.0, 0, float("nan")
        start = time.perf_counter() - self.elapsed
        with bar:
            task = bar.add_task("train", total=total, completed=self.step, loss=float("nan"))
            while self.step < total:
                x0, x1, cond = self._batch(batch)
                with autocast:
                    loss = self.loss_fn(self.net, x1, x0=x0, cond=cond, generator=self.gen)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(
                    params, clip if clip is not None else float("inf")
                )
                loss_value, norm_value = loss.item(), grad_norm.item()
                # The gradient norm is the same on every rank after DDP's all-reduce, so all
                # ranks stop together; a NaN loss on any rank makes it non-finite.
                if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
                    self._stop_non_finite(loss_value, norm_value)
                self.opt.step()
                self.sched.step()
                self.ema.update(self.model, self.step)
                self.step += 1
                window_loss += loss_value
                window_n += 1
                if self.step % tcfg.log_every == 0 or self.step == total:
                    last_loss = distributed.all_reduce_mean(window_loss / window_n, self.dist)
                    self.elapsed = time.perf_counter() - start
                    if self.dist.is_main:
                        lr = self.sched.get_last_lr()[0]
                        self._metrics.writerow(
                            [
                                self.step,
                                f"{last_loss:.6f}",
                                f"{lr:.6g}",
                                f"{norm_value:.6g}",
                                f"{self.elapsed:.3f}",
                            ]
                        )
                        self._metrics_fh.flush()
                        if self._tb is not None:
                            for name, value in (
                                ("loss", last_loss),
                                ("lr", lr),
                                ("grad_norm", norm_value),
                            ):
                                self._tb.add_scalar(f"train/{name}", value, self.step)
                    window_loss, window_n = 0.0, 0
                    bar.update(task, completed=self.step, loss=last_loss)
                if self.step % tcfg.checkpoint_every == 0 or self.step == total:
                    self.elapsed = time.perf_counter() - start
                    self._checkpoint()
                if self.step % tcfg.eval_every == 0 and self.step < total and self.dist.is_main:
                    if self.data.name == "digits":
                        self._append_eval(self._digits_rows())
                    else:
                        self._append_eval(self._eval(final=False)[0])
        return last_loss

    def _batch(self, size: int) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """(x0, x1, labels) of one step: fixed pairs, or data (and labels) drawn from the pool
        and x0 from the source (None: N(0, I), drawn by the loss)."""
        if self.train_pairs is not None:
            return self.train_pairs.sample(size, generator=self.gen)
        idx = torch.randint(
            0, self.train_pool.shape[0], (size,), generator=self.gen, device=self.gen.device
        )
        x1 = self.train_pool[idx]
        cond = self.train_labels[idx] if self.train_labels is not None else None
        return self._source_batch(size), x1, cond

    def _source_batch(self, size: int) -> torch.Tensor | None:
        if self.data.source is None:
            return None
        return self.data.draw_source(size, self.gen).to(self.dist.device)

    def _autocast(self) -> Any:
        import contextlib

        precision = self.cfg.train.precision
        if precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.dist.device.type, dtype=dtype)

    def _progress_bar(self) -> Any:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        class Speed(ProgressColumn):
            def render(self, task: Any) -> Text:
                return Text("- it/s" if task.speed is None else f"{task.speed:.0f} it/s")

        return Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            Speed(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            disable=not (self.progress and self.dist.is_main),
            transient=False,
        )

    def _stop_non_finite(self, loss_value: float, grad_norm: float) -> None:
        latest = latest_checkpoint(self.out / "checkpoints")
        kept = (
            f"the last good checkpoint is {latest}" if latest else "no checkpoint was written yet"
        )
        raise NonFiniteLossError(
            f"training stopped at step {self.step + 1}: the loss became non-finite "
            f"(loss={loss_value}, grad_norm={grad_norm}); the update was not applied and {kept}"
        )

    def _finish(self) -> tuple[list[Any], Any]:
        self.echo(f"evaluating ({self.cfg.eval.draws} draws per figure)...")
        if self.data.name == "digits":
            return self._finish_digits()
        rows, floor = self._eval(final=True)
        self._append_eval(rows)
        straight = None
        if not self.data.is_image:  # 64 midpoint steps of 1000 images: too slow on a CPU
            straight = model_straightness(
                self.ema.module, self.data.draw_source, seed=self.cfg.train.seed + 13
            )
        self.echo(
            write_report(
                self.out,
                rows,
                floor,
                title=f"{self.data.name}: W2 vs NFE",
                straightness=straight,
            )
        )
        if self.data.is_image:
            self._plots_images()
        elif self.data.dim == 2:
            self._plots_2d()
        return rows, floor

    def _digits_rows(self) -> list[Any]:
        """A periodic evaluation of a digits run: the last sampler and step count, one draw."""
        from flowmatch.train.image_eval import evaluate_images

        ev, s = self.cfg.eval, self.cfg.sample
        return evaluate_images(
            self.ema.module,
            self.data.holdout,
            self.data.labels,
            num=self.data.train.shape[0],
            steps=ev.steps[-1:],
            methods=ev.methods[-1:],
            draws=1,
            seed=self.cfg.train.seed + 7,
            guidance=s.guidance,
            eta=s.eta,
            noise=s.noise,
        )

    def _finish_digits(self) -> tuple[list[Any], Any]:
        from flowmatch.train.image_eval import digits_report

        ev, s = self.cfg.eval, self.cfg.sample
        rows, floor = digits_report(
            self.ema.module,
            self.out,
            train=self.data.train,
            train_labels=self.data.labels,
            test=self.data.holdout,
            steps=ev.steps,
            methods=ev.methods,
            draws=ev.draws,
            seed=self.cfg.train.seed + 7,
            guidance=s.guidance,
            eta=s.eta,
            noise=s.noise,
            echo=self.echo,
        )
        self._append_eval(rows)
        self._plots_images()
        return rows, floor

    def _plots_images(self) -> None:
        """samples.png: a row per class (or a square grid) at the run's sampler; path.png: one
        sample's states from noise (t=0) to image (t=1)."""
        from flowmatch import viz

        k, per = self.data.num_classes, 10
        cond = labels_in_turn(per * k, k) if k is not None else None
        res = self._plot_samples(per * k if k is not None else 100, cond)
        scale = max(1, 96 // self.data.shape[-1])
        viz.image_grid(res.x.cpu(), self.out / "samples.png", nrow=per, scale=scale)
        viz.trajectory_strip(
            res.trajectory[:, 0].cpu(), self.out / "path.png", num_frames=9, scale=scale
        )

    def _plot_samples(self, n: int, cond: torch.Tensor | None = None) -> Any:
        """n samples (with trajectories) of the run's sampler for the plots, seeded."""
        from flowmatch.sampling import generate

        g = torch.Generator().manual_seed(self.cfg.train.seed + 11)
        x0 = self.data.draw_source(n, g).to(self.dist.device)
        s = self.cfg.sample
        return generate(
            self.ema.module,
            x0,
            steps=s.steps,
            method=s.method,
            eta=s.eta,
            noise=s.noise,
            cond=cond.to(self.dist.device) if cond is not None else None,
            guidance=s.guidance if cond is not None else None,
            generator=g,
            return_trajectory=True,
        )

    def _plots_2d(self) -> None:
        from flowmatch import viz

        n = min(self.cfg.eval.num_samples, 5000)
        s = self.cfg.sample
        res = self._plot_samples(n)
        reference = self.data.holdout[:n]
        viz.scatter(
            res.x.cpu(),
            self.out / "samples.png",
            reference=reference,
            names=("samples", "data"),
            title=f"{self.data.name}: {s.method}, NFE {res.nfe}",
        )
        viz.trajectories(
            res.trajectory.cpu(),
            self.out / "trajectories.png",
            title="noise (t=0) to samples (t=1)",
        )
