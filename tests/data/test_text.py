"""Tests for the character vocabulary and the text loaders (lines and chunks modes)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from flowmatch.data.text import PAD, TextData, Vocabulary, load_text, texts_to_data
from flowmatch.errors import DataError

# Every character is in several items, so any two held out use only training characters.
NAMES = ["ab", "bob", "abba", "nab", "banana", "bo", "noon", "boa", "oban", "nona"]


def _write(tmp_path: Path, text: str, name: str = "items.txt") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _seed_holding_out(index: int, n: int) -> int:
    """A seed whose split of n items, holding out one (holdout * n rounds to 1), holds out
    item ``index`` (0-based): the test part is the first entry of the seeded permutation."""
    for seed in range(1000):
        if int(torch.randperm(n, generator=torch.Generator().manual_seed(seed))[0]) == index:
            return seed
    raise AssertionError("no such seed")


def _error(call: Callable[..., object], *args: object, **kwargs: object) -> str:
    """Run a call that must fail; return the DataError message after checking it is one line."""
    with pytest.raises(DataError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- vocabulary


def test_from_texts_puts_specials_first_then_sorted_characters() -> None:
    vocab = Vocabulary.from_texts(["cab", "b a"])
    assert vocab.tokens == (PAD, " ", "a", "b", "c")
    assert vocab.size == 5
    assert vocab.pad_id == 0
    assert vocab.id_of(PAD) == 0 and vocab.id_of("c") == 4


def test_encode_decode_round_trip() -> None:
    vocab = Vocabulary.from_texts(NAMES)
    for name in NAMES:
        ids = vocab.encode(name)
        assert len(ids) == len(name) and 0 not in ids
        assert vocab.decode(ids) == name
        assert vocab.decode(torch.tensor(ids)) == name


def test_decode_stops_at_the_first_pad_unless_strip_is_off() -> None:
    vocab = Vocabulary("ab")  # <pad>=0, a=1, b=2
    assert vocab.decode([1, 2, 0, 2, 0]) == "ab"
    assert vocab.decode([0, 1]) == ""
    assert vocab.decode([1, 2, 0, 2, 0], strip=False) == "ab<pad>b<pad>"


def test_other_specials_are_written_out() -> None:
    vocab = Vocabulary("ab", specials=(PAD, "<mask>"))
    assert vocab.id_of("<mask>") == 1 and vocab.encode("ba") == [3, 2]
    assert vocab.decode([2, 1, 3, 0, 1]) == "a<mask>b"


def test_decode_refuses_bad_ids() -> None:
    vocab = Vocabulary("ab")
    with pytest.raises(ValueError, match=r"ids: 3 is outside the vocabulary \(0\.\.2\)"):
        vocab.decode([1, 3])
    with pytest.raises(ValueError, match=r"expected shape \(L,\)"):
        vocab.decode(torch.zeros(2, 2, dtype=torch.long))


def test_encode_unknown_character() -> None:
    vocab = Vocabulary("ab")
    message = _error(vocab.encode, "abé")
    assert message == "unknown character 'é' (U+00E9) at position 2 of 'abé'"
    assert vocab.encode("aéb", unknown="skip") == [1, 2]
    with pytest.raises(ValueError, match="unknown"):
        vocab.encode("a", unknown="replace")


def test_encode_batch_pads_and_decode_batch_inverts() -> None:
    vocab = Vocabulary.from_texts(NAMES)
    batch = vocab.encode_batch(["bob", "abba", ""], 6)
    assert batch.dtype == torch.long and batch.shape == (3, 6)
    assert batch[0].tolist() == [*vocab.encode("bob"), 0, 0, 0]
    assert batch[2].tolist() == [0] * 6
    assert vocab.decode_batch(batch) == ["bob", "abba", ""]
    assert vocab.encode_batch([], 4).shape == (0, 4)
    with pytest.raises(ValueError, match=r"expected shape \(N, L\)"):
        vocab.decode_batch(batch[0])


def test_encode_batch_too_long_names_the_item_or_truncates() -> None:
    vocab = Vocabulary.from_texts(NAMES)
    message = _error(vocab.encode_batch, ["bob", "banana"], 4)
    assert message == "item 2: 6 characters, longer than length 4"
    batch = vocab.encode_batch(["bob", "banana"], 4, truncate=True)
    assert vocab.decode_batch(batch) == ["bob", "bana"]
    assert _error(vocab.encode_batch, ["bob", "b!"], 4).startswith("item 2: unknown character '!'")


def test_to_dict_json_round_trip_and_equality() -> None:
    vocab = Vocabulary.from_texts(["héllo wörld"], specials=(PAD, "<mask>"))
    d = json.loads(json.dumps(vocab.to_dict()))
    assert d["level"] == "char" and d["specials"] == [PAD, "<mask>"]
    back = Vocabulary.from_dict(d)
    assert back == vocab and hash(back) == hash(vocab)
    assert back != Vocabulary.from_texts(["héllo wörld"])
    assert back != Vocabulary(vocab.chars[::-1], specials=vocab.specials)
    assert (vocab == "x") is False


@pytest.mark.parametrize(
    ("d", "match"),
    [
        ([PAD], "expected a mapping"),
        ({"specials": [PAD], "chars": ["a"]}, "expected keys"),
        ({"level": "char", "specials": [PAD], "chars": ["a"], "x": 1}, "expected keys"),
        ({"level": "word", "specials": [PAD], "chars": ["a"]}, r"vocabulary\['level'\]"),
        ({"level": "char", "specials": PAD, "chars": ["a"]}, r"vocabulary\['specials'\]"),
        ({"level": "char", "specials": [PAD], "chars": ["a", 1]}, r"vocabulary\['chars'\]"),
        ({"level": "char", "specials": [], "chars": ["a"]}, "specials: expected 1"),
        ({"level": "char", "specials": ["#"], "chars": ["a"]}, "2\\+ characters"),
        ({"level": "char", "specials": [PAD], "chars": ["ab"]}, "single characters"),
        ({"level": "char", "specials": [PAD], "chars": ["a", "a"]}, "'a' is listed more"),
        ({"level": "char", "specials": [PAD, PAD], "chars": []}, "listed more than once"),
    ],
)
def test_from_dict_refuses_bad_dicts(d: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Vocabulary.from_dict(d)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- lines mode


def test_lines_mode_pads_every_item_with_an_end_token() -> None:
    data = texts_to_data(NAMES, holdout=0.2)
    assert isinstance(data, TextData) and data.name == "texts"
    assert data.length == 7  # longest ("banana") + 1
    assert data.train.shape == (8, 7) and data.test.shape == (2, 7)
    assert data.train.dtype == torch.long
    both = torch.cat([data.train, data.test])
    assert bool((both[:, -1] == data.vocab.pad_id).all())
    assert data.vocab.decode_batch(data.train) == data.train_texts
    assert data.vocab.decode_batch(data.test) == data.test_texts
    assert sorted(data.train_texts + data.test_texts) == sorted(NAMES)


def test_max_length_sets_the_row_length_and_too_long_items() -> None:
    assert texts_to_data(NAMES, max_length=9, holdout=0).length == 10
    message = _error(texts_to_data, NAMES, max_length=3)
    assert message == (
        "texts: item 3: 4 characters, longer than max_length 3 "
        "(5 such items; pass too_long='truncate' or 'drop')"
    )
    cut = texts_to_data(NAMES, max_length=3, too_long="truncate", holdout=0)
    assert cut.length == 4 and cut.train_texts[2] == "abb" and cut.train_texts[4] == "ban"
    with pytest.warns(UserWarning, match="texts: dropped 5 items longer than max_length 3"):
        kept = texts_to_data(NAMES, max_length=3, too_long="drop", holdout=0)
    assert sorted(kept.train_texts) == sorted(n for n in NAMES if len(n) <= 3)


def test_blank_items_are_skipped_and_lowercase_applies() -> None:
    data = texts_to_data(["Ann", " ", "", "BOB"], lowercase=True, holdout=0)
    assert data.train_texts == ["ann", "bob"]
    assert data.test.shape == (0, 4)


# --------------------------------------------------------------------------- chunks mode


def test_chunks_mode_cuts_consecutive_chunks_without_pad() -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(103))
    data = texts_to_data(text, mode="chunks", chunk_length=10, holdout=0.2)
    assert data.length == 10
    assert data.train.shape == (8, 10) and data.test.shape == (2, 10)
    chunks = sorted(data.train_texts + data.test_texts)
    assert chunks == sorted(text[i : i + 10] for i in range(0, 100, 10))  # the 3 left are dropped
    assert bool((data.train != data.vocab.pad_id).all())


def test_chunks_of_a_list_are_cut_per_item() -> None:
    data = texts_to_data(["abcde", "fghij"], mode="chunks", chunk_length=2, holdout=0)
    assert data.train_texts == ["ab", "cd", "fg", "hi"]


def test_chunks_mode_needs_two_chunks_and_no_max_length() -> None:
    message = _error(texts_to_data, "abcdefg", mode="chunks", chunk_length=4)
    assert message == (
        "texts: 1 chunks of 4 characters (7 characters in all), expected at least 2 items"
    )
    with pytest.raises(ValueError, match="max_length"):
        texts_to_data("abcdefgh", mode="chunks", max_length=4)


# --------------------------------------------------------------------------- split


def test_split_is_deterministic_disjoint_and_seeded() -> None:
    items = [f"w{i:03d}" for i in range(200)]
    a = texts_to_data(items, holdout=0.1, seed=3)
    b = texts_to_data(items, holdout=0.1, seed=3)
    c = texts_to_data(items, holdout=0.1, seed=4)
    assert a.test_texts == b.test_texts and torch.equal(a.train, b.train)
    assert a.test_texts != c.test_texts
    assert len(a.test_texts) == 20 and not set(a.test_texts) & set(a.train_texts)
    assert sorted(a.train_texts + a.test_texts) == items
    assert a.train_texts == sorted(a.train_texts)  # each part keeps the input order


def test_holdout_keeps_one_item_on_each_side() -> None:
    assert len(texts_to_data(["ab", "ba", "aa"], holdout=0.01).test_texts) == 1
    assert len(texts_to_data(["ab", "ba", "aa"], holdout=0.99).train_texts) == 1
    with pytest.raises(ValueError, match=r"holdout: expected a share in \[0, 1\)"):
        texts_to_data(["ab", "ba"], holdout=1.0)


def test_vocabulary_comes_from_the_training_items_only() -> None:
    items = ["ab", "ba", "ab", "xyz"]
    seed = _seed_holding_out(3, len(items))
    with pytest.warns(UserWarning) as record:
        data = texts_to_data(items, seed=seed, holdout=0.25)
    assert str(record[0].message) == (
        "texts: dropped 1 of 1 held-out items with characters not in the training vocabulary "
        "(first: item 4, 'x' (U+0078))"
    )
    assert data.vocab.chars == ("a", "b") and data.test.shape == (0, 4)
    message = _error(texts_to_data, items, seed=seed, holdout=0.25, unknown="error")
    assert message.startswith("texts: item 4: character 'x' (U+0078) of a held-out item is not")


@pytest.mark.parametrize(
    ("option", "value"), [("mode", "words"), ("too_long", "cut"), ("unknown", "keep")]
)
def test_bad_options(option: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"{option}: expected one of"):
        texts_to_data(["ab", "ba"], **{option: value})


def test_too_few_items() -> None:
    assert _error(texts_to_data, ["ab", " "]) == (
        "texts: 1 non-empty items, expected at least 2 items"
    )


# --------------------------------------------------------------------------- files


def test_load_text_lines(tmp_path: Path) -> None:
    path = tmp_path / "names.txt"
    path.write_bytes(b"\xef\xbb\xbfAnna\r\nbob\r\n\r\ncarla\n  \ndan")
    data = load_text(path, holdout=0)
    assert data.name == "names"
    assert data.train_texts == ["Anna", "bob", "carla", "dan"]
    assert data.length == 6
    assert load_text(path, holdout=0, lowercase=True).train_texts[0] == "anna"


def test_load_text_too_long_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "ab\n\ncd\nabcdef\nef\n")
    message = _error(load_text, path, max_length=4)
    assert message == (
        f"{path}: line 4: 6 characters, longer than max_length 4 "
        "(1 such items; pass too_long='truncate' or 'drop')"
    )


def test_load_text_unknown_held_out_character_names_the_line(tmp_path: Path) -> None:
    lines = ["ab", "ba", "abab", "bab", "q"]
    path = _write(tmp_path, "\n".join(lines) + "\n")
    message = _error(load_text, path, seed=_seed_holding_out(4, 5), holdout=0.2, unknown="error")
    assert message.startswith(f"{path}: line 5: character 'q' (U+0071) of a held-out item")


def test_load_text_chunks_name_the_line_of_the_chunk(tmp_path: Path) -> None:
    text = "abcd\nbcda\ncdab\ndab\u00e9\n"  # 20 characters: chunks of 5 start on lines 1-4
    path = _write(tmp_path, text, "prose.txt")
    data = load_text(path, mode="chunks", chunk_length=5, holdout=0)
    assert data.train_texts == ["abcd\n", "bcda\n", "cdab\n", "dabé\n"]
    seed = _seed_holding_out(3, 4)
    message = _error(load_text, path, mode="chunks", chunk_length=5, seed=seed, unknown="error")
    assert message.startswith(f"{path}: line 4: character 'é' (U+00E9) of a held-out item")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "file is empty"),
        (b"\n  \n\r\n", "file is empty"),
        (b"only\n", "1 non-empty lines, expected at least 2 items"),
        (b"ok\nfine\nbad \xff here\n", "not UTF-8 text (byte 12, line 3)"),
        (b"\xef\xbb\xbfab\n\xc3", "not UTF-8 text (byte 6, line 2)"),
    ],
)
def test_load_text_bad_files(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    assert _error(load_text, path) == f"{path}: {expected}"


def test_load_text_missing_file_and_folder(tmp_path: Path) -> None:
    assert _error(load_text, tmp_path / "nope.txt") == f"{tmp_path / 'nope.txt'}: no such file"
    assert _error(load_text, tmp_path) == f"{tmp_path}: not a regular file"
