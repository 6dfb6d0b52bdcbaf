"""Malformed data files: CSV and NPY tables, image folders and IDX files, used for training
(``data.path``, ``data.images``/``data.labels``), for ``likelihood`` and ``sample --interpolate``
on the base run."""

from __future__ import annotations

import gzip
import io
import struct
from collections.abc import Callable

import numpy as np

from .harness import Case

TABLE_RUN = """\
data: {{path: {path}, num_holdout: 20}}
model: {{name: mlp, hidden: 16, depth: 1}}
optim: {{lr: 1.0e-3}}
train: {{steps: 2, batch_size: 16, checkpoint_every: 1000, eval_every: 1000, log_every: 1}}
eval: {{steps: [1], methods: [euler], num_samples: 20, draws: 1}}
"""

IMAGE_RUN = """\
data: {{images: {images}{labels}, image_size: 8, channels: 1}}
model: {{name: unet, channels: 8, multipliers: [1], res_blocks: 1, attention: []}}
train: {{steps: 2, batch_size: 8, checkpoint_every: 1000, eval_every: 1000, log_every: 1}}
sample: {{steps: 1, method: euler}}
eval: {{steps: [1], methods: [euler], num_samples: 8, draws: 1}}
"""


# --- tables -------------------------------------------------------------------------------


def _points(n: int = 100, d: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _csv(rows: list[list[str]], header: list[str] | None = ("x", "y")) -> bytes:
    lines = [",".join(header)] if header is not None else []
    lines += [",".join(r) for r in rows]
    return ("\n".join(lines) + "\n").encode()


def _good_rows(n: int = 100) -> list[list[str]]:
    return [[f"{v:.6f}" for v in row] for row in _points(n)]


def csv_mutations() -> dict[str, bytes]:
    rows = _good_rows()

    def with_cell(value: str, at: int = 5) -> bytes:
        r = [list(x) for x in rows]
        r[at][1] = value
        return _csv(r)

    ragged_short = [list(x) for x in rows]
    ragged_short[7] = ragged_short[7][:1]
    ragged_long = [list(x) for x in rows]
    ragged_long[7] = [*ragged_long[7], "1.0"]
    return {
        "valid": _csv(rows),
        "empty": b"",
        "newline_only": b"\n",
        "header_only": b"x,y\n",
        "no_header": _csv(rows, header=None),
        "dup_header": _csv(rows, header=["x", "x"]),
        "empty_header_cells": _csv(rows, header=["", ""]),
        "header_too_long": _csv(rows, header=["x", "y", "z"]),
        "header_too_short": _csv(rows, header=["x"]),
        "nan_cell": with_cell("nan"),
        "NaN_cell": with_cell("NaN"),
        "inf_cell": with_cell("inf"),
        "neg_inf_cell": with_cell("-inf"),
        "empty_cell": with_cell(""),
        "string_cell": with_cell("abc"),
        "underscore_cell": with_cell("1_000"),
        "hex_cell": with_cell("0x10"),
        "overflow_cell": with_cell("1e400"),
        "huge_cell": with_cell("1e300"),
        "quoted_cell": with_cell('"1.5"'),
        "space_cell": with_cell(" 1.5 "),
        "unicode_minus": with_cell("\u22121.5"),
        "ragged_short": _csv(ragged_short),
        "ragged_long": _csv(ragged_long),
        "semicolons": _csv(rows).replace(b",", b";"),
        "tabs": _csv(rows).replace(b",", b"\t"),
        "crlf": _csv(rows).replace(b"\n", b"\r\n"),
        "bom": b"\xef\xbb\xbf" + _csv(rows),
        "non_utf8": _csv(rows) + b"\xff\xfe,\xff\n",
        "nul_bytes": _csv(rows)[:50] + b"\x00" + _csv(rows)[50:],
        "one_row": _csv(rows[:1]),
        "two_rows": _csv(rows[:2]),
        "one_column": _csv([[r[0]] for r in rows], header=["x"]),
        "many_columns": _csv(
            [[f"{v:.3f}" for v in r] for r in _points(30, 300)],
            header=[f"c{i}" for i in range(300)],
        ),
        "constant_column": _csv([[r[0], "1.0"] for r in rows]),
        "all_constant": _csv([["1.0", "1.0"] for _ in rows]),
        "long_line": b"x,y\n" + b"1" * 1_000_000 + b",2\n" + _csv(rows, header=None),
        "all_strings": _csv([["a", "b"] for _ in rows]),
        "binary_garbage": np.random.default_rng(1).bytes(4000),
    }


def _npy_bytes(array: np.ndarray, **kw: object) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, **kw)
    return buf.getvalue()


