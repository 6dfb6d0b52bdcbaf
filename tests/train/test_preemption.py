"""Reliability of training runs: SIGTERM/SIGINT and max_minutes checkpoint and exit 75, resume
is bit-identical, one writer per run directory, damaged checkpoints are moved aside, a full
disk leaves the previous checkpoint intact, and a failed resume changes nothing."""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from flowmatch.cli import main
from flowmatch.errors import CheckpointError, Preempted
from flowmatch.runlock import LOCK_NAME, RunLock, RunLockedError
from flowmatch.train import checkpoint as ckpt_module
from flowmatch.train.checkpoint import (
    latest_checkpoint,
    newest_good_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)
from flowmatch.train.config import load_config
from flowmatch.train.trainer import Trainer

TINY = [
    "model.hidden=32",
    "model.depth=2",
    "train.batch_size=64",
    "train.log_every=5",
    "train.eval_every=100000",
    "eval.steps=[2]",
    "eval.methods=[midpoint]",
    "eval.num_samples=100",
    "eval.draws=1",
    "data.num_train=2000",
    "data.num_holdout=200",
]
QUIET = {"progress": False, "final_eval": False, "echo": lambda _m: None}


def cli(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def sets(overrides):
    return [arg for o in overrides for arg in ("--set", o)]


def weights(run: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {n: load_file(str(run / "model" / f"{n}.safetensors")) for n in ("model", "ema")}


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    for kind in ("model", "ema"):
        for key, value in wa[kind].items():
            assert torch.equal(value, wb[kind][key]), (kind, key)


def digest(directory: Path) -> dict[str, str]:
    """sha256 of every file under a directory (the lock file aside)."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != LOCK_NAME
    }


def train(out: Path, steps: int, *extra: str, resume: bool = False) -> Trainer:
    cfg = load_config(None, [*TINY, f"train.steps={steps}", *extra])
    return Trainer(cfg, out, resume=resume, **QUIET)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted 40-step run, checkpoints every 10 steps."""
    out = tmp_path_factory.mktemp("ref") / "run"
    train(out, 40, "train.checkpoint_every=10").run()
    return out


# ---------------------------------------------------------------------------------------------
# SIGTERM / SIGINT / max_minutes


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_finishes_the_step_checkpoints_and_resume_is_bit_identical(
    tmp_path, reference, monkeypatch, sig
):
    # the signal arrives during step 17 (from the periodic evaluation hook): the step
    # finishes, a checkpoint of step 17 is written (not a multiple of checkpoint_every) and
    # the loop raises Preempted; resuming ends bit-identical to the uninterrupted run
    out = tmp_path / "run"
    trainer = train(out, 40, "train.checkpoint_every=10", "train.eval_every=17")
    monkeypatch.setattr(trainer, "_periodic", lambda step: os.kill(os.getpid(), sig))
    before = signal.getsignal(sig)
    with pytest.raises(Preempted) as info:
        trainer.run()
    assert info.value.step == 17 and info.value.reason == signal.Signals(sig).name
    assert signal.getsignal(sig) == before  # the handlers are given back
    assert latest_checkpoint(out / "checkpoints").name == "step_00000017"
    assert not (out / LOCK_NAME).read_text()  # the lock was released
    train(out, 40, "train.checkpoint_every=10", resume=True).run()
    assert_same_weights(reference, out)
    with open(out / "metrics.csv", newline="") as fh:
        steps = [int(r["step"]) for r in csv.DictReader(fh)]
    assert steps == list(range(5, 41, 5))  # no missing or repeated rows


def test_max_minutes_checkpoints_and_stops(tmp_path, reference):
    out = tmp_path / "run"
    # a limit of 0.6 ms: the first step already passes it
    with pytest.raises(Preempted) as info:
        train(out, 40, "train.checkpoint_every=10", "train.max_minutes=0.00001").run()
    assert info.value.reason == "max_minutes" and info.value.step == 1
    assert latest_checkpoint(out / "checkpoints").name == "step_00000001"
    train(out, 40, "train.checkpoint_every=10", resume=True).run()
    assert_same_weights(reference, out)


def test_preempted_run_exits_75_with_one_line(tmp_path, capsys):
    (tmp_path / "cfg.yaml").write_text("")
    code, _, err = cli(
        [
            "train",
            tmp_path / "cfg.yaml",
            "--out",
            tmp_path / "run",
            "--no-progress",
            *sets([*TINY, "train.steps=30", "train.max_minutes=0.00001"]),
        ],
        capsys,
    )
    assert code == 75
    line = err.strip()
    assert "\n" not in line
    assert line.startswith("stopped: stopped by max_minutes at step 1")
    assert "--resume" in line


def _cli_process(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "flowmatch", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )


def _last_logged_step(run: Path) -> int:
    try:
        lines = (run / "metrics.csv").read_text().splitlines()
    except OSError:
        return -1
    steps = [int(line.split(",")[0]) for line in lines[1:] if line.split(",")[0].isdigit()]
    return steps[-1] if steps else -1


def _sigterm_runs(tmp_path: Path, signals: int, seed: int) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "model: {hidden: 64, depth: 2}\n"
        "train: {steps: 400, batch_size: 128, log_every: 1, checkpoint_every: 50,"
        " eval_every: 100000}\n"
        "eval: {steps: [2], methods: [midpoint], num_samples: 200, draws: 1}\n"
        "data: {num_train: 5000, num_holdout: 500}\n"
    )
    ref = tmp_path / "ref"
    proc = _cli_process(["train", str(cfg), "--out", str(ref), "--no-progress"])
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()

    # SIGTERM once training has passed a random step, after a further random delay of up to
    # 20 ms; each stopped process must exit 75 having checkpointed the step it was on, so
    # the resumed run loses no step and ends bit-identical to the uninterrupted one
    run = tmp_path / "run"
    rng = random.Random(seed)
    args = ["train", str(cfg), "--out", str(run), "--no-progress"]
    stopped, last_stop = 0, 0
    for target in sorted(rng.sample(range(5, 390), signals)):
        proc = _cli_process(args)
        deadline = time.monotonic() + 120
        # until this process has trained past the target (and past the previous stop: the
        # old rows of metrics.csv are there until the resumed process drops them)
        while proc.poll() is None and _last_logged_step(run) < max(target, last_stop + 1):
            assert time.monotonic() < deadline, "training made no progress"
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.02))
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
            err = proc.stderr.read().decode()
            assert code == 75, err
            step = int(err.split("at step ")[1].split(";")[0])
            # the checkpoint is of the step the process stopped at: no step is lost
            assert latest_checkpoint(run / "checkpoints").name == f"step_{step:08d}"
            assert _last_logged_step(run) == step
            stopped, last_stop = stopped + 1, step
        args = ["train", "--out", str(run), "--resume", "--no-progress"]
    proc = _cli_process(args)
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()
    assert stopped >= signals - 1
    assert_same_weights(ref, run)
    with open(run / "metrics.csv", newline="") as fh:
        assert [int(r["step"]) for r in csv.DictReader(fh)] == list(range(1, 401))


