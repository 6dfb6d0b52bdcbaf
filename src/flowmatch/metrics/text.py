"""Sample quality of generated text: validity (SMILES), uniqueness and novelty.

The usual molecule-generation triple (as in MOSES, Polykovskiy et al. 2020, and GuacaMol,
Brown et al. 2019):

* validity: the share of samples RDKit parses into a molecule with at least one atom;
* uniqueness: the share of distinct strings among the valid samples;
* novelty: the share of the distinct valid samples that are not in the training set.

:func:`uniqueness` and :func:`novelty` work on any strings (names, words): an entry ``None``
marks an invalid sample, which both leave out. For molecules, compare canonical SMILES
(:func:`canonical_smiles` maps each sample to its canonical form or None), as
:func:`smiles_metrics` does, so that two spellings of one molecule count as one. With no valid
sample, uniqueness and novelty are 0.0.

Example:
    >>> smiles_metrics(["CCO", "OCC", "C1CC", "c1ccccc1"], training=["CCO"])  # doctest: +SKIP
    {'validity': 0.75, 'uniqueness': 0.6666666666666666, 'novelty': 0.5}
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator, Sequence

from flowmatch.errors import DataError

__all__ = ["canonical_smiles", "novelty", "smiles_metrics", "smiles_validity", "uniqueness"]


@contextlib.contextmanager
def _quiet_rdkit() -> Iterator[None]:
    """Silence RDKit's parse-error logging to stderr for the duration (and restore it)."""
    if importlib.util.find_spec("rdkit") is None:
        raise DataError("SMILES metrics need RDKit: pip install 'flowmatch[data]' (or rdkit)")
    from rdkit import RDLogger, rdBase

    if hasattr(rdBase, "BlockLogs"):  # RDKit >= 2022.09: restores the previous state
        with rdBase.BlockLogs():
            yield
        return
    RDLogger.DisableLog("rdApp.*")  # type: ignore[attr-defined]  # not in RDKit's stubs
    try:
        yield
    finally:
        RDLogger.EnableLog("rdApp.*")  # type: ignore[attr-defined]  # not in RDKit's stubs


def canonical_smiles(smiles: Sequence[str]) -> list[str | None]:
    """RDKit's canonical SMILES of each string, or None where it does not parse.

    An empty string (a model that emits the end token at once) parses to a molecule without
    atoms in RDKit; it is counted as invalid here.

    Args:
        smiles: N SMILES strings.

    Returns:
        N canonical SMILES strings or None.

    Raises:
        DataError: RDKit is not installed.
    """
    with _quiet_rdkit():
        from rdkit import Chem

        out: list[str | None] = []
        for s in smiles:
            mol = Chem.MolFromSmiles(s) if s else None
            ok = mol is not None and mol.GetNumAtoms() > 0
            out.append(Chem.MolToSmiles(mol) if ok else None)
    return out


def smiles_validity(smiles: Sequence[str]) -> float:
    """The share of SMILES strings that RDKit parses (into at least one atom), in [0, 1].

    Args:
        smiles: N >= 1 SMILES strings.

    Raises:
        ValueError: no strings.
        DataError: RDKit is not installed.
    """
    if len(smiles) == 0:
        raise ValueError("smiles: expected at least one string")
    canon = canonical_smiles(smiles)
    return sum(c is not None for c in canon) / len(canon)


def uniqueness(samples: Sequence[str | None]) -> float:
    """The share of distinct strings among the valid (not None) samples; 0.0 if none is valid.

    Args:
        samples: N strings, None marking an invalid sample.
    """
    valid = [s for s in samples if s is not None]
    return len(set(valid)) / len(valid) if valid else 0.0


def novelty(samples: Sequence[str | None], training: Sequence[str | None]) -> float:
    """The share of the distinct valid samples that are not among the training strings.

    Args:
        samples: N strings, None marking an invalid sample.
        training: the training strings (None entries are ignored).

    Returns:
        |distinct valid samples not in training| / |distinct valid samples|; 0.0 if no
        sample is valid.
    """
    distinct = {s for s in samples if s is not None}
    seen = {s for s in training if s is not None}
    return len(distinct - seen) / len(distinct) if distinct else 0.0


def smiles_metrics(samples: Sequence[str], training: Sequence[str]) -> dict[str, float]:
    """Validity, uniqueness and novelty of generated SMILES, on canonical forms.

    Args:
        samples: N >= 1 generated SMILES strings.
        training: the training SMILES (canonicalized here; unparsable ones are ignored).

    Returns:
        ``{"validity": ..., "uniqueness": ..., "novelty": ...}``, each in [0, 1].

    Raises:
        ValueError: no samples.
        DataError: RDKit is not installed.
    """
    if len(samples) == 0:
        raise ValueError("samples: expected at least one string")
    canon = canonical_smiles(samples)
    return {
        "validity": sum(c is not None for c in canon) / len(canon),
        "uniqueness": uniqueness(canon),
        "novelty": novelty(canon, canonical_smiles(training)),
    }
