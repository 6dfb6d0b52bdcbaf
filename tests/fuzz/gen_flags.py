"""Out-of-range and malformed command-line flags of every command."""

from __future__ import annotations

from .harness import TINY, Case

LONG = "a" * 400_000
TINY_SETS = [a for s in TINY for a in ("--set", s)]
SMALL_MODEL = ["--set", "model.hidden=16", "--set", "model.depth=1"]
CONFIG = "data: {name: checkerboard}\nmodel: {name: mlp, hidden: 16, depth: 1}\n"

SAMPLE = ["sample", "{run}", "--num", "20", "--steps", "2"]
SAMPLE_OUT = [*SAMPLE, "--out", "{d}/s.npy"]
EVAL = ["eval", "{run}", "--steps", "1", "--methods", "euler", "--draws", "1", "--num", "50"]
LIKELIHOOD = ["likelihood", "{run}", "{d}/pts.npy", "--no-progress", "--batch-size", "32"]
REFLOW = [
    "reflow",
    "{run}",
    "--out",
    "{d}/re",
    "--num",
    "64",
    "--train-steps",
    "2",
    "--no-progress",
]
REFLOW += [a for s in TINY if not s.startswith("train.steps") for a in ("--set", s)]
TRAIN = ["train", "{d}/c.yaml", "--out", "{d}/out", "--no-progress", *TINY_SETS]

BAD_INTS = ["0", "-1", "1000000000", "9223372036854775808", "abc", "1.5"]
BAD_FLOATS = ["-1", "nan", "inf", "1e308", "abc"]
BAD_SETS = [
    "foo",
    "=1",
    "train.steps",
    "train.steps=",
    "nokey.x=1",
    "train.nokey=1",
    "train.steps=[",
    "train.steps={a: ",
    "train..steps=1",
    ".=1",
    "train.steps=2=3",
    "train.steps=*alias",
    "train.steps=!!python/object:os.system",
    "train.steps=" + "[" * 10_000,
    LONG + "=1",
    "train.steps=" + LONG,
    "model=[1, 2]",
    "train=5",
    "eval.steps=1,2,x",
    "train.seed=99999999999999999999999",
    "train.device=cuda",
    "data.name=\u00e9\u4e2d",
]


def _points(path):
    import numpy as np

    np.save(path, np.random.default_rng(0).uniform(-2, 2, size=(32, 2)).astype(np.float32))


def _out_names(out: str) -> tuple[str, ...]:
    """A bad --out is named by the flag or by (a part of) the path it gave."""
    parts = [p[:40] for p in out.replace("{d}", "").replace("{run}", "").split("/") if p]
    return ("--out", *parts) if parts else ("--out", ".")


def _set_names(value: str) -> tuple[str, ...]:
    """A bad --set is named by the flag, the override, or its key (or the key's first part)."""
    key = value.split("=")[0]
    named = ("--set", "override", value[:20])
    return (*named, key[:20], key.split(".")[0][:20]) if key.strip(". ") else named


def _case(label: str, args: list[str], names: tuple[str, ...] = (), **kw: object) -> Case:
    files = dict(kw.pop("files", {}))  # type: ignore[call-overload]
    files.setdefault("c.yaml", CONFIG)
    files.setdefault("pts.npy", _points)
    files.setdefault("existing.yaml", "a: 1\n")
    needs_run = any("{run}" in a for a in args)
    return Case(
        f"flags-{label}", "flags", args, files=files, needs_run=needs_run, names=names, **kw
    )  # type: ignore[arg-type]


