"""Vocabularies round-trip text; reading, saving and splitting refuse bad input clearly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tbptt import TBPTTError
from tbptt.data.text import UNK, Vocabulary, read_text, split
from tbptt.files import atomic_write

MULTIBYTE = "aé€😀 \n\t\r<>"


def names(folder):
    return sorted(path.name for path in folder.iterdir())


def test_char_ids_are_unk_then_descending_count_then_code_point():
    vocabulary = Vocabulary.build("abracadabra")
    assert vocabulary.tokens == (UNK, "a", "b", "r", "c", "d")
    assert vocabulary.size == len(vocabulary) == 6
    assert vocabulary.encode("abc").tolist() == [1, 2, 4]


def test_encode_gives_int64_of_shape_n():
    ids = Vocabulary.build("hello").encode("hello")
    assert ids.dtype == torch.int64 and ids.shape == (5,)


@given(st.text(st.sampled_from(MULTIBYTE), max_size=40))
def test_char_round_trip_is_exact(text):
    vocabulary = Vocabulary.build(text + "x")
    assert vocabulary.decode(vocabulary.encode(text)) == text


def test_unseen_characters_become_unk():
    vocabulary = Vocabulary.build("aab")
    assert vocabulary.encode("abz").tolist() == [1, 2, 0]
    assert vocabulary.decode([1, 0]) == "a" + UNK


def test_min_count_sends_rare_tokens_to_unk():
    vocabulary = Vocabulary.build("the cat the dog the", level="word", min_count=2)
    assert vocabulary.tokens == (UNK, "the")
    assert vocabulary.encode("the cat").tolist() == [1, 0]


def test_word_level_keeps_newlines_as_tokens():
    vocabulary = Vocabulary.build("a b\nb c\n", level="word")
    assert vocabulary.tokens == (UNK, "\n", "b", "a", "c")
    assert vocabulary.decode(vocabulary.encode("a  b\t\n\nc")) == "a b\n\nc"


@given(st.text(st.sampled_from("ab é€\t\n\r\x0b"), max_size=40))
def test_word_round_trip_joins_words_of_a_line_with_one_space(text):
    vocabulary = Vocabulary.build(text + " z", level="word")
    normalized = "\n".join(" ".join(line.split()) for line in text.split("\n"))
    assert vocabulary.decode(vocabulary.encode(text)) == normalized


def test_decode_refuses_ids_outside_the_vocabulary():
    vocabulary = Vocabulary.build("ab")
    with pytest.raises(TBPTTError, match="id 7 at position 1 is not in this vocabulary of 3"):
        vocabulary.decode(torch.tensor([1, 7]))
    with pytest.raises(TBPTTError, match="not 1-D"):
        vocabulary.decode(np.zeros((2, 2), dtype=np.int64))


def test_build_refuses_empty_text_bad_level_and_min_count():
    with pytest.raises(TBPTTError, match="holds no tokens"):
        Vocabulary.build(" \t ", level="word")
    with pytest.raises(TBPTTError, match="level='byte'"):
        Vocabulary.build("abc", level="byte")
    with pytest.raises(TBPTTError, match="min_count=5 leaves no tokens"):
        Vocabulary.build("abc", min_count=5)
    with pytest.raises(TBPTTError, match="min_count=0"):
        Vocabulary.build("abc", min_count=0)


@pytest.mark.parametrize("level", ["char", "word"])
def test_save_and_load_round_trip_as_plain_json(tmp_path, level):
    vocabulary = Vocabulary.build("zürich is\nnice\n", level=level)
    path = tmp_path / "vocabulary.json"
    vocabulary.save(path)
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["tokens"] == list(vocabulary.tokens) and document["level"] == level
    assert Vocabulary.load(path) == vocabulary
    assert names(tmp_path) == ["vocabulary.json"]


def test_save_to_a_missing_folder_writes_nothing(tmp_path):
    with pytest.raises(TBPTTError, match="its folder does not exist; create the folder"):
        Vocabulary.build("ab").save(tmp_path / "missing" / "vocabulary.json")
    assert names(tmp_path) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"format": "tbptt-vocabulary",\n "tokens": [}', r"line 2, column 13: not valid JSON"),
        ("[1, 2]", "not a vocabulary"),
        ('{"format": "tbptt-vocabulary", "version": 9}', "key 'version': version 9 is unknown"),
        ('{"format": "tbptt-vocabulary", "version": 1, "level": "x"}', "key 'level'"),
        ('{"format": "tbptt-vocabulary", "version": 1, "level": "char"}', "not a list"),
        (
            '{"format": "tbptt-vocabulary", "version": 1, "level": "char", "tokens": ["a"]}',
            "key 'tokens': the first token must be '<unk>'",
        ),
        (
            '{"format": "tbptt-vocabulary", "version": 1, "level": "char",'
            ' "tokens": ["<unk>", "a", "a"]}',
            r"token 2 \('a'\) appears twice",
        ),
        (
            '{"format": "tbptt-vocabulary", "version": 1, "level": "char",'
            ' "tokens": ["<unk>", "ab"]}',
            "not one character",
        ),
        (
            '{"format": "tbptt-vocabulary", "version": 1, "level": "word",'
            ' "tokens": ["<unk>", "a b"]}',
            "not a word",
        ),
    ],
)
def test_load_checks_the_json_structure(tmp_path, content, message):
    path = tmp_path / "vocabulary.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TBPTTError, match=message) as caught:
        Vocabulary.load(path)
    assert str(caught.value).startswith(str(path))
    assert "Vocabulary.save" in str(caught.value) and "\n" not in str(caught.value)


def test_read_text_is_exact_and_drops_a_byte_order_mark(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes("\ufeffline one\r\nnaïve 😀\n".encode())
    assert read_text(path) == "line one\r\nnaïve 😀\n"


def test_read_text_refuses_missing_folder_and_empty_paths(tmp_path):
    with pytest.raises(TBPTTError, match=r"missing\.txt: no such text file; check the path"):
        read_text(tmp_path / "missing.txt")
    with pytest.raises(TBPTTError, match="is a folder, not a file"):
        read_text(tmp_path)
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(TBPTTError, match=r"empty\.txt: the text file is empty"):
        read_text(tmp_path / "empty.txt")


def test_read_text_names_the_first_undecodable_byte(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("first\nsecond café\n".encode("latin-1"))
    message = r"latin1\.txt: line 2, byte 11 \(offset 16\): the file is not valid UTF-8; save it"
    with pytest.raises(TBPTTError, match=message):
        read_text(path)


def test_read_text_names_a_multibyte_character_cut_at_the_end(tmp_path):
    path = tmp_path / "cut.txt"
    path.write_bytes("ab€".encode()[:-1])
    with pytest.raises(TBPTTError, match=r"line 1, byte 3 \(offset 2\)"):
        read_text(path)


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(path) as file:
        file.write(b"partial")
        raise RuntimeError("failed half way")
    assert path.read_bytes() == b"old" and names(tmp_path) == ["out.bin"]


def test_split_is_contiguous_with_the_end_for_validation():
    ids = torch.arange(20)
    train, validation = split(ids, 0.25)
    assert train.tolist() == list(range(15)) and validation.tolist() == list(range(15, 20))
    train_array, validation_array = split(np.arange(10), 0.1)
    assert len(train_array) == 9 and validation_array.tolist() == [9]


def test_split_refuses_an_empty_part_and_bad_fractions():
    with pytest.raises(TBPTTError, match="3 tokens .* leaves the validation part empty"):
        split(torch.arange(3), 0.1)
    with pytest.raises(TBPTTError, match="leaves the training part empty"):
        split(torch.arange(3), 0.9)
    with pytest.raises(TBPTTError, match="strictly between 0 and 1"):
        split(torch.arange(30), 1.0)
