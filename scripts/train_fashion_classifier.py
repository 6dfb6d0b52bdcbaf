"""Train the Fashion-MNIST classifier whose features ``flowmatch.metrics.fashion`` scores with.

Trains :class:`flowmatch.metrics.fashion.FashionClassifier` on the TRAIN split of
:func:`flowmatch.data.fashion.load_fashion_mnist` only (the test split is looked at once, at
the end, to report accuracy), deterministically: fixed seed, deterministic algorithms, one
thread. The augmentation is a random horizontal flip. Weights are written atomically as
safetensors with the seed, step count and accuracies as metadata (the train accuracy is that
of the first 10,000 training images, the test accuracy that of all 10,000 test images).

Usage:
    python scripts/train_fashion_classifier.py            # rewrites the shipped weights
    python scripts/train_fashion_classifier.py --steps 10 --out /tmp/clf.safetensors
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
from flowmatch.data.fashion import load_fashion_mnist
from flowmatch.data.images import unit_range
from flowmatch.metrics.fashion import FASHION_CLASSIFIER_FILE, FashionClassifier

DEFAULT_OUT = (
    Path(__file__).resolve().parents[1] / "src" / "flowmatch" / "metrics" / FASHION_CLASSIFIER_FILE
)
TRAIN_ACCURACY_IMAGES = 10_000
"""The training images (the first ones) whose accuracy is reported."""


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


def random_flip(x: Tensor, generator: torch.Generator) -> Tensor:
    """Mirror each image of x (B, C, H, W) left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


@torch.no_grad()
def accuracy(model: FashionClassifier, images: Tensor, labels: Tensor) -> float:
    """Fraction of images (N, 1, 28, 28), uint8 or in [-1, 1], assigned to their labels (N,)."""
    model.eval()
    right = 0
    for i in range(0, images.shape[0], 1000):
        logits = model(unit_range(images[i : i + 1000]))
        right += int((logits.argmax(dim=1) == labels[i : i + 1000]).sum())
    return right / images.shape[0]


def train(
    *, steps: int, seed: int, batch_size: int, lr: float, weight_decay: float
) -> tuple[FashionClassifier, dict[str, float]]:
    """Train from a fixed seed; returns the model and its train / test accuracy."""
    data = load_fashion_mnist(uint8=True)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = FashionClassifier()
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
        x = random_flip(unit_range(data.train[idx]), generator)
        loss = F.cross_entropy(model(x), data.train_labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    k = TRAIN_ACCURACY_IMAGES
    return model, {
        "train_accuracy": accuracy(model, data.train[:k], data.train_labels[:k]),
        "test_accuracy": accuracy(model, data.test, data.test_labels),
    }


def build_parser() -> argparse.ArgumentParser:
    """The command line; its defaults are the run that wrote the shipped weights."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000, help="optimizer steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=128)
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
        "format": "flowmatch.metrics.fashion.FashionClassifier",
        "seed": str(args.seed),
        "steps": str(args.steps),
        "batch_size": str(args.batch_size),
        "lr": repr(args.lr),
        "weight_decay": repr(args.weight_decay),
        "train_accuracy": f"{scores['train_accuracy']:.4f}",
        "train_accuracy_images": str(TRAIN_ACCURACY_IMAGES),
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
