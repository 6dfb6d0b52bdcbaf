"""Real text corpora that ship inside installed packages, for discrete flow matching.

* ``names``: the 1990 US census name lists that the ``names`` package ships (one upper-case
  name per line, then frequency columns), lowercased, deduplicated, in the files' order (by
  frequency). ``kind="last"``: 88,799 surnames; ``"first"``: 5,163 first names (male then
  female list); ``"all"``: both (91,910).
* ``smiles``: SMILES strings of molecules from RDKit's data folder: ``NCI/first_5K.smi`` (4,999
  lines, first column; 4,900 distinct, of which 4,892 parse with RDKit) and, with
  ``source="wehi"`` or ``"all"``, the 10,000 molecules of ``Pains/test_data/wehi_mols.csv``
  (all parse). Deduplicated, file order; unparsable SMILES are kept (see
  :func:`flowmatch.metrics.text.smiles_validity` to count them).
* ``pydoc``: the standard library's ``pydoc_data.topics`` help texts joined in sorted key
  order: one string of about 465,000 characters (the exact size depends on the Python
  version), cut into chunks by :func:`load_corpus`.

Install the packages with ``pip install 'flowmatch[data]'``; a missing one raises
:class:`DataError` saying so.

Example:
    >>> data = load_corpus("names", max_length=15, too_long="drop")  # doctest: +SKIP
    >>> data.vocab.size, data.length                                  # doctest: +SKIP
    (27, 16)
"""

from __future__ import annotations

import csv
import importlib.util
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from flowmatch.data.text import PAD, TextData, texts_to_data
from flowmatch.errors import DataError

__all__ = [
    "CORPORA",
    "load_corpus",
    "names_corpus",
    "pydoc_corpus",
    "smiles_corpus",
]

_HINT = "pip install 'flowmatch[data]'"
_NAMES_FILES = {
    "last": ("dist.all.last",),
    "first": ("dist.male.first", "dist.female.first"),
    "all": ("dist.male.first", "dist.female.first", "dist.all.last"),
}
_SMILES_FILES = {
    "nci": ("NCI/first_5K.smi",),
    "wehi": ("Pains/test_data/wehi_mols.csv",),
    "all": ("NCI/first_5K.smi", "Pains/test_data/wehi_mols.csv"),
}


def _package_dir(package: str, corpus: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"{corpus} corpus: the {package!r} package is not installed; {_HINT} "
            f"(or pip install {package})"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path}: no such file (the installed package lacks its data files)")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read: {' '.join(str(exc).split())}") from exc


def _unique(items: Iterable[str]) -> list[str]:
    """Items without repeats, in first-seen order."""
    return list(dict.fromkeys(items))


def names_corpus(kind: str = "last") -> list[str]:
    """Census names from the ``names`` package, lowercased (the files are upper case).

    Args:
        kind: ``"last"`` (surnames), ``"first"`` (male then female first names) or ``"all"``
            (first names, then surnames).

    Returns:
        Distinct names (letters a-z only), in the files' order (most frequent first).

    Raises:
        ValueError: an unknown kind.
        DataError: the ``names`` package is missing, or a file in it is malformed.
    """
    if kind not in _NAMES_FILES:
        raise ValueError(f"kind: expected one of {sorted(_NAMES_FILES)}, got {kind!r}")
    folder = _package_dir("names", "names")
    names = []
    for file in _NAMES_FILES[kind]:
        path = folder / file
        for n, line in enumerate(_read_lines(path), 1):
            fields = line.split()
            if not fields:
                continue
            if not (fields[0].isascii() and fields[0].isalpha()):
                raise DataError(f"{path}: line {n}: expected a name, got {fields[0]!r}")
            names.append(fields[0].lower())
    return _unique(names)


