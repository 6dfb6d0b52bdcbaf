"""Tables with categorical columns through flowmatch train | sample | eval."""

import csv
from pathlib import Path

import pytest
from test_text_runs import cli, one_line_error  # the shared CLI helpers of tests/train

import flowmatch as fm
from flowmatch.cli import main
from flowmatch.discrete import MixedFlowModel

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "wine_classes.csv"
TINY = [
    "--set", "model.hidden=32", "--set", "model.depth=1", "--set", "train.batch_size=64",
    "--set", "train.checkpoint_every=100", "--set", "eval.steps=[2,8]",
    "--set", "eval.draws=2", "--set", "sample.steps=8", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def table_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "wine"
    cfg = out.parent / "wine.yaml"
    cfg.write_text(f"data: {{path: {EXAMPLE}, num_holdout: 35}}\ntrain: {{steps: 200}}\n")
    with pytest.raises(SystemExit) as exc:
        main(["train", str(cfg), "--out", str(out), *TINY])
    assert exc.value.code == 0
    return out


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_categorical_column_is_detected_and_learnt_with_the_numbers(table_run):
    model = fm.load(table_run)
    assert isinstance(model, MixedFlowModel)
    assert model.num_continuous == 13 and model.vocab_sizes == [3]
    report = (table_run / "eval.txt").read_text()
    assert "floor (training rows vs held-out rows)" in report and "13 continuous" in report
    rows = read_rows(table_run / "samples.csv")
    assert len(rows) == 5000 and {r["cultivar"] for r in rows} <= {"class_0", "class_1", "class_2"}
    assert all(float(r["proline"]) == float(r["proline"]) for r in rows)  # numbers parse
    assert [int(r["nfe"]) for r in read_rows(table_run / "eval.csv")] == [2, 8]


def test_sample_writes_rows_with_category_strings(table_run, tmp_path, capsys):
    out = tmp_path / "rows.csv"
    code, said, _ = cli(["sample", table_run, "--out", out, "--num", "50", "--steps", "4"], capsys)
    assert code == 0 and "wrote 50 rows (NFE 4)" in said
    rows = read_rows(out)
    assert len(rows) == 50 and list(rows[0])[-1] == "cultivar"
    assert {r["cultivar"] for r in rows} <= {"class_0", "class_1", "class_2"}
    float(rows[0]["alcohol"])


def test_eval_rescores_a_table_run(table_run, capsys):
    code, said, _ = cli(["eval", table_run, "--steps", "4", "--draws", "2"], capsys)
    assert code == 0 and "TV" in said


@pytest.mark.parametrize(
    ("command", "needle"),
    [
        (["sample", "{run}", "--out", "{tmp}/x.npy"], "is written to a .csv file"),
        (["sample", "{run}", "--out", "{tmp}/x.csv", "--method", "rk4"], "--method"),
        (["likelihood", "{run}", str(EXAMPLE)], "has no likelihood here"),
    ],
)
def test_what_a_table_run_cannot_do_is_one_line(table_run, tmp_path, capsys, command, needle):
    argv = [c.replace("{run}", str(table_run)).replace("{tmp}", str(tmp_path)) for c in command]
    code, _, err = cli(argv, capsys)
    one_line_error(code, err, needle)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ("data: {{path: {f}}}\npath: {{schedule: cosine}}\n", "path.schedule: a table with"),
        ("data: {{path: {f}}}\nobjective: {{name: meanflow}}\n", "objective.name"),
        ("data: {{path: {f}}}\ncoupling: {{name: minibatch_ot}}\n", "coupling.name"),
        ("data: {{path: {f}, categorical: [colour]}}\n", "colour"),
        ("data: {{name: moons, categorical: [a]}}\n", "data.categorical"),
    ],
)
def test_bad_table_configs_give_one_line_and_no_run(tmp_path, capsys, config, needle):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config.format(f=EXAMPLE))
    code, _, err = cli(["train", cfg, "--out", tmp_path / "run", "--no-progress"], capsys)
    one_line_error(code, err, needle)
    assert not (tmp_path / "run").exists()


def test_declared_categorical_columns_of_numbers(tmp_path, capsys):
    # A column of integer codes is numeric unless declared categorical.
    path = tmp_path / "t.csv"
    path.write_text("x,group\n" + "".join(f"{i * 0.1:.1f},{i % 3}\n" for i in range(60)))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {{path: {path}, categorical: [group]}}\ntrain: {{steps: 20}}\n")
    code, _, _ = cli(["train", cfg, "--out", tmp_path / "run", *TINY], capsys)
    assert code == 0
    model = fm.load(tmp_path / "run")
    assert isinstance(model, MixedFlowModel) and model.layout["categories"]["group"] == [
        "0",
        "1",
        "2",
    ]
