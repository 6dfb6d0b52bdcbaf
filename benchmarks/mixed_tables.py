"""Mixed tables: one flow over the wine data's 13 continuous columns and its class.

scikit-learn's wine data (178 wines, 13 chemical measurements, 3 cultivars; bundled with
scikit-learn, no download) is written as a CSV with the class as a column of names
(``class_0`` ...), loaded with :func:`flowmatch.data.mixed.load_mixed_table` (the class is
detected as categorical), and a :class:`~flowmatch.discrete.MixedFlowModel`
(:class:`~flowmatch.models.mixed_mlp.MixedMLP`, standardized continuous columns, linear
path + mask mixture path) is trained with ``fm.train``. Rows drawn with
:func:`~flowmatch.discrete.sample_mixed` are compared with the data: the class
frequencies, and for a few columns the per-class mean (std) and the share of the column's
variance between classes (eta^2, the correlation ratio: how strongly the class sets the
column; a model generating the columns independently of the class would score 0).

All 178 rows are training data (no held-out split: the point is whether the joint
structure is reproduced, not generalization; a model this size can memorize 178 rows).

Run ``python benchmarks/mixed_tables.py`` (about 2 minutes on one thread); ``--quick`` is a
smoke run whose figures mean nothing. Writes the "## Mixed tables (wine)" section of
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

import flowmatch as fm
from flowmatch import discrete as fd
from flowmatch.data.mixed import MixedTable, load_mixed_table, save_mixed_table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_overhead import machine_facts, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION_HEADER = "## Mixed tables (wine)"
DEFAULT_RESULTS = ROOT / "benchmarks" / "RESULTS.md"
DEFAULT_WORK = ROOT / "runs" / "bench_mixed"
COLUMNS = ("alcohol", "flavanoids", "proline")


def write_wine_csv(path: Path) -> Path:
    """scikit-learn's wine data as a CSV: 13 numeric columns, then ``class`` (names)."""
    from sklearn.datasets import load_wine

    wine = load_wine()
    names = [str(n) for n in wine.target_names]
    rows = [
        [f"{v:.6g}" for v in x] + [names[int(c)]]
        for x, c in zip(wine.data.tolist(), wine.target.tolist(), strict=True)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    save_csv = [",".join([*wine.feature_names, "class"])] + [",".join(r) for r in rows]
    path.write_text("\n".join(save_csv) + "\n")
    return path


def class_stats(values: torch.Tensor, codes: torch.Tensor, k: int) -> dict[str, list[float]]:
    """Per-class frequency, and per-class mean and std of each column; eta^2 per column."""
    values = values.double()
    out: dict[str, list[float]] = {"freq": [], "eta2": []}
    total = values.var(dim=0, correction=0)
    between = torch.zeros_like(total)
    grand = values.mean(dim=0)
    for c in range(k):
        rows = codes == c
        share = float(rows.double().mean())
        out["freq"].append(share)
        sub = values[rows] if bool(rows.any()) else torch.full_like(values[:1], float("nan"))
        out[f"mean{c}"] = sub.mean(dim=0).tolist()
        out[f"std{c}"] = sub.std(dim=0, correction=0).tolist()
        if bool(rows.any()):
            between += share * (sub.mean(dim=0) - grand) ** 2
    out["eta2"] = (between / total).tolist()
    out["mean_all"] = grand.tolist()
    out["std_all"] = values.std(dim=0, correction=0).tolist()
    return out


def nearest_distances(table: MixedTable, cont: torch.Tensor) -> tuple[float, float]:
    """Median Euclidean distance (standardized continuous columns) from each generated row to
    its nearest data row, and from each data row to its nearest other data row: a sample
    median far below the data's own says the model copies training rows."""
    mean, std = table.continuous.mean(0), table.continuous.std(0)
    data = (table.continuous - mean) / std
    made = (cont.float() - mean) / std
    own = torch.cdist(data, data) + torch.diag(torch.full((len(data),), float("inf")))
    return float(torch.cdist(made, data).min(1).values.median()), float(own.min(1).values.median())


def fmt_cell(mean: float, std: float, scale: float) -> str:
    digits = 0 if scale >= 100 else 2
    return f"{mean:.{digits}f} ({std:.{digits}f})"


def tables(table: MixedTable, data: dict, gen: dict, columns: Sequence[str], n_samples: int) -> str:
    cats = table.categories["class"]
    names = table.continuous_columns
    idx = [names.index(c) for c in columns]
    head = ["class", "data freq", "sample freq"]
    for c in columns:
        head += [f"{c}: data", f"{c}: samples"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for k, name in enumerate(cats):
        se = (data["freq"][k] * (1 - data["freq"][k]) / n_samples) ** 0.5
        row = [name, f"{data['freq'][k]:.3f}", f"{gen['freq'][k]:.3f} (SE {se:.3f})"]
        for j in idx:
            scale = abs(data["mean_all"][j])
            row += [
                fmt_cell(data[f"mean{k}"][j], data[f"std{k}"][j], scale),
                fmt_cell(gen[f"mean{k}"][j], gen[f"std{k}"][j], scale),
            ]
        lines.append("| " + " | ".join(row) + " |")
    row = ["all", "1", "1"]
    for j in idx:
        scale = abs(data["mean_all"][j])
        row += [
            fmt_cell(data["mean_all"][j], data["std_all"][j], scale),
            fmt_cell(gen["mean_all"][j], gen["std_all"][j], scale),
        ]
    lines.append("| " + " | ".join(row) + " |")
    eta = ["| column | eta^2 data | eta^2 samples |", "|---|---:|---:|"]
    for j, c in enumerate(names):
        eta.append(f"| {c} | {data['eta2'][j]:.3f} | {gen['eta2'][j]:.3f} |")
    return (
        "\n".join(lines)
        + "\n\nShare of each column's variance between classes:\n\n"
        + ("\n".join(eta))
    )


def main(argv: Sequence[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    facts = machine_facts()
    work = Path(args.work)
    table = load_mixed_table(write_wine_csv(work / "wine.csv"))
    assert table.categorical_columns == ["class"], table.kinds
    unknown = [c for c in args.columns if c not in table.continuous_columns]
    if unknown:
        raise SystemExit(f"--columns: {unknown} not among {table.continuous_columns}")
    log(f"wine: {table.continuous.shape[0]} rows, {len(table.continuous_columns)} continuous")
    torch.manual_seed(args.seed)
    model = fd.MixedFlowModel.from_table(table, hidden=args.hidden, depth=args.depth)
    x1 = model.encode(table.continuous, table.categorical)
    start = time.perf_counter()
    ema = fm.train(
        model,
        x1,
        steps=args.steps,
        batch_size=args.batch,
        lr=args.lr,
        seed=args.seed,
        progress=False,
        echo=log,
    )
    seconds = time.perf_counter() - start
    log(f"trained {args.steps} steps in {seconds:.0f} s")
    gen = torch.Generator().manual_seed(args.seed + 1)
    x = fd.sample_mixed(ema, args.samples, steps=args.nfe, generator=gen)
    cont, codes = ema.split(x)
    save_mixed_table(work / "samples.csv", cont, codes, **ema.layout)
    k = table.vocab_sizes[0]
    data = class_stats(table.continuous, table.categorical[:, 0], k)
    made = class_stats(cont, codes[:, 0], k)
    body = tables(table, data, made, args.columns, args.samples)
    to_data, data_nn = nearest_distances(table, cont)
    body += (
        f"\n\nMedian distance to the nearest data row (13 standardized columns): generated "
        f"rows {to_data:.2f}, data rows to their nearest other row {data_nn:.2f} (a "
        f"generated median below the data's own: the samples sit close to training rows, "
        f"the model has partly memorized its 178 rows)."
        if to_data < data_nn
        else f"rows {to_data:.2f}, data rows to their nearest other row {data_nn:.2f}."
    )
    print(body)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["python benchmarks/mixed_tables.py", *argv])
    section = "\n".join(
        [
            SECTION_HEADER,
            "",
            f"Rendered {stamp} on {facts['cpu']}; torch {torch.__version__}, "
            f"{args.threads} thread(s).",
            "",
            f"Reproduce: `{command}`.",
            "",
            f"scikit-learn's wine data (178 rows: 13 continuous columns and the class, "
            f"detected as categorical by `load_mixed_table`), one `MixedFlowModel` "
            f"(MixedMLP {args.hidden} wide, {args.depth} deep; standardized columns; linear "
            f"path + mask mixture path), `fm.train` {args.steps:,} steps, batch {args.batch}, "
            f"lr {args.lr:g}, seed {args.seed} ({seconds:.0f} s). {args.samples:,} rows of "
            f"`sample_mixed` with {args.nfe} steps against the data: class frequency (SE of "
            f"a sample frequency at the data's rate) and per-class mean (std) of three "
            f"columns. All rows are training rows (no held-out split).",
            "",
            body,
            "",
        ]
    )
    write_section(args.results, section, SECTION_HEADER)
    log(f"wrote {SECTION_HEADER!r} to {args.results}")
    return {"data": data, "samples": made, "seconds": seconds, "nearest": (to_data, data_nn)}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=6000, help="training steps")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--samples", type=int, default=5000, help="rows to generate")
    p.add_argument("--nfe", type=int, default=32, help="sampler steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--columns", default=",".join(COLUMNS), help="comma-separated, 1 to 4")
    p.add_argument("--work", default=str(DEFAULT_WORK))
    p.add_argument("--results", default=str(DEFAULT_RESULTS))
    p.add_argument("--quick", action="store_true", help="a smoke run; figures mean nothing")
    args = p.parse_args(argv)
    args.columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    if not 1 <= len(args.columns) <= 4:
        p.error("--columns: expected 1 to 4 column names")
    for name in ("steps", "hidden", "depth", "batch", "samples", "nfe", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.quick:
        args.steps, args.samples, args.nfe = 20, 200, 4
    return args


if __name__ == "__main__":
    main()
