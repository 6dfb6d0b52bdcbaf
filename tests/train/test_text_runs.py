"""Text runs end to end: flowmatch train | sample | eval | likelihood on a text file."""

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import flowmatch as fm
from flowmatch.cli import main
from flowmatch.discrete import DiscreteFlowModel
from flowmatch.train.config import load_config
from flowmatch.train.trainer import Trainer

# A toy language: 'b' + a few of one vowel + 'd', e.g. "baad": 120 words, 20 of each form.
WORDS = [f"b{v * n}d" for v in "ae" for n in (1, 2, 3)] * 20

TINY = [
    "--set",
    "model.dim=32",
    "--set",
    "model.depth=1",
    "--set",
    "model.heads=2",
    "--set",
    "train.batch_size=64",
    "--set",
    "train.log_every=20",
    "--set",
    "train.checkpoint_every=40",
    "--set",
    "train.eval_every=1000",
    "--set",
    "eval.steps=[2,6]",
    "--set",
    "eval.num_samples=40",
    "--set",
    "eval.draws=2",
    "--set",
    "sample.steps=6",
    "--no-progress",
]


def cli(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def one_line_error(code, err, needle):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
    assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def words_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "words.txt"
    path.write_text("\n".join(WORDS) + "\n")
    return path


@pytest.fixture(scope="module")
def text_run(words_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "words"
    cfg = words_file.parent / "words.yaml"
    cfg.write_text(f"data: {{text: {words_file}}}\ntrain: {{steps: 80}}\n")
    with pytest.raises(SystemExit) as exc:
        main(["train", str(cfg), "--out", str(out), *TINY])
    assert exc.value.code == 0
    return out


def test_a_text_run_writes_samples_elbo_and_a_discrete_model(text_run):
    for name in ("config.yaml", "metrics.csv", "eval.txt", "eval.csv", "quality_vs_nfe.png"):
        assert (text_run / name).is_file(), name
    samples = (text_run / "samples.txt").read_text().splitlines()
    assert len(samples) == 40 and all(set(s) <= set("bade") for s in samples)
    report = (text_run / "eval.txt").read_text()
    assert "held-out ELBO" in report and "nats/token" in report
    with open(text_run / "eval.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["nfe"]) for r in rows] == [2, 6] and all(r["step"] == "80" for r in rows)
    spec = json.loads((text_run / "model" / "config.json").read_text())
    assert spec["kind"] == "discrete" and spec["arch"]["name"] == "transformer"
    assert spec["vocab"]["chars"] == ["a", "b", "d", "e"] and spec["length"] == 6
    model = fm.load(text_run)
    assert isinstance(model, DiscreteFlowModel) and model.vocab.size == 5


def test_a_text_run_resumes_bit_identical(words_file, tmp_path):
    # Stopped after 40 of 80 steps (its checkpoint at 40) and resumed, a text run ends where
    # an uninterrupted one ends.
    cfg = load_config(
        None,
        [
            f"data.text={words_file}",
            "train.steps=80",
            "train.checkpoint_every=40",
            "model.dim=32",
            "model.depth=1",
            "model.heads=2",
            "train.batch_size=64",
        ],
    )
    quiet = {"progress": False, "final_eval": False, "echo": lambda _: None}
    Trainer(cfg, tmp_path / "ref", **quiet).run()
    Trainer(cfg, tmp_path / "run", **quiet).run()
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "step_00000080")
    shutil.rmtree(tmp_path / "run" / "model")
    Trainer(cfg, tmp_path / "run", resume=True, **quiet).run()
    for name in ("model", "ema"):
        a = load_file(str(tmp_path / "ref" / "model" / f"{name}.safetensors"))
        b = load_file(str(tmp_path / "run" / "model" / f"{name}.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sample_prefix_infill_and_temperature(text_run, tmp_path, capsys):
    out = tmp_path / "s.txt"
    code, said, _ = cli(["sample", text_run, "--out", out, "--num", "20", "--prefix", "ba"], capsys)
    assert code == 0 and "wrote 20 samples" in said
    assert all(s.startswith("ba") for s in out.read_text().splitlines())
    code, _, _ = cli(["sample", text_run, "--out", out, "--num", "20", "--infill", "b__d"], capsys)
    lines = out.read_text().splitlines()
    assert code == 0 and len(lines) == 20
    assert all(s[0] == "b" and (len(s) < 4 or s[3] == "d") for s in lines)
    code, _, _ = cli(
        ["sample", text_run, "--out", out, "--num", "5", "--temperature", "0.5"], capsys
    )
    assert code == 0 and len(out.read_text().splitlines()) == 5


def test_samples_are_reproducible_by_seed(text_run, tmp_path, capsys):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    for out in (a, b):
        assert cli(["sample", text_run, "--out", out, "--num", "30", "--seed", "3"], capsys)[0] == 0
    assert a.read_text() == b.read_text()


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--out", "{tmp}/s.npy"], "s.npy: a text model's samples are written to a .txt file"),
        (["--out", "{tmp}/s.txt", "--prefix", "Z"], "--prefix: character 'Z' at position 1"),
        (["--out", "{tmp}/s.txt", "--prefix", "b", "--infill", "b_"], "--prefix and --infill"),
        (["--out", "{tmp}/s.txt", "--prefix", "bbbbbbbbb"], "--prefix: 9 characters"),
        (["--out", "{tmp}/s.txt", "--method", "euler"], "--method: a text model"),
        (["--out", "{tmp}/s.txt", "--blank", "ab"], "--blank"),
    ],
)
def test_bad_sample_flags_give_one_line(text_run, tmp_path, capsys, flags, needle):
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    code, _, err = cli(["sample", text_run, *flags], capsys)
    one_line_error(code, err, needle)
    assert not list(tmp_path.iterdir())  # nothing written


def test_text_flags_are_refused_on_a_continuous_run(tmp_path, capsys):
    net = fm.models.MLP(dim=2, hidden=16, depth=1)
    fm.FlowModel(net, shape=(2,)).save_pretrained(tmp_path / "m")
    code, _, err = cli(
        ["sample", tmp_path / "m", "--out", tmp_path / "x.npy", "--prefix", "a"], capsys
    )
    one_line_error(code, err, "are for text runs")


def test_likelihood_scores_each_line(text_run, tmp_path, capsys):
    lines = tmp_path / "l.txt"
    lines.write_text("bad\nbaaad\nbdddd\n")
    out = tmp_path / "l.csv"
    code, said, _ = cli(["likelihood", text_run, lines, "--out", out], capsys)
    assert code == 0 and "3 lines" in said and "nats/token" in said
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["text"] for r in rows] == ["bad", "baaad", "bdddd"]
    assert [int(r["tokens"]) for r in rows] == [4, 6, 6]
    nats = {r["text"]: float(r["nats"]) for r in rows}
    assert all(v > 0 for v in nats.values())


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("bad\nbxd\n", "line 2"),
        ("bad\nbaaaaaaaad\n", "line 2: 10 characters"),
        ("bad\n", "at least 2 non-empty lines"),
    ],
)
def test_likelihood_bad_lines_are_named(text_run, tmp_path, capsys, content, needle):
    lines = tmp_path / "l.txt"
    lines.write_text(content)
    code, _, err = cli(["likelihood", text_run, lines, "--out", tmp_path / "l.csv"], capsys)
    one_line_error(code, err, needle)
    assert not (tmp_path / "l.csv").exists()


