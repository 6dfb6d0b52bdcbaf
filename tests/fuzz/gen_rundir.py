"""Tampered run directories: a copy of one tiny trained run per case, one file changed, then
``sample``, ``eval``, ``likelihood``, ``reflow`` or ``train --resume`` on it."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .gen_flags import EVAL, LIKELIHOOD, REFLOW
from .harness import TINY, Case, run_args

BASE_STEPS = 20
BASE_CHECKPOINT_EVERY = 10

BASE_ARGS = [
    "train",
    "{config}",
    "--out",
    "{out}",
    "--no-progress",
    *("--set", "model.hidden=32", "--set", "model.depth=2"),
    *("--set", f"train.steps={BASE_STEPS}"),
    *("--set", f"train.checkpoint_every={BASE_CHECKPOINT_EVERY}"),
    *("--set", "train.eval_every=1000"),
    *[a for s in TINY if not s.startswith("train.steps") for a in ("--set", s)],
]


def build_base_run(dest: Path) -> Path:
    """Train the session's tiny run (checkerboard, MLP 32x2, 20 steps, a checkpoint every 10)
    into ``dest`` through the CLI, in a forked child. Raises if it did not succeed."""
    config = Path(__file__).resolve().parents[2] / "configs" / "checkerboard.yaml"
    args = [a.replace("{config}", str(config)).replace("{out}", str(dest)) for a in BASE_ARGS]
    code, _, stderr, _, timed_out = run_args(args, dest.parent, timeout=300)
    if code != 0 or timed_out:
        raise RuntimeError(f"the base run did not train (exit {code}): {stderr[-2000:]}")
    return dest


# --- tampering helpers --------------------------------------------------------------------


def _json_edit(rel: str, fn: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    def tamper(run: Path) -> None:
        path = run / rel
        spec = json.loads(path.read_text())
        new = fn(spec)
        path.write_text(json.dumps(spec if new is None else new))

    return tamper


def _write(rel: str, content: bytes | str) -> Callable[[Path], None]:
    def tamper(run: Path) -> None:
        path = run / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)

    return tamper


def _delete(rel: str) -> Callable[[Path], None]:
    def tamper(run: Path) -> None:
        import shutil

        path = run / rel
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()

    return tamper


def _truncate(rel: str, keep: float = 0.5) -> Callable[[Path], None]:
    def tamper(run: Path) -> None:
        path = run / rel
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])

    return tamper


def _random_bytes(rel: str, n: int = 100, seed: int = 0) -> Callable[[Path], None]:
    return _write(rel, np.random.default_rng(seed).bytes(n))


def _tensors(rel: str, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[Path], None]:
    def tamper(run: Path) -> None:
        from safetensors.torch import load_file, save_file

        path = run / rel
        tensors = load_file(path)
        save_file(fn(tensors), path)

    return tamper


def _set(path: list[str], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(spec: dict[str, Any]) -> None:
        node = spec
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = value

    return edit


def _pop(path: list[str]) -> Callable[[dict[str, Any]], None]:
    def edit(spec: dict[str, Any]) -> None:
        node = spec
        for p in path[:-1]:
            node = node[p]
        node.pop(path[-1], None)

    return edit


def _fill(value: float) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda t: {k: v.clone().fill_(value) for k, v in t.items()}


def _reshape_first(t: dict[str, Any]) -> dict[str, Any]:
    import torch

    k = sorted(t)[0]
    return {**t, k: torch.zeros(3, 3)}


def _drop_first(t: dict[str, Any]) -> dict[str, Any]:
    k = sorted(t)[0]
    return {n: v for n, v in t.items() if n != k}


def _extra(t: dict[str, Any]) -> dict[str, Any]:
    import torch

    return {**t, "fuzz.extra": torch.zeros(2)}


def _dtype(dtype: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def fn(t: dict[str, Any]) -> dict[str, Any]:
        import torch

        return {k: v.to(getattr(torch, dtype)) for k, v in t.items()}

    return fn


def _one_nan(t: dict[str, Any]) -> dict[str, Any]:
    k = sorted(t)[-1]
    v = t[k].clone()
    v.view(-1)[0] = math.nan
    return {**t, k: v}


NEWEST = f"checkpoints/step_{BASE_STEPS:08d}"
OLDEST = f"checkpoints/step_{BASE_CHECKPOINT_EVERY:08d}"


def model_json_tampers() -> dict[str, Callable[[Path], None]]:
    rel = "model/config.json"
    t: dict[str, Callable[[Path], None]] = {
        "bad_json": _write(rel, '{"arch": {"name": "mlp", '),
        "empty": _write(rel, ""),
        "json_list": _write(rel, "[1, 2, 3]"),
        "json_null": _write(rel, "null"),
        "json_string": _write(rel, '"mlp"'),
        "non_utf8": _write(rel, b'{"arch": "\xff\xfe"}'),
        "nan_literal": _json_edit(rel, _set(["arch", "fourier_scale"], math.nan)),
        "deep_nesting": _write(rel, "[" * 100_000 + "]" * 100_000),
        "huge_file": _write(rel, '{"pad": "' + "x" * 20_000_000 + '"}'),
        "deleted": _delete(rel),
        "model_dir_deleted": _delete("model"),
    }
    values: dict[str, tuple[list[str], Any]] = {
        "prediction_foo": (["prediction"], "foo"),
        "prediction_dict": (["prediction"], {"a": 1}),
        "prediction_null": (["prediction"], None),
        "objective_prediction_foo": (["objective", "prediction"], "foo"),
        "objective_name_foo": (["objective", "name"], "foo"),
        "objective_list": (["objective"], [1, 2]),
        "source_dict": (["source"], {"a": 1}),
        "source_foo": (["source"], "foo"),
        "source_list": (["source"], [1, 2]),
        "hidden_1e9": (["arch", "hidden"], 10**9),
        "hidden_neg": (["arch", "hidden"], -1),
        "hidden_zero": (["arch", "hidden"], 0),
        "hidden_str": (["arch", "hidden"], "32"),
        "hidden_float": (["arch", "hidden"], 32.5),
        "hidden_2p63": (["arch", "hidden"], 2**63),
        "hidden_64": (["arch", "hidden"], 64),
        "depth_1e7": (["arch", "depth"], 10**7),
        "depth_zero": (["arch", "depth"], 0),
        "depth_3": (["arch", "depth"], 3),
        "dim_3": (["arch", "dim"], 3),
        "dim_1e9": (["arch", "dim"], 10**9),
        "time_embed_odd": (["arch", "time_embed_dim"], 63),
        "time_embed_huge": (["arch", "time_embed_dim"], 10**8),
        "activation_foo": (["arch", "activation"], "foo"),
        "arch_name_foo": (["arch", "name"], "foo"),
        "arch_name_unet": (["arch", "name"], "unet"),
        "arch_string": (["arch"], "mlp"),
        "arch_null": (["arch"], None),
        "fourier_huge": (["arch", "fourier_features"], 10**9),
        "arch_unknown_key": (["arch", "fuzz"], 1),
        "shape_3": (["shape"], [3]),
        "shape_empty": (["shape"], []),
        "shape_2x2": (["shape"], [2, 2]),
        "shape_str": (["shape"], "2"),
        "shape_huge": (["shape"], [10**9]),
        "shape_neg": (["shape"], [-2]),
        "shape_null": (["shape"], None),
        "standardizer_zero_std": (["standardizer"], {"mean": [0.0, 0.0], "std": [0.0, 1.0]}),
        "standardizer_nan": (["standardizer"], {"mean": [math.nan, 0.0], "std": [1.0, 1.0]}),
        "standardizer_neg_std": (["standardizer"], {"mean": [0.0, 0.0], "std": [-1.0, 1.0]}),
        "standardizer_len": (["standardizer"], {"mean": [0.0], "std": [1.0]}),
        "standardizer_missing_std": (["standardizer"], {"mean": [0.0, 0.0]}),
        "standardizer_str": (["standardizer"], "yes"),
        "path_vp_no_params": (["path"], {"schedule": "vp"}),
        "path_ve_no_params": (["path"], {"schedule": "ve"}),
        "path_ddpm_no_params": (["path"], {"schedule": "ddpm"}),
        "path_foo": (["path"], {"schedule": "foo"}),
        "path_string": (["path"], "linear"),
        "path_ddpm_huge": (["path"], {"schedule": "ddpm", "timesteps": 10**9}),
        "path_poly_nan": (["path"], {"schedule": "polynomial", "exponent": math.nan}),
        "format_999": (["format_version"], 999),
        "format_str": (["format_version"], "1"),
        "num_classes_10": (["num_classes"], 10),
        "num_classes_neg": (["num_classes"], -1),
        "num_classes_huge": (["num_classes"], 10**9),
        "null_class_5": (["null_class"], 5),
        "two_times_true": (["two_times"], True),
        "two_times_str": (["two_times"], "yes"),
        "data_int": (["data"], 123),
        "coupling_foo": (["coupling"], {"name": "foo"}),
        "unknown_top": (["fuzz_key"], {"a": 1}),
    }
    for label, (path, value) in values.items():
        t[label] = _json_edit(rel, _set(path, value))
    for key in ("arch", "prediction", "shape", "path", "objective", "format_version", "data"):
        t[f"missing_{key}"] = _json_edit(rel, _pop([key]))
    t["missing_arch_hidden"] = _json_edit(rel, _pop(["arch", "hidden"]))
    return t


def weight_tampers() -> dict[str, Callable[[Path], None]]:
    t: dict[str, Callable[[Path], None]] = {}
    for which in ("ema", "model"):
        rel = f"model/{which}.safetensors"
        t[f"{which}_random_bytes"] = _random_bytes(rel)
        t[f"{which}_truncated"] = _truncate(rel)
        t[f"{which}_empty"] = _write(rel, b"")
        t[f"{which}_deleted"] = _delete(rel)
        t[f"{which}_nan"] = _tensors(rel, _fill(math.nan))
        t[f"{which}_inf"] = _tensors(rel, _fill(math.inf))
        t[f"{which}_one_nan"] = _tensors(rel, _one_nan)
        t[f"{which}_wrong_shape"] = _tensors(rel, _reshape_first)
        t[f"{which}_missing_tensor"] = _tensors(rel, _drop_first)
        t[f"{which}_extra_tensor"] = _tensors(rel, _extra)
        t[f"{which}_float64"] = _tensors(rel, _dtype("float64"))
        t[f"{which}_float16"] = _tensors(rel, _dtype("float16"))
        t[f"{which}_int"] = _tensors(rel, _dtype("int32"))
        t[f"{which}_header_claim"] = _write(rel, b"\xff" * 8 + b"{}")
        t[f"{which}_header_json_bad"] = _write(rel, (10).to_bytes(8, "little") + b"{not json}")
        t[f"{which}_huge_values"] = _tensors(rel, _fill(1e38))
    return t


def checkpoint_tampers() -> dict[str, Callable[[Path], None]]:
    t: dict[str, Callable[[Path], None]] = {
        "newest_ema_random": _random_bytes(f"{NEWEST}/ema.safetensors"),
        "newest_model_random": _random_bytes(f"{NEWEST}/model.safetensors"),
        "newest_model_truncated": _truncate(f"{NEWEST}/model.safetensors"),
        "newest_optim_random": _random_bytes(f"{NEWEST}/optim.pt"),
        "newest_optim_deleted": _delete(f"{NEWEST}/optim.pt"),
        "newest_rng_random": _random_bytes(f"{NEWEST}/rng.safetensors"),
        "newest_rng_deleted": _delete(f"{NEWEST}/rng.safetensors"),
        "newest_ema_deleted": _delete(f"{NEWEST}/ema.safetensors"),
        "newest_model_nan": _tensors(f"{NEWEST}/model.safetensors", _fill(math.nan)),
        "newest_state_deleted": _delete(f"{NEWEST}/state.json"),
        "newest_state_step_1e6": _write(
            f"{NEWEST}/state.json", '{"format_version": 1, "step": 1000000}'
        ),
        "newest_state_step_neg": _write(
            f"{NEWEST}/state.json", '{"format_version": 1, "step": -1}'
        ),
        "newest_state_step_str": _write(
            f"{NEWEST}/state.json", '{"format_version": 1, "step": "ten"}'
        ),
        "newest_state_step_big": _write(
            f"{NEWEST}/state.json", '{"format_version": 1, "step": 100000000000000000000000}'
        ),
        "newest_state_garbage": _write(f"{NEWEST}/state.json", "garbage{"),
        "newest_state_empty_obj": _write(f"{NEWEST}/state.json", "{}"),
        "newest_state_list": _write(f"{NEWEST}/state.json", "[20]"),
        "newest_state_format_9": _write(
            f"{NEWEST}/state.json", '{"format_version": 9, "step": 20}'
        ),
        "newest_dir_deleted": _delete(NEWEST),
        "oldest_dir_deleted": _delete(OLDEST),
        "both_newest_ema_random_and_oldest_random": _chain(
            _random_bytes(f"{NEWEST}/ema.safetensors"), _random_bytes(f"{OLDEST}/ema.safetensors")
        ),
        "all_checkpoints_deleted": _delete("checkpoints"),
        "checkpoints_is_file": _chain(_delete("checkpoints"), _write("checkpoints", "x")),
        "empty_newer_dir": _write("checkpoints/step_00000099/.keep", ""),
        "odd_dir_name": _write("checkpoints/step_xyz/state.json", '{"step": 5}'),
        "tmp_leftover": _write("checkpoints/.tmp_step_00000030/state.json", "{"),
    }
    return t


def _chain(*fns: Callable[[Path], None]) -> Callable[[Path], None]:
    def tamper(run: Path) -> None:
        for fn in fns:
            fn(run)

    return tamper


def _yaml_edit(old: str, new: str) -> Callable[[Path], None]:
    def tamper(run: Path) -> None:
        path = run / "config.yaml"
        text = path.read_text()
        path.write_text(text.replace(old, new, 1))

    return tamper


def run_file_tampers() -> dict[str, Callable[[Path], None]]:
    return {
        "config_yaml_garbage": _write("config.yaml", "{{{ not yaml"),
        "config_yaml_empty": _write("config.yaml", ""),
        "config_yaml_deleted": _delete("config.yaml"),
        "config_yaml_steps_neg": _yaml_edit(f"steps: {BASE_STEPS}", "steps: -1"),
        "config_yaml_hidden_64": _yaml_edit("hidden: 32", "hidden: 64"),
        "config_yaml_hidden_1e9": _yaml_edit("hidden: 32", "hidden: 1000000000"),
        "config_yaml_data_moons": _yaml_edit("name: checkerboard", "name: moons"),
        "config_yaml_data_foo": _yaml_edit("name: checkerboard", "name: foo"),
        "config_yaml_non_utf8": _write("config.yaml", b"data: {name: \xff}\n"),
        "config_yaml_bomb": _yaml_edit("units: degrees", "units: degrees\n  fuzz: &a [1,1,1]"),
        "metrics_csv_garbage": _write("metrics.csv", "\x00\x01garbage\n1,2,3,4,5,6\n"),
        "metrics_csv_deleted": _delete("metrics.csv"),
        "eval_csv_garbage": _write("eval.csv", "a,b\n1\n"),
        "eval_csv_deleted": _delete("eval.csv"),
        "lock_file_leftover": _write(".lock", "99999999\n"),
    }


COMMANDS: dict[str, list[str]] = {
    "sample": ["sample", "{run}", "--out", "{d}/s.npy", "--num", "50", "--steps", "2"],
    "sample_model_dir": [
        "sample",
        "{run}/model",
        "--out",
        "{d}/s.csv",
        "--num",
        "20",
        "--steps",
        "1",
    ],
    "eval": EVAL,
    "likelihood": LIKELIHOOD,
    "reflow": REFLOW,
    "resume": [
        *("train", "--resume", "--out", "{run}", "--no-progress"),
        *("--set", f"train.steps={BASE_STEPS + 2}"),
        *[a for s in TINY if not s.startswith("train.steps") for a in ("--set", s)],
    ],
}


def _points_file(path: Path) -> None:
    np.save(path, np.random.default_rng(0).uniform(-2, 2, size=(32, 2)).astype(np.float32))


def rundir_cases(rng: np.random.Generator, counts: dict[str, int]) -> list[Case]:
    """Tampers crossed with commands; ``counts[group]`` cases drawn (with ``rng``) from each
    group's cross product, plus every command on the untouched run."""
    groups = {
        "modeljson": (
            model_json_tampers(),
            ["sample", "eval", "likelihood", "reflow", "sample_model_dir"],
        ),
        "weights": (weight_tampers(), ["sample", "eval", "likelihood", "reflow", "resume"]),
        "checkpoint": (checkpoint_tampers(), ["resume", "sample", "eval"]),
        "runfiles": (run_file_tampers(), ["resume", "sample", "eval", "reflow"]),
    }
    cases = [
        Case(
            f"rundir-untouched-{cmd}",
            "rundir",
            list(args),
            files={"pts.npy": _points_file},
            needs_run=True,
        )
        for cmd, args in COMMANDS.items()
    ]
    for group, (tampers, commands) in groups.items():
        space = [(label, cmd) for label in tampers for cmd in commands]
        picks = rng.choice(len(space), size=min(counts.get(group, 0), len(space)), replace=False)
        for i in sorted(picks):
            label, cmd = space[i]
            cases.append(
                Case(
                    f"rundir-{group}-{label}-{cmd}",
                    "rundir",
                    list(COMMANDS[cmd]),
                    files={"pts.npy": _points_file},
                    needs_run=True,
                    tamper=tampers[label],
                )
            )
    return cases
