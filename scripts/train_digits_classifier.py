"""Train the digits classifier whose features ``flowmatch.metrics.digits`` scores images with.

Trains :class:`flowmatch.metrics.digits.DigitsClassifier` on the TRAIN split of
:func:`flowmatch.data.images.load_digits` only (the test split is looked at once, at the end,
to report accuracy), deterministically: fixed seed, deterministic algorithms, one thread. The
augmentation is a random shift of each image by up to one pixel in each direction. Weights are
written atomically as safetensors with the seed, step count and accuracies as metadata.

Usage:
    python scripts/train_digits_classifier.py            # rewrites the shipped weights
    python scripts/train_digits_classifier.py --steps 10 --out /tmp/clf.safetensors
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from flowmatch.atomic import atomic_path
from flowmatch.data.images import load_digits
from flowmatch.metrics.digits import CLASSIFIER_FILE, DigitsClassifier

DEFAULT_OUT = (
    Path(__file__).resolve().parents[1] / "src" / "flowmatch" / "metrics" / CLASSIFIER_FILE
)


@contextlib.contextmanager
def _deterministic(threads: int) -> Iterator[None]:
    """One-thread, deterministic torch for the duration of training; restored afterwards."""
    before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        torch.use_deterministic_algorithms(before[1])


def random_shift(x: Tensor, generator: torch.Generator) -> Tensor:
    """Shift each image of x (B, 1, 8, 8) by -1, 0 or 1 pixel per axis; background (-1) fills in."""
    b, _, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)
    dy, dx = torch.randint(0, 3, (2, b), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (B, H, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (B, 1, W)
    return padded[torch.arange(b)[:, None, None], 0, rows, cols].unsqueeze(1)


@torch.no_grad()
def accuracy(model: DigitsClassifier, images: Tensor, labels: Tensor) -> float:
    """Fraction of images (N, 1, 8, 8) the model assigns to their labels (N,)."""
    model.eval()
    return float((model(images).argmax(dim=1) == labels).double().mean())


def train(
    *, steps: int, seed: int, batch_size: int, lr: float, weight_decay: float
) -> tuple[DigitsClassifier, dict[str, float]]:
    """Train from a fixed seed; returns the model and its train / test accuracy."""
    data = load_digits()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = DigitsClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
        ),
    )
    n = data.train.shape[0]
    order, pos = torch.randperm(n, generator=generator), 0
    model.train()
    for _ in range(steps):
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=generator), 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        x = random_shift(data.train[idx], generator)
        loss = F.cross_entropy(model(x), data.train_labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    return model, {
        "train_accuracy": accuracy(model, data.train, data.train_labels),
        "test_accuracy": accuracy(model, data.test, data.test_labels),
    }


def build_parser() -> argparse.ArgumentParser:
    """The command line; its defaults are the run that wrote the shipped weights."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="optimizer steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak AdamW learning rate")
    parser.add_argument("--weight-decay", type=float, default=1e-2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="weights file to write")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Train, report and write the weights; returns the accuracies and the training time."""
    from safetensors.torch import save_file

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be >= 1")

    start = time.perf_counter()
    with _deterministic(threads=1):
        model, scores = train(
            steps=args.steps,
            seed=args.seed,
            batch_size=args.batch_size,
            lr=args.lr,
            weight_decay=args.weight_decay,
        )
    seconds = time.perf_counter() - start
    metadata = {
        "format": "flowmatch.metrics.digits.DigitsClassifier",
        "seed": str(args.seed),
        "steps": str(args.steps),
        "batch_size": str(args.batch_size),
        "lr": repr(args.lr),
        "weight_decay": repr(args.weight_decay),
        "train_accuracy": f"{scores['train_accuracy']:.4f}",
        "test_accuracy": f"{scores['test_accuracy']:.4f}",
    }
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    with atomic_path(args.out) as tmp:  # write a temporary file, then os.replace it over out
        save_file(state, str(tmp), metadata=metadata)
        tmp.chmod(0o644)  # safetensors recreates the file private (0600)
    params = sum(p.numel() for p in model.parameters())
    print(
        f"{params} parameters, {args.steps} steps in {seconds:.1f} s: "
        f"train accuracy {scores['train_accuracy']:.4f}, "
        f"test accuracy {scores['test_accuracy']:.4f} -> {args.out}"
    )
    return {**scores, "seconds": seconds}


if __name__ == "__main__":
    main()