def flag_cases() -> list[Case]:
    cases: list[Case] = []
    # sample
    for flag in ("--num", "--steps", "--seed", "--cond"):
        for v in BAD_INTS:
            args = [a for a in SAMPLE_OUT]
            if flag in args:
                i = args.index(flag)
                args[i + 1] = v
            else:
                args += [flag, v]
            cases.append(_case(f"sample{flag}={v[:20]}", args, (flag,)))
    for flag in ("--eta", "--noise", "--guidance", "--temperature", "--corrector"):
        for v in BAD_FLOATS:
            cases.append(_case(f"sample{flag}={v}", [*SAMPLE_OUT, flag, v], (flag,)))
    for v in ("foo", "", "euler,rk4", "dopri5", "ddim", "ddpm", "sde", "EULER"):
        cases.append(_case(f"sample--method={v}", [*SAMPLE_OUT, "--method", v], ("--method",)))
    outs = {
        "proc": "/proc/nope/a.npy",
        "under_file": "{d}/existing.yaml/a.npy",
        "unknown_suffix": "{d}/a.xyz",
        "no_suffix": "{d}/a",
        "dir": "{d}",
        "empty": "",
        "long": "{d}/" + LONG + ".npy",
        "long_component": "{d}/" + "b" * 300 + ".npy",
        "png": "{d}/a.png",
        "txt": "{d}/a.txt",
        "csv": "{d}/a.csv",
        "existing_yaml": "{d}/existing.yaml",
        "into_run_config": "{run}/config.yaml",
        "into_run_model": "{run}/model/ema.safetensors",
        "dev_full": "/dev/full/a.npy",
        "proc_root": "/proc/a.npy",
        "nonexistent_parent": "{d}/no/such/dir/a.npy",
    }
    for label, out in outs.items():
        cases.append(_case(f"sample--out={label}", [*SAMPLE, "--out", out], _out_names(out)))
    cases += [
        _case("sample-no-out", SAMPLE, ("--out",)),
        _case("sample-unknown-option", [*SAMPLE_OUT, "--fuzz", "1"], ("--fuzz",)),
        _case("sample-run-missing", ["sample", "{d}/nope", "--out", "{d}/s.npy"], ("nope",)),
        _case("sample-run-is-file", ["sample", "{d}/existing.yaml", "--out", "{d}/s.npy"]),
        _case("sample-run-long", ["sample", "{d}/" + LONG, "--out", "{d}/s.npy"]),
        _case("sample-prefix-points", [*SAMPLE_OUT, "--prefix", "ab"], ("--prefix", "text")),
        _case("sample-infill-points", [*SAMPLE_OUT, "--infill", "a_b"], ("--infill", "text")),
        _case("sample-blank-two", [*SAMPLE_OUT, "--blank", "ab"], ("--blank",)),
        _case("sample-blank-empty", [*SAMPLE_OUT, "--blank", ""], ("--blank",)),
        _case("sample-interpolate-missing", [*SAMPLE_OUT, "--interpolate", "{d}/none.npy"]),
        _case("sample-interpolate-dir", [*SAMPLE_OUT, "--interpolate", "{d}"]),
        _case("sample-interpolate-long", [*SAMPLE_OUT, "--interpolate", LONG + ".npy"]),
        _case("sample-plugin-missing", [*SAMPLE_OUT, "--plugin", "no_such_module_fuzz"]),
        _case(
            "sample-plugin-syntax",
            [*SAMPLE_OUT, "--plugin", "{d}/bad.py"],
            files={"bad.py": "def (:\n"},
        ),
        _case(
            "sample-plugin-raises",
            [*SAMPLE_OUT, "--plugin", "{d}/boom.py"],
            files={"boom.py": "raise RuntimeError('boom')\n"},
        ),
        _case(
            "sample-num-huge-steps-huge",
            [*SAMPLE, "--out", "{d}/s.npy", "--num", "100000000", "--steps", "100000000"],
        ),
        _case("sample-dopri5-nan-noise", [*SAMPLE_OUT, "--method", "sde", "--noise", "1e300"]),
    ]
    # eval
    for v in ("", "0", "-1", "a,b", "1,,2", "1000000000", "99999999999999999999", "1.5", ",", " "):
        cases.append(_case(f"eval--steps={v}", [*EVAL, "--steps", v], ("--steps",)))
    for v in ("", "foo", "euler,", "euler,foo", ",", "dopri5"):
        cases.append(_case(f"eval--methods={v}", [*EVAL, "--methods", v], ("--methods",)))
    for flag in ("--draws", "--num"):
        for v in BAD_INTS:
            cases.append(_case(f"eval{flag}={v[:20]}", [*EVAL, flag, v], (flag,)))
    for flag in ("--eta", "--noise"):
        for v in ("-1", "2", "nan", "inf"):
            cases.append(_case(f"eval{flag}={v}", [*EVAL, flag, v], (flag,)))
    cases += [
        _case("eval-run-missing", ["eval", "{d}/nope"], ("nope",)),
        _case(
            "eval-model-dir", ["eval", "{run}/model", "--steps", "1", "--draws", "1", "--num", "50"]
        ),
        _case("eval-unknown-option", [*EVAL, "--out", "x"], ("--out",)),
    ]
    # likelihood
    for flag in ("--probes", "--batch-size", "--seed"):
        for v in BAD_INTS:
            cases.append(_case(f"likelihood{flag}={v[:20]}", [*LIKELIHOOD, flag, v], (flag,)))
    for flag in ("--atol", "--rtol"):
        for v in ("0", "-1", "nan", "inf", "1e-300", "abc"):
            cases.append(_case(f"likelihood{flag}={v}", [*LIKELIHOOD, flag, v], (flag,)))
    cases += [
        _case("likelihood--method=foo", [*LIKELIHOOD, "--method", "foo"], ("--method",)),
        _case(
            "likelihood-hutchinson-many-probes",
            [*LIKELIHOOD, "--method", "hutchinson", "--probes", "1000000"],
        ),
        _case("likelihood-tolerances-tiny", [*LIKELIHOOD, "--atol", "1e-300", "--rtol", "1e-300"]),
        _case(
            "likelihood--out=proc", [*LIKELIHOOD, "--out", "/proc/nope/l.csv"], ("--out", "/proc")
        ),
        _case("likelihood--out=xyz", [*LIKELIHOOD, "--out", "{d}/l.xyz"], ("--out", "xyz")),
        _case("likelihood--out=under_file", [*LIKELIHOOD, "--out", "{d}/existing.yaml/l.csv"]),
        _case("likelihood--out=long", [*LIKELIHOOD, "--out", "{d}/" + LONG + ".csv"]),
        _case("likelihood-data-missing", ["likelihood", "{run}", "{d}/none.npy"], ("none.npy",)),
        _case("likelihood-data-dir", ["likelihood", "{run}", "{d}"]),
        _case(
            "likelihood-data-yaml", ["likelihood", "{run}", "{d}/existing.yaml"], ("existing.yaml",)
        ),
        _case("likelihood-no-data", ["likelihood", "{run}"]),
    ]
    # reflow
    for flag in ("--num", "--train-steps", "--seed"):
        for v in BAD_INTS:
            if flag == "--train-steps" and v == "1000000000":
                continue  # a legitimately long run
            names = (flag, flag.lstrip("-").replace("-", "."))  # the flag or its config key
            cases.append(_case(f"reflow{flag}={v[:20]}", [*REFLOW, flag, v], names))
    for v in BAD_SETS:
        cases.append(_case(f"reflow--set={v[:30]}", [*REFLOW, "--set", v], _set_names(v)))
    outs2 = {
        "proc": "/proc/nope/re",
        "under_file": "{d}/existing.yaml/re",
        "existing_file": "{d}/existing.yaml",
        "same_run": "{run}",
        "long": "{d}/" + LONG,
    }
    for label, out in outs2.items():
        args = [a for a in REFLOW]
        args[args.index("--out") + 1] = out
        cases.append(_case(f"reflow--out={label}", args, _out_names(out)))
    cases += [
        _case("reflow-resume-nothing", [*REFLOW, "--resume"]),
        _case("reflow-distill", [*REFLOW, "--distill"]),
    ]
    # train
    for v in BAD_SETS:
        cases.append(_case(f"train--set={v[:30]}", [*TRAIN, "--set", v], _set_names(v)))
    outs3 = {
        "proc": "/proc/nope/run",
        "under_file": "{d}/existing.yaml/run",
        "existing_file": "{d}/existing.yaml",
        "existing_run": "{run}",
        "long": "{d}/" + LONG,
        "long_component": "{d}/" + "r" * 300,
        "dev_null": "/dev/null",
    }
    for label, out in outs3.items():
        args = [a for a in TRAIN]
        args[args.index("--out") + 1] = out
        cases.append(_case(f"train--out={label}", args, _out_names(out)))
    cases += [
        _case("train-no-config", ["train", "--no-progress"], ("config",)),
        _case(
            "train-config-missing", ["train", "{d}/none.yaml", "--out", "{d}/out"], ("none.yaml",)
        ),
        _case("train-config-dir", ["train", "{d}", "--out", "{d}/out"]),
        _case("train-config-long", ["train", "{d}/" + LONG + ".yaml", "--out", "{d}/out"]),
        _case("train-config-dev-null", ["train", "/dev/null", "--out", "{d}/out", *TINY_SETS]),
        _case("train-config-proc", ["train", "/proc/self/status", "--out", "{d}/out"]),
        _case("train-resume-no-out", ["train", "--resume"], ("--out",)),
        _case("train-resume-missing", ["train", "--resume", "--out", "{d}/none"], ("none",)),
        _case("train-resume-not-run", ["train", "--resume", "--out", "{d}"]),
        _case("train-default-out", ["train", "{d}/c.yaml", "--no-progress", *TINY_SETS]),
        _case("train-unknown-option", [*TRAIN, "--fuzz"], ("--fuzz",)),
        _case("train-plugin-missing", [*TRAIN, "--plugin", "no_such_module_fuzz"]),
        _case(
            "train-plugin-raises", [*TRAIN, "--plugin", "{d}/boom.py"], files={"boom.py": "1/0\n"}
        ),
        _case("train-device-cuda", [*TRAIN, "--set", "train.device=cuda"], ("device", "cuda")),
        _case("train-precision-fp16", [*TRAIN, "--set", "train.precision=fp16"]),
        _case("train-compile", [*TRAIN, "--set", "train.compile=true"]),
        _case("train-tensorboard", [*TRAIN, "--set", "train.tensorboard=true"]),
        _case("train-seed-2p63", [*TRAIN, "--set", "train.seed=9223372036854775808"], ("seed",)),
        _case("train-seed-2p64", [*TRAIN, "--set", "train.seed=18446744073709551616"], ("seed",)),
        _case(
            "train-holdout-big",
            [*TRAIN, "--set", "data.num_holdout=99999999999999999999"],
            ("num_holdout",),
        ),
        _case("train-eval-steps-1e9", [*TRAIN, "--set", "eval.steps=1000000000"], ("steps",)),
        _case("train-eval-draws-1e9", [*TRAIN, "--set", "eval.draws=1000000000"], ("draws",)),
        _case("train-depth-1e9", [*TRAIN, "--set", "model.depth=1000000000"], ("depth",)),
        _case("train-hidden-1e9", [*TRAIN, "--set", "model.hidden=1000000000"], ("hidden",)),
        _case("train-batch-1e9", [*TRAIN, "--set", "train.batch_size=1000000000"], ("batch_size",)),
        _case(
            "train-num-train-1e12",
            [*TRAIN, "--set", "data.num_train=1000000000000"],
            ("num_train",),
        ),
        _case(
            "train-sinkhorn-reg-1e-300",
            [*TRAIN, "--set", "coupling={name: minibatch_ot, method: sinkhorn, reg: 1.0e-300}"],
        ),
        _case(
            "train-lr-huge", [*TRAIN, "--set", "optim.lr=1e300", "--set", "optim.grad_clip=null"]
        ),
    ]
    # demo, datasets, the app itself
    cases += [
        _case(
            "demo-dataset-foo", ["demo", "--dataset", "foo", "--out", "{d}/demo"], ("--dataset",)
        ),
        _case("demo-steps-0", ["demo", "--steps", "0", "--out", "{d}/demo"], ("--steps",)),
        _case("demo-steps-neg", ["demo", "--steps", "-5", "--out", "{d}/demo"], ("--steps",)),
        _case("demo-steps-abc", ["demo", "--steps", "abc", "--out", "{d}/demo"], ("--steps",)),
        _case(
            "demo-steps-2p63",
            ["demo", "--steps", "9223372036854775808", "--out", "{d}/demo"],
            ("--steps", "train.steps"),
        ),
        _case("demo-oracle", ["demo", "--oracle", "--out", "{d}/demo", "--no-progress"]),
        _case(  # the demo's evaluation and plots are its own: give it time
            "demo-steps-2",
            ["demo", "--steps", "2", "--out", "{d}/demo", "--no-progress"],
            timeout=600,
        ),
        _case(
            "demo-out-proc", ["demo", "--oracle", "--out", "/proc/nope/demo"], ("--out", "/proc")
        ),
        _case("demo-out-file", ["demo", "--oracle", "--out", "{d}/existing.yaml"]),
        _case("demo-out-long", ["demo", "--oracle", "--out", "{d}/" + LONG]),
        _case("demo-unknown-option", ["demo", "--fuzz"], ("--fuzz",)),
        _case("datasets", ["datasets"]),
        _case("datasets-extra-arg", ["datasets", "extra"]),
        _case("no-args", []),
        _case("help", ["--help"]),
        _case("unknown-command", ["fuzzcmd"], ("fuzzcmd",)),
        _case("unknown-global-option", ["--fuzz"], ("--fuzz",)),
        _case("command-help", ["train", "--help"]),
        _case(
            "non-utf8-arg",
            ["sample", "{run}", "--out", "{d}/\udcff.npy", "--num", "5", "--steps", "1"],
        ),
        _case(
            "nul-in-arg",
            ["sample", "{run}", "--out", "{d}/a\x00b.npy", "--num", "5", "--steps", "1"],
        ),
    ]
    return cases