def smiles_corpus(source: str = "nci") -> list[str]:
    """SMILES strings of molecules from RDKit's data folder (``RDConfig.RDDataDir``).

    Args:
        source: ``"nci"`` (``NCI/first_5K.smi``, first column), ``"wehi"``
            (``Pains/test_data/wehi_mols.csv``, first column) or ``"all"`` (NCI, then WEHI).

    Returns:
        Distinct SMILES in file order, parsable or not (``"nci"``: 4,900, 8 of them unparsable).

    Raises:
        ValueError: an unknown source.
        DataError: RDKit is missing, or a data file is missing or malformed.
    """
    if source not in _SMILES_FILES:
        raise ValueError(f"source: expected one of {sorted(_SMILES_FILES)}, got {source!r}")
    _package_dir("rdkit", "smiles")
    from rdkit import RDConfig

    smiles = []
    for file in _SMILES_FILES[source]:
        path = Path(RDConfig.RDDataDir) / file
        lines = _read_lines(path)
        rows = csv.reader(lines) if path.suffix == ".csv" else (line.split() for line in lines)
        for n, fields in enumerate(rows, 1):
            if not fields:
                continue
            if not fields[0] or any(c.isspace() for c in fields[0]):
                raise DataError(f"{path}: line {n}: expected a SMILES string, got {fields[0]!r}")
            smiles.append(fields[0])
    return _unique(smiles)


def pydoc_corpus() -> str:
    """The help texts of ``pydoc_data.topics.topics`` concatenated in sorted key order.

    Returns:
        One string (about 465,000 characters, 103 distinct characters, on Python 3.11).

    Raises:
        DataError: this Python lacks ``pydoc_data`` (some distributions strip it).
    """
    try:
        from pydoc_data.topics import topics
    except ImportError as exc:
        raise DataError(
            "pydoc corpus: this Python has no pydoc_data.topics module "
            "(install the full standard library)"
        ) from exc
    return "".join(topics[key] for key in sorted(topics))


CORPORA: dict[str, Callable[[], list[str] | str]] = {
    "names": names_corpus,
    "smiles": smiles_corpus,
    "pydoc": pydoc_corpus,
}
"""Each corpus by name: a function returning its items (or, for ``pydoc``, one long text)."""

_CHUNKED = ("pydoc",)  # corpora cut into chunks; the others hold one item per line


def load_corpus(
    name: str,
    *,
    holdout: float = 0.1,
    seed: int = 0,
    max_length: int | None = None,
    chunk_length: int = 64,
    too_long: str = "error",
    unknown: str = "drop",
    specials: Sequence[str] = (PAD,),
) -> TextData:
    """A corpus of :data:`CORPORA`, encoded and split by :func:`~flowmatch.data.text.texts_to_data`.

    ``names`` (surnames) and ``smiles`` (NCI) are in lines mode (one item per name or
    molecule, padded with the end token to ``max_length + 1``; None: the longest, 13 and 291
    characters); ``pydoc`` is in chunks mode (``chunk_length`` characters, no pad).

    Args:
        name: ``"names"``, ``"smiles"`` or ``"pydoc"``.
        holdout: share held out as test.
        seed: seed of the split.
        max_length: lines mode: the most characters of an item (must be None for pydoc).
        chunk_length: chunks mode: characters per chunk.
        too_long: items longer than max_length: ``"error"``, ``"truncate"`` or ``"drop"``.
        unknown: held-out items with characters the training part lacks: ``"drop"``
            (with a UserWarning) or ``"error"``.
        specials: special tokens; the first is the pad/end token.

    Returns:
        :class:`~flowmatch.data.text.TextData` named after the corpus.

    Raises:
        DataError: an unknown corpus name, a missing package, or the errors of
            :func:`~flowmatch.data.text.texts_to_data`.
    """
    if name not in CORPORA:
        raise DataError(f"unknown corpus {name!r}; expected one of {', '.join(sorted(CORPORA))}")
    mode = "chunks" if name in _CHUNKED else "lines"
    return texts_to_data(
        CORPORA[name](), name=name, mode=mode, max_length=max_length, chunk_length=chunk_length,
        holdout=holdout, seed=seed, too_long=too_long, unknown=unknown, specials=specials,
    )  # fmt: skip
