"""``flowmatch datasets``: every kind of data a run can train on, with the config line to use
it (the built-in sets by name, then your own files)."""

from __future__ import annotations

__all__ = ["dataset_lines"]

FILE_KINDS: tuple[tuple[str, str, str], ...] = (
    ("table (CSV)", "data: {path: my.csv}", "numeric columns, a header row; standardized"),
    ("table (NPY)", "data: {path: my.npy}", "a 2-D array of real numbers"),
    (
        "mixed table",
        "data: {path: my.csv, categorical: [colour]}",
        "numbers and categories in one model",
    ),
    (
        "image folder",
        "data: {images: folder/, image_size: 32, channels: 3}",
        "a sub-folder of PNG/JPEG files per class (model: unet)",
    ),
    (
        "IDX images",
        "data: {images: x.idx.gz, labels: y.idx.gz}",
        "MNIST-style files with labels (model: unet)",
    ),
    ("text", "data: {text: my.txt}", "one item per line, or chunks (text_mode: chunks)"),
    (
        "points on a sphere",
        "data: {manifold: sphere, path: my.csv, columns: [lat, lon]}",
        "latitude and longitude",
    ),
    (
        "angles on a torus",
        "data: {manifold: torus, path: my.csv, columns: [phi, psi]}",
        "in degrees or radians (units)",
    ),
)


def dataset_lines() -> list[str]:
    """The lines ``flowmatch datasets`` prints: name, config line and what it is."""
    from flowmatch.data.manifold_sets import DESCRIPTIONS
    from flowmatch.data.toy2d import TOY_DATASETS

    rows: list[tuple[str, str, str]] = []
    for name, spec in TOY_DATASETS.items():
        rows.append((name, f"data: {{name: {name}}}", spec.description))
    rows.append(
        ("digits", "data: {name: digits}", "scikit-learn's 8x8 digits, 10 classes (model: unet)")
    )
    rows.append(
        (
            "fashion",
            "data: {name: fashion}",
            "Fashion-MNIST 28x28, 10 classes (apt-get install dataset-fashion-mnist)",
        ),
    )
    for name, text in DESCRIPTIONS.items():
        rows.append((name, f"data: {{name: {name}}}", text))
    corpora = {
        "names": "US census surnames (the names package)",
        "smiles": "NCI molecules as SMILES (RDKit)",
        "pydoc": "Python's help texts, in chunks",
    }
    for name, text in corpora.items():
        rows.append((name, f"data: {{corpus: {name}}}", text))
    rows.extend(FILE_KINDS)
    width = max(len(r[0]) for r in rows)
    config = max(len(r[1]) for r in rows)
    lines = ["built-in sets (any toy set is also a source: data: {source: {name: moons}}):"]
    for i, (name, line, text) in enumerate(rows):
        if i == len(rows) - len(FILE_KINDS):
            lines.append("your own files:")
        lines.append(f"  {name:<{width}}  {line:<{config}}  {text}")
    return lines
