"""Text as rows of token ids for discrete flow matching: a character vocabulary and loaders.

An item (a name, a word, a SMILES string, a chunk of prose) becomes a row of ``L`` token ids.
The vocabulary's first special token, ``<pad>`` (id 0), doubles as the END token:

* ``mode="lines"``: one item per non-empty line; an item is its characters followed by pad up
  to ``L = max_length + 1``. ``max_length`` is the most characters an item may have (the
  longest line when None), so EVERY item ends with at least one pad: a model ends a text by
  generating pad, and :meth:`Vocabulary.decode` stops at the first pad (ignoring what follows).
* ``mode="chunks"``: one long text cut into consecutive non-overlapping chunks of exactly
  ``L = chunk_length`` characters (the remainder is dropped); the data holds no pad.

The items are split into train and test parts by a permutation seeded with ``seed`` (each part
keeps the input order), and the vocabulary is built from the TRAINING part only. A held-out
item with a character the training part lacks is dropped with a ``UserWarning`` that counts
them (``unknown="drop"``, the default) or refused (``unknown="error"``). Duplicate items are
kept, so equal items may land on both sides. Bad input raises :class:`DataError` with a
one-line message naming the file (or data set) and the line (or item).

Example:
    >>> data = texts_to_data(["abc", "cab", "bca", "ba"], holdout=0.25)
    >>> data.vocab.tokens, data.test_texts, data.train.tolist()
    (('<pad>', 'a', 'b', 'c'), ['abc'], [[3, 1, 2, 0], [2, 3, 1, 0], [2, 1, 0, 0]])
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from flowmatch.errors import DataError

__all__ = ["PAD", "TextData", "Vocabulary", "load_text", "texts_to_data"]

PAD = "<pad>"
"""The default pad token; the first special of a vocabulary is its pad and end token."""

_MODES = ("lines", "chunks")
_TOO_LONG = ("error", "truncate", "drop")
_UNKNOWN = ("drop", "error")


def _char(c: str) -> str:
    """A character for an error message: ``'é' (U+00E9)``."""
    return f"{c!r} (U+{ord(c):04X})"


class Vocabulary:
    """Character-level vocabulary: ids ``0..len(specials)-1`` are the specials, then one id per
    character. ``specials[0]`` is the pad token, which also marks the end of a text.

    Args:
        chars: the characters, each a single-character string, all distinct.
        specials: special tokens of two or more characters (``("<pad>",)``, or e.g.
            ``("<pad>", "<mask>")`` for masked flows); never produced by :meth:`encode`.

    Raises:
        ValueError: no specials, a special of fewer than two characters, a char that is not
            one character, or a token listed twice.
    """

    def __init__(self, chars: Sequence[str], *, specials: Sequence[str] = (PAD,)) -> None:
        specials, chars = tuple(specials), tuple(chars)
        if not specials or not all(isinstance(s, str) and len(s) > 1 for s in specials):
            raise ValueError(f"specials: expected 1+ strings of 2+ characters, got {specials!r}")
        if bad := [c for c in chars if not isinstance(c, str) or len(c) != 1]:
            raise ValueError(f"chars: expected single characters, got {bad[0]!r}")
        tokens = specials + chars
        if len(set(tokens)) != len(tokens):
            twice = next(t for t in tokens if tokens.count(t) > 1)
            raise ValueError(f"tokens: {twice!r} is listed more than once")
        self.specials: tuple[str, ...] = specials
        self.chars: tuple[str, ...] = chars
        self.tokens: tuple[str, ...] = tokens
        self._ids = {c: i + len(specials) for i, c in enumerate(chars)}

    @classmethod
    def from_texts(cls, texts: Sequence[str], *, specials: Sequence[str] = (PAD,)) -> Vocabulary:
        """The specials followed by the sorted (by code point) characters seen in ``texts``."""
        return cls(sorted(set().union(*map(set, texts))), specials=specials)

    @property
    def size(self) -> int:
        """Number of tokens (specials + characters)."""
        return len(self.tokens)

    @property
    def pad_id(self) -> int:
        """Id of the pad / end token (always 0)."""
        return 0

    def id_of(self, token: str) -> int:
        """The id of a special or a character; ``KeyError`` if it is neither."""
        if token in self.specials:
            return self.specials.index(token)
        return self._ids[token]

    def encode(self, text: str, *, unknown: str = "error") -> list[int]:
        """Character ids of ``text`` (no pad added). A character not in the vocabulary raises
        DataError naming it and its 0-based position (``unknown="error"``) or is left out
        (``unknown="skip"``)."""
        if unknown not in ("error", "skip"):
            raise ValueError(f"unknown: expected 'error' or 'skip', got {unknown!r}")
        ids = self._ids
        if unknown == "skip":
            return [ids[c] for c in text if c in ids]
        try:
            return [ids[c] for c in text]
        except KeyError as exc:
            c = exc.args[0]
            raise DataError(
                f"unknown character {_char(c)} at position {text.index(c)} of {text[:40]!r}"
            ) from None

    def decode(self, ids: Sequence[int] | Tensor, *, strip: bool = True) -> str:
        """The text of a row of ids, shape (L,) (a list or a 1-D integer tensor).

        With ``strip`` decoding stops at the first pad (the end token); otherwise every token is
        written out, pads as ``"<pad>"``. Other specials are written as their token string.
        Raises ValueError for ids not 1-D or outside ``0..size-1``.
        """
        if isinstance(ids, Tensor):
            if ids.ndim != 1:
                raise ValueError(f"ids: expected shape (L,), got {tuple(ids.shape)}")
            ids = ids.tolist()
        out = []
        for i in ids:
            if not 0 <= i < len(self.tokens):
                raise ValueError(f"ids: {i} is outside the vocabulary (0..{len(self.tokens) - 1})")
            if strip and i == 0:
                break
            out.append(self.tokens[i])
        return "".join(out)

    def encode_batch(
        self, texts: Sequence[str], length: int, *, truncate: bool = False, unknown: str = "error"
    ) -> Tensor:
        """Encode N texts into a LongTensor (N, length): each text's ids, then ``pad_id``.

        A text of exactly ``length`` characters gets no end pad (the loaders use longest + 1).
        A longer text raises DataError naming its 1-based item number, or is cut to ``length``
        with ``truncate``; ``unknown`` is as in :meth:`encode`.
        """
        if length < 1:
            raise ValueError(f"length: expected a positive integer, got {length}")
        rows = []
        for n, text in enumerate(texts):
            if len(text) > length and not truncate:
                raise DataError(
                    f"item {n + 1}: {len(text)} characters, longer than length {length}"
                )
            try:
                ids = self.encode(text, unknown=unknown)[:length]
            except DataError as exc:
                raise DataError(f"item {n + 1}: {exc}") from None
            rows.append(ids + [self.pad_id] * (length - len(ids)))
        return torch.tensor(rows, dtype=torch.long).reshape(len(texts), length)

    def decode_batch(self, ids: Tensor, *, strip: bool = True) -> list[str]:
        """Decode a LongTensor (N, L) row by row (see :meth:`decode`)."""
        if ids.ndim != 2:
            raise ValueError(f"ids: expected shape (N, L), got {tuple(ids.shape)}")
        return [self.decode(row, strip=strip) for row in ids.tolist()]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"level": "char", "specials": [...], "chars": [...]}``."""
        return {"level": "char", "specials": list(self.specials), "chars": list(self.chars)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Vocabulary:
        """Rebuild from :meth:`to_dict` output (e.g. read back from a model file); ValueError
        naming the problem for a non-mapping, wrong keys, a level other than ``"char"``, or
        specials / chars that are not valid lists of strings."""
        if not isinstance(d, Mapping):
            raise ValueError(f"vocabulary: expected a mapping, got {type(d).__name__}")
        keys = {"level", "specials", "chars"}
        if set(d) != keys:
            raise ValueError(f"vocabulary: expected keys {sorted(keys)}, got {sorted(map(str, d))}")
        if d["level"] != "char":
            raise ValueError(f"vocabulary['level']: expected 'char', got {d['level']!r}")
        for key in ("specials", "chars"):
            if not isinstance(d[key], list) or not all(isinstance(t, str) for t in d[key]):
                raise ValueError(f"vocabulary[{key!r}]: expected a list of strings")
        try:
            return cls(d["chars"], specials=d["specials"])
        except ValueError as exc:
            raise ValueError(f"vocabulary: {exc}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return self.tokens == other.tokens and self.specials == other.specials

    def __hash__(self) -> int:
        return hash((self.specials, self.chars))

    def __repr__(self) -> str:
        return f"Vocabulary(size={self.size}, specials={self.specials!r})"


@dataclass(frozen=True)
class TextData:
    """Encoded train and test items.

    Attributes:
        train: training ids, LongTensor (N, L).
        test: held-out ids, LongTensor (M, L) (M = 0 when nothing is held out).
        vocab: the vocabulary of the training items.
        length: L, the row length (lines: longest allowed item + 1; chunks: chunk_length).
        name: the file's stem or the data set's name.
        train_texts: the N training items as encoded (after lowercasing and truncation).
        test_texts: the M held-out items.
    """

    train: Tensor
    test: Tensor
    vocab: Vocabulary
    length: int
    name: str
    train_texts: list[str]
    test_texts: list[str]


def _items(
    texts: Sequence[str] | str, mode: str, chunk_length: int, lowercase: bool
) -> tuple[list[tuple[str, str]], str]:
    """(location, item) pairs, and the 'too few' phrase. A str is one text located by line
    numbers; a list is located by 1-based item numbers (chunked one text at a time)."""
    is_str = isinstance(texts, str)
    texts = [texts] if isinstance(texts, str) else list(texts)
    if lowercase:
        texts = [t.lower() for t in texts]
    items: list[tuple[str, str]] = []
    if mode == "lines":
        units = texts[0].split("\n") if is_str else texts
        for n, unit in enumerate(units, 1):
            unit = unit.removesuffix("\r") if is_str else unit
            if unit.strip():
                items.append((f"line {n}" if is_str else f"item {n}", unit))
        return items, "non-empty lines" if is_str else "non-empty items"
    for k, text in enumerate(texts, 1):
        line, seen = 1, 0
        for start in range(0, len(text) - chunk_length + 1, chunk_length):
            line, seen = line + text.count("\n", seen, start), start
            where = f"line {line}" if is_str else f"item {k}"
            items.append((where, text[start : start + chunk_length]))
    total = sum(len(t) for t in texts)
    return items, f"chunks of {chunk_length} characters ({total} characters in all)"


def texts_to_data(
    texts: Sequence[str] | str,
    *,
    name: str = "texts",
    mode: str = "lines",
    max_length: int | None = None,
    chunk_length: int = 64,
    holdout: float = 0.1,
    seed: int = 0,
    lowercase: bool = False,
    too_long: str = "error",
    unknown: str = "drop",
    specials: Sequence[str] = (PAD,),
) -> TextData:
    """Encode and split in-memory texts (see the module docstring for the layout).

    Args:
        texts: a list of items (``item K`` in messages; in chunks mode each is chunked on its
            own), or one string (split at ``"\\n"`` in lines mode; ``line K`` in messages).
            Whitespace-only items are skipped; others are kept verbatim.
        name: the data set's name, starting messages and kept as ``TextData.name``.
        mode: ``"lines"`` (items padded to L) or ``"chunks"`` (fixed-size chunks, no pad).
        max_length: lines mode: the most characters of an item (None: the longest one);
            L = max_length + 1. Must be None in chunks mode.
        chunk_length: chunks mode: L, the characters per chunk.
        holdout: share held out as test, in [0, 1); if positive, at least 1 item on each side.
        seed: seed of the split's permutation.
        lowercase: lowercase the text first.
        too_long: items longer than max_length: ``"error"``, ``"truncate"`` or ``"drop"``.
        unknown: held-out items with characters not in the training vocabulary: ``"drop"``
            (a UserWarning gives the count and the first one) or ``"error"``.
        specials: special tokens; the first is the pad/end token.

    Returns:
        :class:`TextData` with train (N, L) and test (M, L) LongTensors.

    Raises:
        DataError: fewer than 2 items, or an item error chosen above, naming the line or item.
    """
    choices = {"mode": (mode, _MODES), "too_long": (too_long, _TOO_LONG)}
    for option, (value, allowed) in {**choices, "unknown": (unknown, _UNKNOWN)}.items():
        if value not in allowed:
            raise ValueError(f"{option}: expected one of {list(allowed)}, got {value!r}")
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout: expected a share in [0, 1), got {holdout}")
    if mode == "chunks" and max_length is not None:
        raise ValueError("max_length: applies to mode='lines'; chunks use chunk_length")
    if chunk_length < 1 or (max_length is not None and max_length < 1):
        raise ValueError("chunk_length and max_length: expected positive integers")
    items, what = _items(texts, mode, chunk_length, lowercase)
    if mode == "lines":
        longest = max((len(t) for _, t in items), default=0)
        limit = longest if max_length is None else max_length
        long = [(where, t) for where, t in items if len(t) > limit]
        if long and too_long == "error":
            where, t = long[0]
            raise DataError(
                f"{name}: {where}: {len(t)} characters, longer than max_length {limit} "
                f"({len(long)} such items; pass too_long='truncate' or 'drop')"
            )
        if long and too_long == "drop":
            items = [(where, t) for where, t in items if len(t) <= limit]
            message = f"{name}: dropped {len(long)} items longer than max_length {limit}"
            warnings.warn(message, UserWarning, stacklevel=2)
        items = [(where, t[:limit]) for where, t in items]
        length = limit + 1
    else:
        length = chunk_length
    if len(items) < 2:
        raise DataError(f"{name}: {len(items)} {what}, expected at least 2 items")
    n = len(items)
    n_test = 0 if holdout == 0 else min(n - 1, max(1, round(holdout * n)))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    train = [items[i] for i in sorted(perm[n_test:])]
    test = [items[i] for i in sorted(perm[:n_test])]
    vocab = Vocabulary.from_texts([t for _, t in train], specials=specials)
    known = set(vocab.chars)
    bad = [(where, t) for where, t in test if not set(t) <= known]
    if bad:
        where, t = bad[0]
        c = next(c for c in t if c not in known)
        if unknown == "error":
            raise DataError(
                f"{name}: {where}: character {_char(c)} of a held-out item is not in the "
                f"vocabulary of the training items (pass unknown='drop' to leave such items out)"
            )
        message = f"{name}: dropped {len(bad)} of {len(test)} held-out items with characters"
        message += f" not in the training vocabulary (first: {where}, {_char(c)})"
        warnings.warn(message, UserWarning, stacklevel=2)
        test = [(where, t) for where, t in test if set(t) <= known]
    train_texts, test_texts = [t for _, t in train], [t for _, t in test]
    train_ids, test_ids = (vocab.encode_batch(t, length) for t in (train_texts, test_texts))
    return TextData(train_ids, test_ids, vocab, length, name, train_texts, test_texts)


def load_text(
    path: str | Path,
    *,
    mode: str = "lines",
    max_length: int | None = None,
    chunk_length: int = 64,
    holdout: float = 0.1,
    seed: int = 0,
    lowercase: bool = False,
    too_long: str = "error",
    unknown: str = "drop",
    specials: Sequence[str] = (PAD,),
) -> TextData:
    """Load a UTF-8 text file (a byte-order mark is ignored) as :func:`texts_to_data` does a
    string: one item per non-empty line (names, words, SMILES) or fixed-size chunks of prose.
    Lines end at ``"\\n"`` (a trailing ``"\\r"`` is removed) and are otherwise kept verbatim;
    messages name the 1-based line of the item (of the chunk's first character in chunks mode).
    The arguments are those of :func:`texts_to_data`; ``TextData.name`` is the file's stem.

    Raises:
        DataError: missing or unreadable file, empty file, not UTF-8 (naming the byte offset
            and line), fewer than 2 items, and the item errors of :func:`texts_to_data`.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    bom = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
    try:
        text = raw[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = bom + exc.start
        line = raw.count(b"\n", 0, offset) + 1
        raise DataError(f"{path}: not UTF-8 text (byte {offset}, line {line})") from None
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    data = texts_to_data(
        text, name=str(path), mode=mode, max_length=max_length, chunk_length=chunk_length,
        holdout=holdout, seed=seed, lowercase=lowercase, too_long=too_long, unknown=unknown,
        specials=specials,
    )  # fmt: skip
    return replace(data, name=path.stem)