def test_sigterm_at_a_random_moment_then_resume_is_bit_identical(tmp_path):
    _sigterm_runs(tmp_path, signals=1, seed=7)


@pytest.mark.slow
def test_sigterm_ten_times_then_resume_is_bit_identical(tmp_path):
    _sigterm_runs(tmp_path, signals=10, seed=1234)


# ---------------------------------------------------------------------------------------------
# One writer per run directory


def test_second_writer_exits_2_naming_the_holder(tmp_path, reference, capsys):
    run = tmp_path / "run"
    train(run, 10).run()
    before = digest(run)
    with RunLock(run, what="test"):
        code, _, err = cli(["train", "--out", run, "--resume", "--no-progress"], capsys)
        assert code == 2
        assert err.strip() == (
            f"error: {run}: process {os.getpid()} (test) is writing into this run (it holds "
            f"{run / LOCK_NAME}); wait for it to finish or choose another --out"
        )
        # a new run into a directory being written, and eval, are refused the same way
        (tmp_path / "cfg.yaml").write_text("")
        argv = ["train", tmp_path / "cfg.yaml", "--out", tmp_path / "other", "--no-progress"]
        with RunLock(tmp_path / "other"):
            code, _, err = cli([*argv, *sets(TINY)], capsys)
        assert code == 2 and f"process {os.getpid()} (" in err
        code, _, err = cli(["eval", run, "--out", run, "--steps", "2", "--draws", "1"], capsys)
        assert code == 2 and f"process {os.getpid()} (" in err
    assert digest(run) == before


