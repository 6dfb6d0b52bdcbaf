"""Mutations of every shipped config (``configs/*.yaml``), each trained with ``flowmatch train``.

Every case writes one mutated YAML file and trains it for a few steps (``TINY`` and a small
model, given as ``--set`` after the file, except for the key the mutation is about).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .harness import TINY, Case

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"

#: --set overrides that shrink each kind of model.
SHRINK = {
    "mlp": ("model.hidden=16", "model.depth=1"),
    "unet": ("model.channels=8",),
    "transformer": ("model.dim=16", "model.depth=1", "model.heads=2"),
}

BOMB = "__FUZZ_VALUE__"

#: Keys whose default makes a case slow (20000 steps, W2 on 5000 points, a 100000-point
#: pool): deleting one of them keeps its TINY override (the deletion is then moot).
SIZE_KEYS = ("train.steps", "eval.num_samples", "data.num_train", "data.num_holdout")


def billion_laughs(levels: int = 9, width: int = 10) -> str:
    """A flow-style YAML list whose last element expands to ``width ** levels`` items."""
    parts = [f"&a0 [{', '.join(['1'] * width)}]"]
    for i in range(1, levels + 1):
        parts.append(f"&a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "[" + ", ".join(parts) + "]"


def billion_laughs_map(levels: int = 9, width: int = 10) -> str:
    parts = ["&b0 {x: 1}"]
    for i in range(1, levels + 1):
        parts.append(f"&b{i} [{', '.join([f'*b{i - 1}'] * width)}]")
    return "{k: [" + ", ".join(parts) + "]}"


def deep_list(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def deep_map(depth: int) -> str:
    return "{a: " * depth + "1" + "}" * depth


def load_shipped() -> dict[str, dict[str, Any]]:
    """name -> the parsed config, with a relative ``data.path`` made absolute; configs that
    need another run first (a latent run's ``data.latent`` autoencoder) are left out, since
    they stop at that missing run whatever the mutation."""
    out = {}
    for path in sorted(CONFIGS.glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        data = cfg.get("data") or {}
        if data.get("latent") is not None:
            continue
        if isinstance(data.get("path"), str):
            data["path"] = str((path.parent / data["path"]).resolve())
        out[path.stem] = cfg
    return out


def leaves(cfg: dict[str, Any]) -> list[tuple[str, Any]]:
    """(dotted key, value) of every section and every key in a section."""
    found = []
    for section, body in cfg.items():
        found.append((section, body))
        if isinstance(body, dict):
            for key, value in body.items():
                found.append((f"{section}.{key}", value))
    return found


def dump(cfg: dict[str, Any], raw: dict[str, str] | None = None) -> str:
    """YAML text of ``cfg``; each value equal to ``__FUZZ_VALUE__<i>`` is replaced verbatim by
    ``raw[...]`` (bombs, deep nesting: text that no dumper would write)."""
    text = yaml.safe_dump(cfg, default_flow_style=None, sort_keys=False, width=1 << 30)
    for marker, value in (raw or {}).items():
        text = text.replace(marker, value)
    return text


def overrides_for(cfg: dict[str, Any], key: str | None, deleted: bool = False) -> list[str]:
    """TINY and the model shrink, minus those on (or under) the mutated ``key``. A deleted key
    keeps the override of its own only for the ``SIZE_KEYS`` (a deleted train.steps would
    otherwise train 20000 steps)."""
    model = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    name = model.get("name", "transformer" if "corpus" in cfg.get("data", {}) else "mlp")
    sets = list(TINY) + list(SHRINK.get(name, ()))
    keep = []
    for s in sets:
        k = s.split("=", 1)[0]
        if key is not None and (k == key or k.startswith(key + ".") or key.startswith(k + ".")):
            if deleted and (k != key or k in SIZE_KEYS):
                keep.append(s)
            continue
        keep.append(s)
    return keep


def _set_at(cfg: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    import copy

    cfg = copy.deepcopy(cfg)
    parts = key.split(".")
    node = cfg
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = value
    return cfg


def _delete_at(cfg: dict[str, Any], key: str) -> dict[str, Any]:
    import copy

    cfg = copy.deepcopy(cfg)
    parts = key.split(".")
    node = cfg
    for p in parts[:-1]:
        node = node[p]
    del node[parts[-1]]
    return cfg


def value_mutations(key: str, value: Any) -> list[tuple[str, Any, str | None]]:
    """(label, new value, raw YAML text or None) for one key."""
    muts: list[tuple[str, Any, str | None]] = [
        ("str", "fuzz", None),
        ("list", [1, "two", 3.0], None),
        ("map", {"fuzz": 1}, None),
        ("bool", True, None),
        ("null", None, None),
        ("longstr", "x" * 100_000, None),
        ("bomb", None, billion_laughs()),
        ("bombmap", None, billion_laughs_map()),
        ("deeplist", None, deep_list(50_000)),
        ("deepmap", None, deep_map(5_000)),
        ("emptylist", [], None),
        ("unicode", "\u00e9\u4e2d\U0001f600\u202e", None),
    ]
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if numeric or isinstance(value, list):
        muts += [
            ("big1e9", 10**9, None),
            ("big1e30", 10**30, None),
            ("big2p63", 2**63, None),
            ("nan", math.nan, None),
            ("inf", math.inf, None),
            ("neginf", -math.inf, None),
            ("neg", -1, None),
            ("zero", 0, None),
            ("tiny", 1e-300, None),
            ("huge", 1e300, None),
            ("float", 2.5, None),
            ("intstr", "5", None),
            ("floatint", 5.0, None),
            ("underscore", None, "1_000"),
            ("hex", None, "0x10"),
        ]
    if isinstance(value, list):
        muts += [
            ("list_huge", [10**9], None),
            ("list_neg", [-1, 2], None),
            ("list_nan", [math.nan], None),
            ("list_nested", [[1, 2], [3]], None),
            ("csv_string", "1,2,x", None),
        ]
    if key == "train.steps":  # a legitimately long run is no hang of the CLI
        muts = [m for m in muts if m[0] not in ("big1e9",)]
    if key == "train.device":
        muts += [("cuda", "cuda", None), ("mps", "mps", None)]
    if key == "coupling.method":
        muts += [("sinkhorn_tiny_reg", "sinkhorn", None)]
    return muts


def text_mutations(text: str) -> list[tuple[str, bytes]]:
    """Whole-file mutations: invalid YAML, encodings, empties, duplicates, bombs."""
    first_section = text.splitlines()[0].split(":")[0] if text else "data"
    return [
        ("empty", b""),
        ("comment_only", b"# nothing here\n"),
        ("null_doc", b"null\n"),
        ("list_doc", b"- 1\n- 2\n"),
        ("scalar_doc", b"42\n"),
        ("two_docs", (text + "\n---\n" + text).encode()),
        ("non_utf8", b"\xff\xfe\x00" + text.encode()),
        ("latin1_value", text.encode() + b"extra: caf\xe9\n"),
        ("nul_bytes", text.encode() + b"\x00\x00"),
        ("bom", b"\xef\xbb\xbf" + text.encode()),
        ("unclosed_flow", text.encode() + b"zzz: {a: [1, 2\n"),
        ("bad_indent", text.encode() + b"train:\n  steps: 2\n    bad: 3\n"),
        ("tab_indent", text.encode() + b"optim:\n\tlr: 1\n"),
        ("unclosed_quote", text.encode() + b'sample: {method: "midpoint}\n'),
        ("dup_section", (text + f"\n{first_section}: {{}}\n").encode()),
        ("dup_key", text.encode() + b"extra: {a: 1, a: 2}\n"),
        ("unknown_top", text.encode() + b"fuzz_section: {a: 1}\n"),
        ("python_tag", text.encode() + b"x: !!python/object/apply:os.system ['true']\n"),
        ("binary_tag", text.encode() + b"x: !!binary aGVsbG8=\n"),
        ("set_tag", text.encode() + b"x: !!set {a, b}\n"),
        ("top_bomb", (text + "laughs: " + billion_laughs() + "\n").encode()),
        ("top_deep", (text + "deep: " + deep_list(100_000) + "\n").encode()),
        ("anchor_undefined", text.encode() + b"x: *nowhere\n"),
        ("merge_key", text.encode() + b"base: &b {steps: 2}\nother: {<<: *b}\n"),
        ("long_line", text.encode() + b"k" * 2_000_000 + b": 1\n"),
        ("crlf", text.replace("\n", "\r\n").encode()),
    ]


def config_cases(rng: np.random.Generator, per_config: int, whole_file: int) -> list[Case]:
    """``per_config`` key mutations and ``whole_file`` file mutations of each shipped config,
    chosen with ``rng``, plus each config as shipped (it must train)."""
    cases: list[Case] = []
    for name, cfg in load_shipped().items():
        text = dump(cfg)
        base = ["train", "{d}/config.yaml", "--out", "{d}/out", "--no-progress"]
        base_sets = [a for s in overrides_for(cfg, None) for a in ("--set", s)]
        cases.append(
            Case(
                f"config-{name}-asis",
                "configs",
                base + base_sets,
                files={"config.yaml": text},
            )
        )
        space: list[tuple[str, Callable[[], dict[str, Any]], dict[str, str], str, bool]] = []
        for key, value in leaves(cfg):
            space.append((f"del-{key}", partial(_delete_at, cfg, key), {}, key, True))
            for label, new, raw in value_mutations(key, value):
                marker = f"{BOMB}{len(space)}"
                if raw is not None:
                    mutated = partial(_set_at, cfg, key, marker)
                    space.append((f"{label}-{key}", mutated, {marker: raw}, key, False))
                else:
                    space.append(
                        (f"{label}-{key}", partial(_set_at, cfg, key, new), {}, key, False)
                    )
            if isinstance(value, dict):
                space.append(
                    (
                        f"unknown-{key}.fuzz_key",
                        partial(_set_at, cfg, f"{key}.fuzz_key", 1),
                        {},
                        key,
                        False,
                    )
                )
        if "coupling" in cfg:
            for reg in (1e-300, 0.0, 1e300):
                c = {"name": "minibatch_ot", "method": "sinkhorn", "reg": reg}
                space.append(
                    (
                        f"sinkhorn_reg{reg:g}-coupling",
                        partial(_set_at, cfg, "coupling", c),
                        {},
                        "coupling",
                        False,
                    )
                )
        picks = rng.choice(len(space), size=min(per_config, len(space)), replace=False)
        for i in sorted(picks):
            label, mutated, raw, key, deleted = space[i]
            sets = overrides_for(cfg, key, deleted)
            content = dump(mutated(), raw)
            last = key.split(".")[-1]
            cases.append(
                Case(
                    f"config-{name}-{label}",
                    "configs",
                    base + [a for s in sets for a in ("--set", s)],
                    files={"config.yaml": content},
                    names=()
                    if deleted or label.startswith("unknown")
                    else (last, key, "config.yaml"),
                )
            )
        muts = text_mutations(text)
        picks = rng.choice(len(muts), size=min(whole_file, len(muts)), replace=False)
        for i in sorted(picks):
            label, content = muts[i]
            cases.append(
                Case(
                    f"config-{name}-file-{label}",
                    "configs",
                    base + base_sets,
                    files={"config.yaml": content},
                )
            )
    return cases
