"""Tests for the shipped text corpora (names, SMILES, pydoc) and the text sample metrics."""

from __future__ import annotations

import importlib.util

import pytest

from flowmatch.data.corpora import (
    CORPORA,
    load_corpus,
    names_corpus,
    pydoc_corpus,
    smiles_corpus,
)
from flowmatch.errors import DataError
from flowmatch.metrics.text import (
    canonical_smiles,
    novelty,
    smiles_metrics,
    smiles_validity,
    uniqueness,
)


@pytest.fixture
def names_package() -> None:
    pytest.importorskip("names", reason="the names package is not installed (extra 'data')")


@pytest.fixture
def rdkit_package() -> None:
    pytest.importorskip("rdkit", reason="RDKit is not installed (extra 'data')")


@pytest.fixture
def pydoc_package() -> None:
    pytest.importorskip("pydoc_data.topics", reason="this Python has no pydoc_data")


# --------------------------------------------------------------------------- corpora


def test_corpora_registry() -> None:
    assert sorted(CORPORA) == ["names", "pydoc", "smiles"]


@pytest.mark.usefixtures("names_package")
def test_last_names() -> None:
    names = names_corpus()
    assert len(names) == 88_799 and len(set(names)) == len(names)
    assert names[:3] == ["smith", "johnson", "williams"]
    assert all(n.isascii() and n.isalpha() and n.islower() for n in names)


@pytest.mark.usefixtures("names_package")
def test_first_and_all_names() -> None:
    first = names_corpus("first")
    assert first[:2] == ["james", "john"] and "mary" in first
    assert len(first) == len(set(first)) == 5163
    every = names_corpus("all")
    assert set(every) == set(first) | set(names_corpus("last")) and len(every) == 91_910
    with pytest.raises(ValueError, match="kind: expected one of"):
        names_corpus("middle")


@pytest.mark.usefixtures("rdkit_package")
def test_smiles_corpus() -> None:
    smiles = smiles_corpus()
    assert len(smiles) == 4900 and len(set(smiles)) == len(smiles)
    assert smiles[0] == "CC1=CC(=O)C=CC1=O"
    assert smiles_validity(smiles) == pytest.approx(4892 / 4900)
    wehi = smiles_corpus("wehi")
    assert len(wehi) == 10_000
    assert smiles_corpus("all") == smiles + wehi
    with pytest.raises(ValueError, match="source: expected one of"):
        smiles_corpus("zinc")


@pytest.mark.usefixtures("pydoc_package")
def test_pydoc_corpus() -> None:
    from pydoc_data.topics import topics

    text = pydoc_corpus()
    assert isinstance(text, str) and len(text) > 100_000
    assert text.startswith(topics[min(topics)])


@pytest.mark.usefixtures("names_package")
def test_load_corpus_names_in_lines_mode() -> None:
    data = load_corpus("names")
    assert data.name == "names" and data.length == 14  # longest surname (13) + end token
    assert data.train.shape[0] + data.test.shape[0] == 88_799
    assert data.test.shape[0] == 8880
    assert data.vocab.size == 27  # <pad> and a-z
    assert data.vocab.decode_batch(data.test[:5]) == data.test_texts[:5]
    short = load_corpus("names", max_length=7, too_long="truncate", seed=1)
    assert short.length == 8 and max(map(len, short.train_texts)) == 7


@pytest.mark.usefixtures("rdkit_package")
def test_load_corpus_smiles_drops_long_molecules() -> None:
    with pytest.warns(UserWarning, match="smiles: dropped"):
        data = load_corpus("smiles", max_length=60, too_long="drop")
    assert data.length == 61 and 4000 < data.train.shape[0] + data.test.shape[0] < 4900


@pytest.mark.usefixtures("pydoc_package")
def test_load_corpus_pydoc_in_chunks_mode() -> None:
    data = load_corpus("pydoc", chunk_length=128, holdout=0.05)
    assert data.length == 128 and data.train.shape[1] == 128
    n = len(pydoc_corpus()) // 128  # the remainder is dropped
    assert data.train.shape[0] == n - round(0.05 * n) and data.test.shape[0] <= round(0.05 * n)
    assert bool((data.train != data.vocab.pad_id).all())
    with pytest.raises(ValueError, match="max_length"):
        load_corpus("pydoc", max_length=10)


def test_load_corpus_unknown_name() -> None:
    with pytest.raises(DataError, match="unknown corpus 'wiki'; expected one of names, pydoc"):
        load_corpus("wiki")


@pytest.mark.parametrize(("call", "package"), [(names_corpus, "names"), (smiles_corpus, "rdkit")])
def test_missing_package_gives_an_install_hint(
    monkeypatch: pytest.MonkeyPatch, call: object, package: str
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a)
    )
    with pytest.raises(DataError, match=rf"the '{package}' package is not installed; pip install"):
        call()  # type: ignore[operator]


# --------------------------------------------------------------------------- metrics


def test_uniqueness_and_novelty_on_strings() -> None:
    samples = ["ann", "bob", "ann", None, "cy", None]
    assert uniqueness(samples) == 3 / 4  # ann, bob, cy among 4 valid
    assert novelty(samples, ["bob", "dee", None]) == 2 / 3  # ann and cy are new
    assert novelty(samples, []) == 1.0
    assert uniqueness([None, None]) == 0.0 and novelty([None], ["a"]) == 0.0
    assert uniqueness([]) == 0.0


@pytest.mark.usefixtures("rdkit_package")
def test_smiles_metrics_on_canonical_forms(capfd: pytest.CaptureFixture[str]) -> None:
    assert canonical_smiles(["OCC", "CCO", "C1CC", ""]) == ["CCO", "CCO", None, None]
    assert smiles_validity(["CCO", "C1CC", "", "c1ccccc1"]) == 0.5
    scores = smiles_metrics(["CCO", "OCC", "C1CC", "c1ccccc1"], training=["C(C)O", "xx"])
    assert scores == {"validity": 0.75, "uniqueness": 2 / 3, "novelty": 0.5}
    assert capfd.readouterr().err == ""  # RDKit's parse errors are silenced
    with pytest.raises(ValueError, match="at least one"):
        smiles_validity([])


def test_smiles_metrics_without_rdkit_give_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "rdkit" else real(name, *a)
    )
    with pytest.raises(
        DataError, match=r"SMILES metrics need RDKit: pip install 'flowmatch\[data\]'"
    ):
        smiles_validity(["C"])