def _npy_with_header(header: str, payload: bytes = b"") -> bytes:
    h = header.encode("latin1")
    pad = 64 - (10 + len(h) + 1) % 64
    h = h + b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + payload


def npy_mutations() -> dict[str, bytes]:
    x = _points()
    good = _npy_bytes(x)
    nan = x.copy()
    nan[3, 1] = np.nan
    inf = x.copy()
    inf[3, 0] = np.inf
    return {
        "valid": good,
        "float64": _npy_bytes(x.astype(np.float64)),
        "float16": _npy_bytes(x.astype(np.float16)),
        "int64": _npy_bytes((x * 10).astype(np.int64)),
        "bool": _npy_bytes(x > 0),
        "complex": _npy_bytes(x.astype(np.complex64)),
        "object": _npy_bytes(np.array([[1, "a"], [2, "b"]], dtype=object), allow_pickle=True),
        "strings": _npy_bytes(np.array([["1", "2"], ["3", "4"]])),
        "structured": _npy_bytes(np.zeros(10, dtype=[("a", "f4"), ("b", "f4")])),
        "big_endian": _npy_bytes(x.astype(">f4")),
        "fortran": _npy_bytes(np.asfortranarray(x)),
        "one_d": _npy_bytes(x[:, 0]),
        "three_d": _npy_bytes(x.reshape(10, 10, 2)),
        "zero_d": _npy_bytes(np.array(1.0)),
        "zero_rows": _npy_bytes(np.zeros((0, 2), np.float32)),
        "zero_cols": _npy_bytes(np.zeros((100, 0), np.float32)),
        "one_row": _npy_bytes(x[:1]),
        "many_columns": _npy_bytes(_points(30, 5000)),
        "nan": _npy_bytes(nan),
        "inf": _npy_bytes(inf),
        "all_nan": _npy_bytes(np.full((100, 2), np.nan, np.float32)),
        "huge_values": _npy_bytes(np.full((100, 2), 1e38, np.float32)),
        "constant": _npy_bytes(np.ones((100, 2), np.float32)),
        "empty_file": b"",
        "bad_magic": b"\x93NUMPZ" + good[6:],
        "truncated_header": good[:20],
        "truncated_data": good[: len(good) // 2],
        "extra_bytes": good + b"\x00" * 100,
        "huge_shape_claim": _npy_with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 2), }",
            x.tobytes(),
        ),
        "huge_2d_claim": _npy_with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000), }",
            x.tobytes(),
        ),
        "negative_shape": _npy_with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 2), }", x.tobytes()
        ),
        "malformed_header": _npy_with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (100,"
        ),
        "header_not_dict": _npy_with_header("[1, 2, 3]"),
        "header_bad_descr": _npy_with_header(
            "{'descr': 'zz9', 'fortran_order': False, 'shape': (100, 2), }", x.tobytes()
        ),
        "header_len_huge": b"\x93NUMPY\x01\x00\xff\xff" + b"{" * 100,
        "version_9": b"\x93NUMPY\x09\x00" + good[8:],
        "csv_text": _csv(_good_rows()),
        "gzip": gzip.compress(good),
    }


# --- images -------------------------------------------------------------------------------


