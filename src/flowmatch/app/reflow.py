"""``flowmatch reflow``: straighten a trained run (reflow), or distill it to one step."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from flowmatch.app.sample import run_defaults, sample_labels
from flowmatch.errors import ModelFileError, RunExistsError
from flowmatch.models.files import load
from flowmatch.runlock import LOCK_NAME, RunLock
from flowmatch.train.config import apply_overrides, config_from_dict, config_to_dict, load_config
from flowmatch.train.logging import count_bar
from flowmatch.train.trainer import Trainer, TrainResult

__all__ = ["PAIRS_FILE", "reflow_run"]

PAIRS_FILE = "pairs.safetensors"


def reflow_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    num: int = 50_000,
    train_steps: int | None = None,
    distill: bool = False,
    seed: int = 0,
    overrides: Sequence[str] = (),
    resume: bool = False,
    progress: bool = True,
    final_eval: bool = True,
    echo: Callable[[str], None] = print,
) -> TrainResult:
    """Reflow a trained run: generate (noise, sample) pairs, then train on them, warm-started.

    The pairs are ``num`` source draws integrated by the run's EMA model with dopri5
    (tolerance 1e-5) and written to ``OUT/pairs.safetensors``. The new run's config is the old
    one with ``data.pairs`` set to that file, ``model.init`` to ``run_dir`` and the coupling
    independent; ``distill`` trains the one-step map instead (``time: constant 0``, sampled
    with one Euler step). A labelled run (digits, image folders) integrates each point with a
    label, the classes in turn, at the run's ``sample.guidance``, and the pairs keep the
    labels. Its ``config.yaml`` records all of it, so ``flowmatch train --resume --out OUT``
    (or ``resume=True`` here) continues it.

    Args:
        run_dir: the trained k-rectified run.
        out: the new run directory (must not hold a run unless ``resume``).
        num: number of pairs.
        train_steps: training steps of the new run (default: the old run's).
        distill: train a one-step model instead of the (k+1)-rectified flow.
        seed: seed of the source draws of the pairs.
        overrides: ``key=value`` config overrides of the new run.
        resume: continue an interrupted reflow run in ``out``.
        progress: show progress bars.
        final_eval: evaluate the new run at the end (table, plots).
        echo: where messages go.

    Raises:
        ModelFileError: ``run_dir`` is not a loadable run.
        RunExistsError: ``out`` already holds a run (and not ``resume``) or other files.
        ConfigError: a bad override.
    """
    run_dir, out = Path(run_dir), Path(out)
    if resume:
        if not (out / "config.yaml").is_file():
            raise RunExistsError(f"{out}: no run to resume (no config.yaml)")
        cfg = load_config(out / "config.yaml", overrides)
        trainer = Trainer(
            cfg, out, resume=True, progress=progress, final_eval=final_eval, echo=echo
        )
        return trainer.run()
    if not (run_dir / "config.yaml").is_file():
        raise ModelFileError(f"{run_dir}: not a run directory (no config.yaml)")
    if (out / "config.yaml").exists():
        raise RunExistsError(
            f"{out}: already holds a run; pass --resume to continue it or choose another --out"
        )
    _check_empty(out)
    base = load_config(run_dir / "config.yaml")
    model = load(run_dir)
    raw = config_to_dict(base)
    raw["data"]["pairs"] = str((out / PAIRS_FILE).resolve())
    raw["model"]["init"] = str(run_dir.resolve())
    raw["coupling"] = {"name": "independent"}
    if train_steps is not None:
        raw["train"]["steps"] = train_steps
    if distill:
        raw["time"] = {"sampler": "constant", "value": 0.0}
        raw["sample"] = {"steps": 1, "method": "euler"}
        raw["eval"]["steps"], raw["eval"]["methods"] = [1, 2, 4], ["euler"]
    cfg = apply_overrides(config_from_dict(raw), overrides)  # validated before any write

    lock = RunLock(out, what="flowmatch reflow").acquire()  # one writer from here on
    try:
        _check_empty(out)  # again: another writer may have been quicker
        return _reflow(
            run_dir, out, model, cfg, lock, num, seed, distill, progress, final_eval, echo
        )
    except BaseException:
        if not (out / "config.yaml").exists():  # no run was made: nothing is left behind
            lock.abandon()
        raise
    finally:
        lock.release()


def _check_empty(out: Path) -> None:
    if (out / "config.yaml").exists():
        raise RunExistsError(
            f"{out}: already holds a run; pass --resume to continue it or choose another --out"
        )
    if out.exists() and not out.is_dir():
        raise RunExistsError(f"{out}: exists and is not a directory; choose another --out")
    if out.is_dir() and any(p.name not in (PAIRS_FILE, LOCK_NAME) for p in out.iterdir()):
        raise RunExistsError(f"{out}: exists and is not empty; choose another --out")


def _reflow(
    run_dir: Path,
    out: Path,
    model: Any,
    cfg: Any,
    lock: RunLock,
    num: int,
    seed: int,
    distill: bool,
    progress: bool,
    final_eval: bool,
    echo: Callable[[str], None],
) -> TrainResult:
    """Integrate the pairs into ``out`` and train on them, holding ``out``'s lock."""
    from flowmatch.rectify import reflow_pairs, save_pairs

    x0 = model.draw_source(num, torch.Generator().manual_seed(seed))
    labels = sample_labels(model, num, None, None)  # a labelled run: the classes in turn
    guidance = run_defaults(run_dir).guidance if labels is not None else None
    echo(f"reflow: integrating {num} source points with {run_dir} (dopri5, tol 1e-5)")
    start = time.perf_counter()
    with count_bar(progress) as bar:
        task = bar.add_task("pairs", total=num)
        pairs, nfe = reflow_pairs(
            model,
            x0,
            cond=labels,
            guidance=guidance,
            on_batch=lambda n: bar.update(task, completed=n),
        )
    out.mkdir(parents=True, exist_ok=True)
    meta = {"source_run": str(run_dir.resolve()), "nfe": str(nfe), "seed": str(seed)}
    save_pairs(out / PAIRS_FILE, pairs, meta)
    echo(
        f"wrote {num} pairs to {out / PAIRS_FILE} in {time.perf_counter() - start:.1f} s "
        f"(dopri5: {nfe} batched velocity evaluations in all)"
    )
    what = "one-step distillation" if distill else "reflow"
    echo(f"training the {what} run in {out}")
    trainer = Trainer(cfg, out, progress=progress, final_eval=final_eval, echo=echo, lock=lock)
    return trainer.run()