def test_two_trainers_into_one_new_directory(tmp_path):
    # the first holds the lock from construction: the second fails before writing anything
    first = train(tmp_path / "run", 10)
    with pytest.raises(RunLockedError, match="is writing into this run"):
        train(tmp_path / "run", 10)
    first.run()
    assert (tmp_path / "run" / "model" / "config.json").is_file()


def test_stale_lock_is_taken_over_with_a_warning(tmp_path, capsys):
    run = tmp_path / "run"
    train(run, 10).run()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / LOCK_NAME).write_text(f"{dead.pid} flowmatch train\n")
    code, _, err = cli(["train", "--out", run, "--resume", "--no-progress"], capsys)
    assert code == 0
    assert f"took over the lock of process {dead.pid}, which is no longer running" in err


def test_refused_runs_leave_no_directory(tmp_path, capsys, monkeypatch):
    (tmp_path / "cfg.yaml").write_text("")
    argv = ["train", tmp_path / "cfg.yaml", "--out", tmp_path / "x", "--set", "train.steps=a"]
    code, _, err = cli(argv, capsys)
    assert code == 2 and "train.steps" in err and not (tmp_path / "x").exists()
    # refused after the lock was taken (another writer made a run there in between): the
    # directory this process created for its lock is removed again
    from flowmatch.train import trainer as trainer_module
    from flowmatch.train.trainer import RunExistsError

    checks = {"n": 0}
    real = trainer_module.check_run_dir

    def second_check_fails(out, **kwargs):
        checks["n"] += 1
        if checks["n"] == 2:
            raise RunExistsError(f"{out}: already holds a run")
        return real(out, **kwargs)

    monkeypatch.setattr(trainer_module, "check_run_dir", second_check_fails)
    with pytest.raises(RunExistsError):
        train(tmp_path / "y", 10)
    assert not (tmp_path / "y").exists()


# ---------------------------------------------------------------------------------------------
# Checkpoint checksums and fallback


def test_checkpoint_records_checksums_and_verifies(tmp_path):
    t = {"w": torch.ones(3)}
    path = save_checkpoint(tmp_path, step=4, model=t, ema=t, optim={}, rng={"torch": t["w"]})
    state = json.loads((path / "state.json").read_text())
    assert set(state["sha256"]) == {
        "model.safetensors",
        "ema.safetensors",
        "rng.safetensors",
        "optim.pt",
    }
    assert verify_checkpoint(path) == 4
    (path / "optim.pt").write_bytes(b"tampered")
    with pytest.raises(CheckpointError, match=r"optim\.pt does not match its checksum"):
        verify_checkpoint(path)


@pytest.mark.parametrize(
    ("state", "fragment"),
    [
        ({"format_version": 1, "step": 1_000_000}, "state.json says step 1000000"),
        ({"format_version": 1, "step": "x"}, "expected a step in [0, 1000000000], got 'x'"),
        ({"format_version": 9, "step": 4}, "unknown checkpoint format_version 9"),
        ([1, 2], "expected a step"),
    ],
)
def test_implausible_state_json_is_damaged(tmp_path, state, fragment):
    t = {"w": torch.ones(3)}
    path = save_checkpoint(tmp_path, step=4, model=t, ema=t, optim={}, rng={"torch": t["w"]})
    (path / "state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError) as info:
        verify_checkpoint(path)
    assert fragment in str(info.value) and str(path) in str(info.value)


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, reference, capsys):
    run = tmp_path / "run"
    train(run, 40, "train.checkpoint_every=10").run()
    newest = run / "checkpoints" / "step_00000040"
    (newest / "ema.safetensors").write_bytes(os.urandom(100))
    code, _, err = cli(["train", "--out", run, "--resume", "--no-progress"], capsys)
    assert code == 0, err
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1
    assert "step_00000040: damaged checkpoint (ema.safetensors does not match" in warning[0]
    assert "moved it to damaged_step_00000040" in warning[0]
    assert (run / "checkpoints" / "damaged_step_00000040" / "ema.safetensors").is_file()
    assert_same_weights(reference, run)  # it retrained steps 31-40 from step 30


