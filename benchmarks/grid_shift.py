"""Does a shifted sampling grid help? FD and class accuracy of trained Fashion-MNIST runs
sampled on ``fm.time_grid(steps, shift=s)`` for a few shifts s, at a few NFE.

SD3 and Flux sample latent flows on a grid moved towards the noise (shift > 1). This script
takes runs already trained (by default the pixel and latent U-Net runs that
``benchmarks/fashion.py`` leaves under ``runs/bench_fashion``), samples each with the midpoint
solver at every (NFE, shift), decodes latents to pixels, and scores the images with the
shipped Fashion-MNIST classifier against the 10,000 test images (FD in its features and
class accuracy; not Inception FID). Every draw uses the same noise and labels (classes in
equal shares) for every shift, so the rows of one run differ only by the grid.

    python benchmarks/grid_shift.py                      # the two default runs
    python benchmarks/grid_shift.py --runs latent=runs/fashion_latent --shifts 1,3
    python benchmarks/grid_shift.py --quick              # smoke run on an untrained net

The table is printed and written to the "## Shifted sampling grid (CPU)" section of
``benchmarks/RESULTS.md``. ``--quick`` scores an untrained U-Net against random images: its
figures mean nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import flowmatch as fm
from flowmatch.metrics.fashion import fashion_features, fashion_quality

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_overhead import machine_facts, section_intro, write_section

SECTION_HEADER = "## Shifted sampling grid (CPU)"
DEFAULT_OUT = Path(__file__).resolve().parent / "RESULTS.md"
WORK = Path(__file__).resolve().parents[1] / "runs" / "bench_fashion"
DEFAULT_RUNS = (f"pixel U-Net={WORK / 'fm_unet'}", f"latent U-Net={WORK / 'latent'}")


@dataclass
class Row:
    """One (run, NFE, shift): FD and accuracy per draw."""

    run: str
    trained_times: str
    nfe: int
    shift: float
    fd: list[float]
    accuracy: list[float]


def _numbers(text: str, kind: type, name: str) -> list[Any]:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"--{name}: expected comma-separated numbers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise SystemExit(f"--{name}: expected numbers > 0, got {text!r}")
    return values


def training_times(folder: Path) -> str:
    """The time sampler a run was trained with, from its config.yaml ("uniform", "shifted
    s=3", ...); "unknown" without one."""
    import yaml

    try:
        times = yaml.safe_load((folder / "config.yaml").read_text()).get("time") or {}
    except (OSError, AttributeError, yaml.YAMLError):
        return "unknown"
    sampler = str(times.get("sampler", "uniform"))
    return f"shifted s={times.get('shift')}" if sampler == "shifted" else sampler


def measure(
    name: str,
    trained_times: str,
    model: Any,
    reference_features: torch.Tensor,
    *,
    shifts: Sequence[float],
    nfes: Sequence[int],
    num: int,
    draws: int,
    guidance: float | None,
) -> list[Row]:
    """Rows of one model over NFE x shift (midpoint: NFE = 2 x steps)."""
    shape = tuple(model.shape)
    labels = torch.arange(num) % 10
    decode = getattr(model, "decode", None)
    rows = []
    for nfe in nfes:
        for shift in shifts:
            fds, accs = [], []
            grid = fm.time_grid(nfe // 2, shift=shift)
            for d in range(draws):
                g = torch.Generator().manual_seed(d)
                x0 = torch.randn(num, *shape, generator=g)
                x = fm.sample(
                    model, x0, times=grid, method="midpoint", cond=labels, guidance=guidance
                )
                with torch.no_grad():
                    x = decode(x) if callable(decode) else x
                q = fashion_quality(x, None, labels, reference_features=reference_features)
                fds.append(q["fd"])
                accs.append(q["accuracy"])
            rows.append(Row(name, trained_times, nfe, shift, fds, accs))
            print(f"{name} NFE {nfe} shift {shift}: FD {fds}", file=sys.stderr, flush=True)
    return rows


def floor(
    images: torch.Tensor,
    labels: torch.Tensor,
    reference_features: torch.Tensor,
    *,
    num: int,
    draws: int,
) -> Row:
    """Real training images scored like the samples: ``draws`` seeded sets of ``num``."""
    fds, accs = [], []
    for d in range(draws):
        idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(d))[:num]
        q = fashion_quality(images[idx], None, labels[idx], reference_features=reference_features)
        fds.append(q["fd"])
        accs.append(q["accuracy"])
    return Row(f"floor: {num} training images", "-", 0, 0.0, fds, accs)


def format_table(rows: Sequence[Row], floor_row: Row) -> str:
    lines = [
        "| run | trained on times | NFE | grid shift | FD (mean of draws) | FD per draw "
        "| class accuracy |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    best = {}
    for r in rows:
        key = (r.run, r.nfe)
        if key not in best or statistics.mean(r.fd) < statistics.mean(best[key].fd):
            best[key] = r
    for r in rows:
        mark = " (best)" if best[(r.run, r.nfe)] is r else ""
        per = ", ".join(f"{v:.2f}" for v in r.fd)
        lines.append(
            f"| {r.run} | {r.trained_times} | {r.nfe} | {r.shift:g} | "
            f"{statistics.mean(r.fd):.2f}{mark} | {per} | "
            f"{100 * statistics.mean(r.accuracy):.1f}% |"
        )
    per = ", ".join(f"{v:.2f}" for v in floor_row.fd)
    lines.append(
        f"| {floor_row.run} | - | - | - | {statistics.mean(floor_row.fd):.2f} | {per} | "
        f"{100 * statistics.mean(floor_row.accuracy):.1f}% |"
    )
    return "\n".join(lines)


def render_section(
    table: str, *, command: str, facts: dict[str, str], args: Any, reference: str
) -> str:
    guidance = "none" if args.guidance is None else f"{args.guidance:g}"
    return "\n".join(
        [
            *section_intro(SECTION_HEADER, command, "1 thread", facts),
            f"Midpoint solver on `fm.time_grid(NFE / 2, shift=s)`; {args.num} images per draw "
            f"(classes in equal shares, guidance {guidance}), {args.draws} draws with the same "
            "noise for every shift; FD in the shipped classifier's features against "
            f"{reference}. shift 1 is the uniform grid that `sample`, `eval` and "
            "`flowmatch sample` use; shift > 1 puts the short steps near the noise (t=0). "
            "Every shift costs the same NFE, so no timings are given.",
            "",
            table,
            "",
        ]
    )


def _quick_model() -> tuple[str, str, Any]:
    torch.manual_seed(0)
    net = fm.models.UNet(1, 28, base=8, groups=4, multipliers=(1, 2), num_classes=10)
    with torch.no_grad():  # the output layer starts at zero: give the net a field to follow
        for param in net.parameters():
            if not param.any():
                param.normal_(0.0, 0.05)
    return "untrained U-Net", "untrained", fm.FlowModel(net, shape=(1, 28, 28))


def main(argv: Sequence[str] | None = None) -> str:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--runs", nargs="+", default=list(DEFAULT_RUNS), help="NAME=RUN_FOLDER (trained runs)"
    )
    p.add_argument("--shifts", default="0.5,1,2,3", help="grid shifts (default 0.5,1,2,3)")
    p.add_argument("--nfe", default="4,8", help="even NFE of the midpoint solver (default 4,8)")
    p.add_argument("--num", type=int, default=1000, help="images per draw (default 1000)")
    p.add_argument("--draws", type=int, default=2, help="draws per row (default 2)")
    p.add_argument("--guidance", type=float, default=2.0, help="guidance scale (default 2)")
    p.add_argument("--quick", action="store_true", help="a few seconds' smoke run")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown file to update")
    args = p.parse_args(argv)
    shifts = _numbers(args.shifts, float, "shifts")
    nfes = _numbers(args.nfe, int, "nfe")
    if any(n % 2 for n in nfes):
        p.error(f"--nfe: the midpoint solver takes 2 evaluations a step, got {args.nfe!r}")
    if args.num < 10 or args.draws < 1:
        p.error("--num must be >= 10 and --draws >= 1")
    torch.set_num_threads(1)
    facts = machine_facts()
    if args.quick:
        args.num, args.draws = 20, 1
        models = [_quick_model()]
        noise = torch.Generator().manual_seed(1)
        reference = torch.rand(50, 1, 28, 28, generator=noise) * 2 - 1
        train = torch.rand(40, 1, 28, 28, generator=noise) * 2 - 1
        train_labels = torch.arange(40) % 10
        about = "50 random images (--quick: the figures mean nothing)"
    else:
        models = []
        for spec in args.runs:
            name, sep, folder = spec.partition("=")
            if not sep or not name or not folder:
                p.error(f"--runs: expected NAME=RUN_FOLDER, got {spec!r}")
            if not Path(folder).is_dir():
                p.error(f"--runs: {folder} is not a run folder (train it first)")
            models.append((name, training_times(Path(folder)), fm.load(folder)))
        from flowmatch.data.fashion import load_fashion_mnist

        data = load_fashion_mnist()
        reference, train, train_labels = data.test, data.train, data.train_labels
        about = "the 10,000 test images; the floor row scores real training images the same way"
    reference_features = fashion_features(reference)
    rows = []
    for name, trained_times, model in models:
        model.eval()
        rows += measure(
            name,
            trained_times,
            model,
            reference_features,
            shifts=shifts,
            nfes=nfes,
            num=args.num,
            draws=args.draws,
            guidance=args.guidance,
        )
    floor_row = floor(train, train_labels, reference_features, num=args.num, draws=args.draws)
    table = format_table(rows, floor_row)
    print(table)
    command = " ".join(["python benchmarks/grid_shift.py", *argv])
    section = render_section(table, command=command, facts=facts, args=args, reference=about)
    write_section(args.out, section, SECTION_HEADER)
    return table


if __name__ == "__main__":
    main()