def test_eval_rescores_a_text_run(text_run, capsys):
    code, said, _ = cli(["eval", text_run, "--steps", "3", "--draws", "2", "--num", "20"], capsys)
    assert code == 0 and "held-out ELBO" in said
    assert (text_run / "eval" / "eval.txt").read_text().count("\n    3 ") == 1


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ("data: {{text: {f}}}\nmodel: {{name: mlp}}\n", "model.name: text data need"),
        ("data: {{text: {f}}}\nobjective: {{name: flow_matching}}\n", "objective.name"),
        ("model: {{name: transformer}}\n", "the transformer takes text data"),
        ("data: {{text: {f}, name: moons}}\n", "data.text: give one kind of data"),
        (
            "data: {{text: {f}}}\nobjective: {{source: uniform}}\nsample: {{corrector: 1.0}}\n",
            "sample.corrector: the corrector needs objective.source=mask",
        ),
        ("data: {{text: {f}, max_length: 2}}\n", "longer than"),
        ("data: {{text: {missing}}}\n", "missing.txt"),
    ],
)
def test_bad_text_configs_give_one_line_and_no_run(words_file, tmp_path, capsys, config, needle):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config.format(f=words_file, missing=tmp_path / "missing.txt"))
    code, _, err = cli(["train", cfg, "--out", tmp_path / "run", "--no-progress"], capsys)
    one_line_error(code, err, needle)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_names_demo_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    code, said, _ = cli(
        ["demo", "--dataset", "names", "--steps", "30", "--out", out, "--no-progress"], capsys
    )
    assert code == 0 and "names demo: 30 steps" in said
    assert len((out / "samples.txt").read_text().splitlines()) == 1000
    assert "held-out ELBO" in (out / "eval.txt").read_text()