def test_no_intact_checkpoint_is_exit_2_with_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    train(run, 20, "train.checkpoint_every=10").run()
    for step in (10, 20):
        (run / "checkpoints" / f"step_{step:08d}" / "model.safetensors").write_bytes(b"x")
    config_before = (run / "config.yaml").read_bytes()
    code, _, err = cli(
        ["train", "--out", run, "--resume", "--no-progress", "--set", "train.steps=30"], capsys
    )
    assert code == 2
    assert err.strip() == (
        f"error: {run / 'checkpoints'}: no intact checkpoint to resume from (damaged, moved "
        "aside: step_00000020, step_00000010)"
    )
    # a failed resume changes no file of the run: config.yaml keeps its old train.steps
    assert (run / "config.yaml").read_bytes() == config_before
    assert newest_good_checkpoint(run / "checkpoints") is None


def test_checkpoint_past_train_steps_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    train(run, 20, "train.checkpoint_every=10").run()
    code, _, err = cli(
        ["train", "--out", run, "--resume", "--no-progress", "--set", "train.steps=15"], capsys
    )
    assert code == 2
    assert "is at step 20, past train.steps=15 of this run" in err


def test_checkpoint_of_another_architecture_is_exit_2(tmp_path, capsys):
    run = tmp_path / "run"
    train(run, 10).run()
    text = (run / "config.yaml").read_text().replace("hidden: 32", "hidden: 48")
    (run / "config.yaml").write_text(text)
    code, _, err = cli(["train", "--out", run, "--resume", "--no-progress"], capsys)
    assert code == 2
    assert "does not fit this run's model or optimizer" in err
    assert len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# A full disk


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path, reference, monkeypatch):
    run = tmp_path / "run"
    import safetensors.torch as st

    real = st.save_file
    calls = {"n": 0}

    def full_disk(tensors, filename, *args, **kwargs):
        if "/checkpoints/" in str(filename) and ".step_00000030." in str(filename):
            calls["n"] += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filename))
        return real(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(st, "save_file", full_disk)
    with pytest.raises(CheckpointError) as info:
        train(run, 40, "train.checkpoint_every=10").run()
    message = str(info.value)
    assert calls["n"] == 1
    assert "cannot write the checkpoint (No space left on device)" in message
    assert "the newest intact checkpoint is" in message and "step_00000020" in message
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["step_00000010", "step_00000020"]  # no temporary directory left
    monkeypatch.setattr(st, "save_file", real)
    # space is back: the run continues from step 20 and ends as if nothing happened
    train(run, 40, "train.checkpoint_every=10", resume=True).run()
    assert_same_weights(reference, run)


def test_full_disk_is_exit_2_with_one_line(tmp_path, monkeypatch, capsys):
    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt_module, "_sha256", full)
    (tmp_path / "cfg.yaml").write_text("")
    argv = ["train", tmp_path / "cfg.yaml", "--out", tmp_path / "run", "--no-progress"]
    code, _, err = cli([*argv, *sets([*TINY, "train.steps=5"])], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "cannot write the checkpoint (No space left on device); none was written" in err


# ---------------------------------------------------------------------------------------------
# Resume keeps eval.csv consistent


def test_resume_trims_eval_csv_to_the_restored_step(tmp_path):
    run = tmp_path / "run"
    trainer = train(run, 20, "train.checkpoint_every=10")
    trainer.run()
    rows = ["step,method,steps\n", "10,midpoint,2\n", "20,midpoint,2\n", "30,midpoint,2\n"]
    (run / "eval.csv").write_text("".join(rows))
    shutil_ckpt = run / "checkpoints" / "step_00000020"
    (shutil_ckpt / "model.safetensors").write_bytes(b"x")  # resume from step 10
    train(run, 20, "train.checkpoint_every=10", resume=True).run()
    lines = (run / "eval.csv").read_text().splitlines()
    assert lines == ["step,method,steps", "10,midpoint,2"]  # no final eval in QUIET runs


def test_slurm_example_requeues_until_the_run_is_done(tmp_path):
    # examples/slurm_requeue.sbatch with srun and scontrol replaced by shims: srun runs its
    # command, scontrol records the requeue. A time limit of 0.6 ms stops each job after one
    # step (exit 75, requeued); the job after the last step finds nothing left to train and
    # ends with 0. The run ends as an uninterrupted one would.
    script = Path(__file__).parents[2] / "examples" / "slurm_requeue.sbatch"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text('#!/bin/sh\nexec "$@"\n')
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "requeues"}\n')
    (bin_dir / "flowmatch").write_text(f'#!/bin/sh\nexec {sys.executable} -m flowmatch "$@"\n')
    for shim in bin_dir.iterdir():
        shim.chmod(0o755)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "model: {hidden: 16, depth: 1}\ntrain: {steps: 2, max_minutes: 0.00001}\n"
        "data: {num_train: 500, num_holdout: 100}\n"
        "eval: {steps: [1], methods: [euler], num_samples: 50, draws: 1}\n"
    )
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "RUN": str(tmp_path / "run"),
        "CONFIG": str(cfg),
        "SLURM_JOB_ID": "42",
        "OMP_NUM_THREADS": "1",
    }
    codes = []
    for _ in range(5):
        proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
        codes.append(proc.returncode)
        if proc.returncode != 75:
            break
    assert codes == [75, 75, 0], proc.stdout + proc.stderr
    assert (tmp_path / "requeues").read_text().splitlines() == ["requeue 42", "requeue 42"]
    assert "is done" in proc.stdout
    assert (tmp_path / "run" / "eval.txt").is_file()