def _png(size: int = 8, mode: str = "L", seed: int = 0) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    arr = rng.integers(0, 255, size=(size, size, channels), dtype=np.uint8)
    img = Image.fromarray(arr[:, :, 0] if channels == 1 else arr, mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _folder(classes: int = 2, per: int = 5, **kw: object) -> dict[str, bytes]:
    return {
        f"imgs/c{c}/{i}.png": _png(seed=c * 100 + i, **kw)  # type: ignore[arg-type]
        for c in range(classes)
        for i in range(per)
    }


def _png_size_claim(width: int, height: int) -> bytes:
    good = bytearray(_png())
    # IHDR starts at byte 16: width, height (big endian); the CRC is left stale on purpose
    good[16:24] = struct.pack(">II", width, height)
    return bytes(good)


def image_mutations() -> dict[str, dict[str, bytes]]:
    good = _folder()
    out: dict[str, dict[str, bytes]] = {"valid": good}
    out["non_image_file"] = {**good, "imgs/c0/notes.txt": b"not an image"}
    out["non_image_png_name"] = {**good, "imgs/c0/fake.png": b"not an image at all"}
    out["truncated_png"] = {**good, "imgs/c1/t.png": _png()[:40]}
    out["zero_byte_png"] = {**good, "imgs/c1/z.png": b""}
    out["empty_class_folder"] = {**good, "imgs/c2/.keep": b""}
    out["only_empty_classes"] = {"imgs/a/.keep": b"", "imgs/b/.keep": b""}
    out["no_class_folders"] = {f"imgs/{i}.png": _png(seed=i) for i in range(6)}
    out["one_class"] = _folder(classes=1)
    out["one_image"] = {"imgs/c0/0.png": _png()}
    out["rgb_images"] = _folder(mode="RGB")
    out["rgba_images"] = _folder(mode="RGBA")
    out["tiny_1px"] = {
        f"imgs/c{c}/{i}.png": _png(size=1, seed=i) for c in range(2) for i in range(3)
    }
    out["large_256px"] = {
        f"imgs/c{c}/{i}.png": _png(size=256, seed=i) for c in range(2) for i in range(2)
    }
    out["bomb_claim"] = {**good, "imgs/c0/bomb.png": _png_size_claim(100_000, 100_000)}
    out["nested_folder"] = {**good, "imgs/c0/deeper/x.png": _png()}
    out["many_classes"] = {f"imgs/k{c}/0.png": _png(seed=c) for c in range(300)}
    out["unicode_names"] = {
        f"imgs/\u00e9t\u00e9{c}/{i}.png": _png(seed=i) for c in range(2) for i in range(3)
    }
    return out


# --- IDX ----------------------------------------------------------------------------------


def _idx(array: np.ndarray, dtype_code: int = 0x08) -> bytes:
    header = struct.pack(">BBBB", 0, 0, dtype_code, array.ndim)
    header += b"".join(struct.pack(">I", s) for s in array.shape)
    return header + array.astype(">u1" if dtype_code == 0x08 else ">f4").tobytes()


def idx_mutations() -> dict[str, dict[str, bytes]]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(20, 8, 8), dtype=np.uint8)
    labels = (np.arange(20) % 3).astype(np.uint8)
    x, y = _idx(images), _idx(labels)
    huge = struct.pack(">BBBB", 0, 0, 8, 3) + struct.pack(">III", 10**9, 28, 28) + images.tobytes()
    return {
        "valid": {"x.idx": x, "y.idx": y},
        "gzip": {"x.idx.gz": gzip.compress(x), "y.idx.gz": gzip.compress(y)},
        "bad_magic": {"x.idx": b"\x12\x34" + x[2:], "y.idx": y},
        "bad_label_magic": {"x.idx": x, "y.idx": b"\xff\xff\xff\xff" + y[4:]},
        "truncated_images": {"x.idx": x[: len(x) // 2], "y.idx": y},
        "truncated_header": {"x.idx": x[:6], "y.idx": y},
        "truncated_labels": {"x.idx": x, "y.idx": y[:10]},
        "count_mismatch": {"x.idx": x, "y.idx": _idx(labels[:19])},
        "huge_count_claim": {"x.idx": huge, "y.idx": y},
        "float_dtype": {"x.idx": _idx(images.astype(np.float32), 0x0D), "y.idx": y},
        "bad_dtype_code": {"x.idx": x[:2] + b"\x42" + x[3:], "y.idx": y},
        "one_d_images": {"x.idx": _idx(images.reshape(-1)), "y.idx": y},
        "labels_are_images": {"x.idx": x, "y.idx": x},
        "zero_items": {"x.idx": _idx(images[:0]), "y.idx": _idx(labels[:0])},
        "empty_files": {"x.idx": b"", "y.idx": b""},
        "corrupt_gzip": {"x.idx.gz": gzip.compress(x)[:30], "y.idx.gz": gzip.compress(y)},
        "labels_255": {"x.idx": x, "y.idx": _idx(np.full(20, 255, np.uint8))},
        "extra_trailing": {"x.idx": x + b"\x00" * 64, "y.idx": y},
    }


# --- cases --------------------------------------------------------------------------------


def _train_table(label: str, suffix: str, content: bytes) -> Case:
    name = f"data{suffix}"
    return Case(
        f"data-train{suffix.replace('.', '_')}-{label}",
        "data",
        ["train", "{d}/run.yaml", "--out", "{d}/out", "--no-progress"],
        files={"run.yaml": TABLE_RUN.format(path=name), name: content},
        names=(name,),
    )


def _likelihood(label: str, suffix: str, content: bytes) -> Case:
    name = f"points{suffix}"
    return Case(
        f"data-likelihood{suffix.replace('.', '_')}-{label}",
        "data",
        ["likelihood", "{run}", "{d}/" + name, "--no-progress", "--batch-size", "64"],
        files={name: content},
        needs_run=True,
        names=(name,),
    )


def _interpolate(label: str, suffix: str, content: bytes) -> Case:
    name = f"ends{suffix}"
    return Case(
        f"data-interpolate{suffix.replace('.', '_')}-{label}",
        "data",
        [
            "sample",
            "{run}",
            "--out",
            "{d}/between.npy",
            "--num",
            "5",
            "--steps",
            "2",
            "--interpolate",
            "{d}/" + name,
        ],
        files={name: content},
        needs_run=True,
        names=(name,),
    )


def _images(label: str, files: dict[str, bytes], idx: bool) -> Case:
    if idx:
        x = next(k for k in files if k.startswith("x."))
        y = next(k for k in files if k.startswith("y."))
        config = IMAGE_RUN.format(images=x, labels=f", labels: {y}")
        names: tuple[str, ...] = (x, y)
    else:
        config = IMAGE_RUN.format(images="imgs", labels="")
        names = ("imgs",)
    return Case(
        f"data-{'idx' if idx else 'images'}-{label}",
        "data",
        ["train", "{d}/run.yaml", "--out", "{d}/out", "--no-progress"],
        files={"run.yaml": config, **files},
        names=names,
    )


def data_cases() -> list[Case]:
    cases: list[Case] = []
    makers: list[Callable[[str, str, bytes], Case]] = [_train_table, _likelihood, _interpolate]
    for suffix, muts in ((".csv", csv_mutations()), (".npy", npy_mutations())):
        for i, (label, content) in enumerate(muts.items()):
            for make in makers if i % 2 == 0 else makers[:2]:
                cases.append(make(label, suffix, content))
    for label, files in image_mutations().items():
        cases.append(_images(label, files, idx=False))
    for label, files in idx_mutations().items():
        cases.append(_images(label, files, idx=True))
    for label in ("missing",):
        cases.append(
            Case(
                f"data-train_csv-{label}",
                "data",
                ["train", "{d}/run.yaml", "--out", "{d}/out", "--no-progress"],
                files={"run.yaml": TABLE_RUN.format(path="nowhere.csv")},
                names=("nowhere.csv",),
            )
        )
        cases.append(
            Case(
                "data-train_csv-directory",
                "data",
                ["train", "{d}/run.yaml", "--out", "{d}/out", "--no-progress"],
                files={"run.yaml": TABLE_RUN.format(path="adir.csv"), "adir.csv/x": b""},
                names=("adir.csv",),
            )
        )
    return cases
