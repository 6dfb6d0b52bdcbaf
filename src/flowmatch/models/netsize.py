"""How many parameters a built-in network would have, computed from its arguments alone.

A model file names its network's constructor arguments; a tampered or stale one can ask for
``hidden: 10**9`` or ``depth: 10**7``, which would hang or exhaust memory while the network
is built. :func:`check_size` refuses such a network before it is constructed. The counts
follow the constructors of :mod:`flowmatch.models` (exactly for the MLPs, closely for the
U-Net and the transformers); a network of another name is not estimated.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["MAX_PARAMETERS", "check_size", "estimate_parameters"]

MAX_PARAMETERS = 2**31
"""The most parameters a network of a model file may have (8 GiB as float32)."""


def _linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def _mlp(a: dict[str, Any]) -> int:
    dim, hidden, depth = a["dim"], a["hidden"], a["depth"]
    out = dim if a.get("out_dim") is None else a["out_dim"]
    ff = a.get("fourier_features", 0)
    width = dim + 2 * ff + a["time_embed_dim"] * (2 if a.get("two_times") else 1)
    hidden_layers = _linear(width, hidden) + (depth - 1) * _linear(hidden, hidden)
    return hidden_layers + _linear(hidden, out) + dim * ff


def _mixed_mlp(a: dict[str, Any]) -> int:
    vocab = list(a["vocab_sizes"])
    cont, hidden, depth = a["num_continuous"], a["hidden"], a["depth"]
    width = cont + sum(vocab) + len(vocab) + a["time_embed_dim"]
    hidden_layers = _linear(width, hidden) + (depth - 1) * _linear(hidden, hidden)
    return hidden_layers + _linear(hidden, cont + sum(vocab))


def _res_block(n_in: int, n_out: int, emb: int) -> int:
    skip = _linear(n_in, n_out) if n_in != n_out else 0
    convs = 9 * n_in * n_out + n_out + 9 * n_out * n_out + n_out
    return convs + _linear(emb, 2 * n_out) + 2 * n_in + 2 * n_out + skip


def _attention(ch: int) -> int:
    return 2 * ch + _linear(ch, 3 * ch) + _linear(ch, ch)


def _unet(a: dict[str, Any]) -> int:
    base, n, channels = a["base"], a["num_res_blocks"], a["channels"]
    widths = [base * m for m in a["multipliers"]]
    emb = 4 * base
    ted = a["time_embed_dim"] * (2 if a.get("two_times") else 1)
    total = _linear(ted, emb) + _linear(emb, emb) + 9 * channels * widths[0] + widths[0]
    if a.get("num_classes") is not None:
        total += (a["num_classes"] + 1) * emb
    attn = len(a.get("attention_resolutions") or ())
    ch = widths[0]
    for level, w in enumerate(widths):  # the downsampling path
        total += _res_block(ch, w, emb) + (n - 1) * _res_block(w, w, emb)
        ch = w
        if level < len(widths) - 1:
            total += 9 * ch * ch + ch
    total += 2 * _res_block(ch, ch, emb) + attn * _attention(max(widths)) * (2 * n + 2)
    for level in reversed(range(len(widths))):  # the upsampling path
        w, below = widths[level], widths[max(level - 1, 0)]
        total += _res_block(ch + w, w, emb) + (n - 1) * _res_block(2 * w, w, emb)
        total += _res_block(w + below, w, emb)
        ch = w
        if level > 0:
            total += 9 * ch * ch + ch
    return total + 2 * ch + 9 * ch * channels + channels


def _block(dim: int, mlp_ratio: float) -> int:
    """A transformer block: attention, MLP and adaLN modulation."""
    hidden = max(1, round(dim * mlp_ratio))
    attention = _linear(dim, 3 * dim) + _linear(dim, dim)
    return attention + _linear(dim, hidden) + _linear(hidden, dim) + _linear(dim, 6 * dim)


def _transformer(a: dict[str, Any]) -> int:
    dim, depth = a["dim"], a["depth"]
    block = _block(dim, a["mlp_ratio"])
    vocab, channels = a.get("vocab_size"), a.get("channels")
    embed = vocab * dim if vocab is not None else _linear(channels or 1, dim)
    out = a.get("out_size") or vocab or channels or 1
    total = embed + a["length"] * dim + _linear(a["time_embed_dim"], dim) + _linear(dim, dim)
    if a.get("num_classes") is not None:
        total += (a["num_classes"] + 1) * dim
    return total + depth * block + _linear(dim, 2 * dim) + _linear(dim, out)


def _dit(a: dict[str, Any]) -> int:
    dim, channels, patch = a["dim"], a["channels"], a["patch"]
    tokens = (a["size"] // patch) ** 2
    ted = a["time_embed_dim"] * (2 if a.get("two_times") else 1)
    total = _linear(channels * patch * patch, dim) + tokens * dim  # patches and positions
    total += _linear(ted, dim) + _linear(dim, dim)
    if a.get("num_classes") is not None:
        total += (a["num_classes"] + 1) * dim
    total += a["depth"] * _block(dim, a["mlp_ratio"])
    return total + _linear(dim, 2 * dim) + _linear(dim, patch * patch * channels)


_COUNTS = {
    "mlp": _mlp,
    "mixed_mlp": _mixed_mlp,
    "unet": _unet,
    "transformer": _transformer,
    "dit": _dit,
}


def estimate_parameters(arch: dict[str, Any]) -> int | None:
    """The number of parameters (and buffers) of a built-in network's ``{"name": ...,
    **kwargs}``, the constructor's defaults filling in what is not given; None for a name
    that is not built in, or arguments too malformed to count (the constructor reports
    those)."""
    from flowmatch.models import registry

    count = _COUNTS.get(arch.get("name"))  # type: ignore[arg-type]
    if count is None:
        return None
    signature = inspect.signature(registry.lookup(arch["name"]))
    defaults = {k: p.default for k, p in signature.parameters.items() if p.default is not p.empty}
    try:
        return int(count({**defaults, **arch}))
    except (KeyError, TypeError, ValueError):
        return None


def check_size(arch: dict[str, Any], *, limit: int = MAX_PARAMETERS) -> None:
    """Refuse a built-in network that would have more than ``limit`` parameters.

    Raises:
        ValueError: the estimated count and size in bytes (float32), and the limit.
    """
    count = estimate_parameters(arch)
    if count is not None and count > limit:
        gib = 4 * count / 2**30
        raise ValueError(
            f"the {arch['name']!r} network would have about {count:.3g} parameters "
            f"({gib:.3g} GiB as float32), over the limit of {limit} (2**{limit.bit_length() - 1}); "
            "refusing to build it"
        )
