"""The training loggers (``train.loggers``): metrics.csv, TensorBoard, Weights & Biases in
offline mode, ``loss.png``, and the one-line errors of a missing package."""

from __future__ import annotations

import csv
import struct
import sys
from pathlib import Path

import pytest

from flowmatch.errors import ConfigError
from flowmatch.train.config import load_config
from flowmatch.train.loggers import check_loggers, flat_hparams, resolve_loggers
from flowmatch.train.logging import METRICS_HEADER, MetricsLog, write_loss_plot
from flowmatch.train.trainer import Trainer

TINY = [
    "model.hidden=16",
    "model.depth=2",
    "train.batch_size=32",
    "train.log_every=5",
    "train.steps=20",
    "train.checkpoint_every=10",
    "train.eval_every=100000",
]
QUIET = {"progress": False, "final_eval": False, "echo": lambda _msg: None}


def train(out: Path, *overrides: str, resume: bool = False) -> Path:
    Trainer(load_config(None, [*TINY, *overrides]), out, resume=resume, **QUIET).run()
    return out


def metrics(out: Path) -> list[list[str]]:
    with open(out / "metrics.csv", newline="") as fh:
        return list(csv.reader(fh))


def hide(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    """Make ``import <package>`` fail as if it were not installed (and forget the flowmatch
    modules that imported it already)."""
    module = "torch.utils.tensorboard" if package == "tensorboard" else package
    for name in [n for n in sys.modules if n == module or n.startswith(f"{module}.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, module, None)
    for name in [n for n in sys.modules if n.startswith("flowmatch.viz")]:
        monkeypatch.delitem(sys.modules, name)


# ------------------------------------------------------------------------------ the names


def test_csv_is_always_first_and_the_tensorboard_key_is_an_alias():
    assert resolve_loggers() == ("csv",)
    assert resolve_loggers([]) == ("csv",)
    assert resolve_loggers(["wandb"]) == ("csv", "wandb")
    assert resolve_loggers(["wandb", "csv", "wandb"], tensorboard=True) == (
        "csv",
        "wandb",
        "tensorboard",
    )
    with pytest.raises(ConfigError, match=r"train\.loggers: unknown logger 'mlflow'"):
        resolve_loggers(["mlflow"])


def test_config_keys_are_validated():
    cfg = load_config(None, ["train.loggers=wandb,tensorboard", "train.wandb_project=fm-tests"])
    assert cfg.train.loggers == ["wandb", "tensorboard"] and cfg.train.wandb_project == "fm-tests"
    assert load_config(None, []).train.loggers == ["csv"]
    assert load_config(None, []).train.wandb_project is None
    with pytest.raises(ConfigError, match=r"train\.loggers"):
        load_config(None, ["train.loggers=[csv, mlflow]"])
    with pytest.raises(ConfigError, match=r"train\.wandb_project"):
        load_config(None, ["train.wandb_project=team/project"])


def test_flat_hparams():
    flat = flat_hparams({"train": {"lr": 1e-3, "steps": 5, "compile": False, "x": None}, "e": [1]})
    assert flat == {"train.lr": 1e-3, "train.steps": 5, "train.compile": False, "e": "[1]"}


# ------------------------------------------------------------------------------ csv


def test_csv_rows_and_resume_drops_the_rows_past_the_step(tmp_path):
    log = MetricsLog(tmp_path, step=0)
    for step in (5, 10, 15):
        log.write(step, 1.0 / step, 1e-3, 0.5, 0.1 * step)
    log.close()
    rows = metrics(tmp_path)
    assert rows[0] == METRICS_HEADER
    assert rows[1] == ["5", "0.200000", "0.001", "0.5", "0.500"]
    assert [r[0] for r in rows[1:]] == ["5", "10", "15"]
    MetricsLog(tmp_path, step=10).close()
    assert [r[0] for r in metrics(tmp_path)[1:]] == ["5", "10"]


def test_a_run_writes_metrics_and_loss_png(tmp_path):
    pytest.importorskip("matplotlib", reason="loss.png needs matplotlib (flowmatch[plots])")
    out = train(tmp_path / "run")
    rows = metrics(out)
    assert rows[0] == METRICS_HEADER and [r[0] for r in rows[1:]] == ["5", "10", "15", "20"]
    png = out / "loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert not list(out.glob("*.tmp*"))


def test_loss_png_is_skipped_without_matplotlib(tmp_path, monkeypatch):
    log = MetricsLog(tmp_path)
    log.write(5, 0.5, 1e-3, 0.1, 0.1)
    hide(monkeypatch, "matplotlib")
    log.close()  # no error
    assert not (tmp_path / "loss.png").exists()
    assert write_loss_plot(tmp_path) is None


# ------------------------------------------------------------------------------ tensorboard


def test_tensorboard_events_hold_the_scalars_and_the_config(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = train(tmp_path / "run", "train.loggers=[tensorboard]")
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    assert {"train/loss", "train/lr", "train/grad_norm"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == [5, 10, 15, 20]
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "hidden: 16" in text and "loggers:" in text
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")


def test_tensorboard_alias_still_works(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed")
    out = train(tmp_path / "run", "train.tensorboard=true")
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert (out / "metrics.csv").exists()


# ------------------------------------------------------------------------------ wandb


def wandb_records(path: Path) -> list:
    """The records of an offline ``run-*.wandb`` file (LevelDB log blocks of protobufs)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, chunk, records, block = 7, b"", [], 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = pb.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


def wandb_history(path: Path) -> list[dict[str, str]]:
    """The logged rows of an offline run: ``{"train/loss": "0.5", ...}`` (values as JSON)."""
    return [
        {item.key or "/".join(item.nested_key): item.value_json for item in r.history.item}
        for r in wandb_records(path)
        if r.WhichOneof("record_type") == "history"
    ]


def test_wandb_offline_run_holds_the_config_and_the_metrics(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed (pip install 'flowmatch[wandb]')")
    import json

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = train(tmp_path / "run", "train.loggers=[wandb]", "train.wandb_project=fm-tests")
    (run_dir,) = (tmp_path / "wb" / "wandb").glob("offline-run-*")
    (file,) = run_dir.glob("run-*.wandb")
    records = wandb_records(file)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.project == "fm-tests" and run.display_name == "run"
    assert run.run_id == (out / "wandb" / "run_id").read_text().strip()
    config = {item.key: item.value_json for item in run.config.update}
    assert json.loads(config["model"])["hidden"] == 16
    assert json.loads(config["train"])["loggers"] == ["wandb"]
    history = wandb_history(file)
    assert [int(h["train/step"]) for h in history] == [5, 10, 15, 20]
    logged = {int(row[0]): float(row[1]) for row in metrics(out)[1:]}
    for h in history:
        assert float(h["train/loss"]) == pytest.approx(logged[int(h["train/step"])], abs=1e-5)
        assert {"train/lr", "train/grad_norm", "train/wall_time"} <= set(h)

    # a resumed run continues the same W&B run id, logging the steps after the checkpoint
    train(out, "train.loggers=[wandb]", "train.wandb_project=fm-tests", "train.steps=30",
          resume=True)  # fmt: skip
    runs = sorted((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(p.name.endswith(run.run_id) for p in runs)
    (file,) = next(p for p in runs if p != run_dir).glob("run-*.wandb")
    assert [int(h["train/step"]) for h in wandb_history(file)] == [25, 30]


# ------------------------------------------------------------------------------ missing packages


@pytest.mark.parametrize(
    ("overrides", "package", "key"),
    [
        (["train.loggers=[wandb]"], "wandb", "train.loggers"),
        (["train.loggers=[csv, tensorboard]"], "tensorboard", "train.loggers"),
        (["train.tensorboard=true"], "tensorboard", "train.tensorboard"),
    ],
)
def test_a_missing_package_is_a_one_line_config_error(
    tmp_path, monkeypatch, overrides, package, key
):
    hide(monkeypatch, package)
    cfg = load_config(None, [*TINY, *overrides])
    with pytest.raises(ConfigError) as err:
        Trainer(cfg, tmp_path / "run", **QUIET)
    message = str(err.value)
    assert err.value.key == key and "\n" not in message
    assert message.startswith(f"config: {key}: ")
    assert f"pip install 'flowmatch[{package}]'" in message
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match=f"flowmatch\\[{package}\\]"):
        check_loggers(cfg.train.loggers, tensorboard=cfg.train.tensorboard)