def test_checkpoints_that_are_a_file_are_exit_2_and_change_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    train(run, 10).run()
    import shutil

    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").write_text("not a folder")
    before = digest(run)
    code, _, err = cli(["train", "--out", run, "--resume", "--no-progress"], capsys)
    assert code == 2
    assert err.strip() == (
        f"error: {run / 'checkpoints'}: expected the folder of checkpoints, found a file"
    )
    assert digest(run) == before


def test_stop_signal_while_no_step_trains_exits_75_at_once(tmp_path, capsys, monkeypatch):
    # SIGTERM while the data loads (or the final evaluation runs): nothing to save beyond the
    # newest checkpoint, so the command stops at once with exit 75, like a stop in training
    from flowmatch.train import trainer as trainer_module

    run = tmp_path / "run"
    train(run, 10, "train.checkpoint_every=5").run()
    real = trainer_module.load_run_data

    def loading(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "load_run_data", loading)
    before, handler = digest(run), signal.getsignal(signal.SIGTERM)
    argv = ["train", "--out", run, "--resume", "--no-progress", "--set", "train.steps=20"]
    code, _, err = cli(argv, capsys)
    assert code == 75
    assert err.strip() == (
        "stopped: stopped by SIGTERM at step 10; no step was training; the newest checkpoint "
        "is complete; continue with --resume"
    )
    assert digest(run) == before
    assert signal.getsignal(signal.SIGTERM) == handler  # given back


def test_latest_step_reads_the_newest_checkpoint_name(tmp_path):
    from flowmatch.train.checkpoint import latest_step

    assert latest_step(tmp_path / "none") == 0
    t = {"w": torch.ones(2)}
    for step in (7, 12):
        save_checkpoint(tmp_path, step=step, model=t, ema=t, optim={}, rng={"torch": t["w"]})
    (tmp_path / ".step_00000099.x.tmp").mkdir()  # a temporary one does not count
    assert latest_step(tmp_path) == 12


def test_abandon_removes_only_a_directory_the_lock_made(tmp_path):
    made = RunLock(tmp_path / "new").acquire()
    (tmp_path / "new" / "half.txt").write_text("x")
    made.abandon()
    assert not (tmp_path / "new").exists() and not made.held
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "keep.txt").write_text("x")
    there = RunLock(tmp_path / "old").acquire()
    there.abandon()
    assert (tmp_path / "old" / "keep.txt").read_text() == "x" and not there.held
