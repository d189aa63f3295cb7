"""Token files: chunked tokenisation equals whole-text encoding; bad files are refused."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tbptt import TBPTTError
from tbptt.data.text import Vocabulary, read_text, tokenize
from tbptt.data.tokens import build_vocabulary, open_tokens, read_chunks, write_tokens

ALPHABET = "ab é€😀\n\t\r"


def names(folder):
    return sorted(path.name for path in folder.iterdir())


@given(
    text=st.text(st.sampled_from(ALPHABET), min_size=1, max_size=60),
    chunk_chars=st.integers(1, 7),
    level=st.sampled_from(["char", "word"]),
)
def test_chunked_tokenisation_equals_whole_text_encoding(
    tmp_path_factory, text, chunk_chars, level
):
    folder = tmp_path_factory.mktemp("chunks")
    text_path = folder / "corpus.txt"
    text_path.write_bytes(text.encode("utf-8"))
    whole = read_text(text_path)
    if not tokenize(whole, level):
        return  # no words: refused, see test_whitespace_only_text_writes_nothing
    vocabulary = Vocabulary.build(whole[: len(whole) // 2] + "a", level=level)  # some unseen
    count = write_tokens(text_path, folder / "ids.bin", vocabulary, chunk_chars=chunk_chars)
    expected = vocabulary.encode(whole).numpy()
    assert count == len(expected)
    np.testing.assert_array_equal(open_tokens(folder / "ids.bin"), expected)
    streamed = build_vocabulary(text_path, level=level, chunk_chars=chunk_chars)
    assert streamed == Vocabulary.build(whole, level=level)


def test_char_chunks_hold_at_most_chunk_chars_characters(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(("€😀x" * 50).encode("utf-8"))
    pieces = list(read_chunks(path, "char", 7))
    assert max(map(len, pieces)) == 7 and "".join(pieces) == "€😀x" * 50


def test_word_chunks_carry_a_cut_word_to_the_next_chunk(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"alpha beta gamma")
    assert list(read_chunks(path, "word", 4)) == ["alpha ", "beta ", "gamma"]


def test_open_tokens_maps_the_file_without_reading_it(tmp_path):
    vocabulary = Vocabulary.build("abc")
    write_tokens(write_text(tmp_path, "abcabc"), tmp_path / "ids.bin", vocabulary)
    ids = open_tokens(tmp_path / "ids.bin")
    assert isinstance(ids, np.memmap) and ids.dtype == np.uint16 and ids.shape == (6,)
    assert not ids.flags.writeable
    assert (tmp_path / "ids.bin").stat().st_size == 12


def write_text(folder, text, name="corpus.txt"):
    path = folder / name
    path.write_bytes(text.encode("utf-8"))
    return path


def test_dtype_fits_the_vocabulary_unless_given(tmp_path):
    words = " ".join(f"w{i}" for i in range(70_000))
    text_path = write_text(tmp_path, words)
    vocabulary = Vocabulary.build(words, level="word")
    assert write_tokens(text_path, tmp_path / "wide.bin", vocabulary) == 70_000
    ids = open_tokens(tmp_path / "wide.bin", dtype="uint32")
    assert ids.dtype == np.uint32 and int(ids.max()) == 70_000
    small = Vocabulary.build("ab")
    write_tokens(
        write_text(tmp_path, "ab", "small.txt"), tmp_path / "i64.bin", small, dtype="int64"
    )
    assert open_tokens(tmp_path / "i64.bin", dtype=np.int64).tolist() == [1, 2]


def test_a_vocabulary_too_large_for_the_dtype_writes_nothing(tmp_path):
    words = " ".join(f"w{i}" for i in range(70_000))
    text_path = write_text(tmp_path, words)
    vocabulary = Vocabulary.build(words, level="word")
    message = r"out\.bin: a vocabulary of 70001 tokens needs ids up to 70000, more than uint16"
    with pytest.raises(TBPTTError, match=message):
        write_tokens(text_path, tmp_path / "out.bin", vocabulary, dtype="uint16")
    with pytest.raises(TBPTTError, match="not a token dtype"):
        write_tokens(text_path, tmp_path / "out.bin", vocabulary, dtype="float32")
    assert names(tmp_path) == ["corpus.txt"]


def test_undecodable_text_writes_nothing_and_keeps_an_old_output(tmp_path):
    text_path = tmp_path / "corpus.txt"
    text_path.write_bytes(b"good text\nthen \xe9 latin-1\n")
    (tmp_path / "ids.bin").write_bytes(b"old")
    message = r"corpus\.txt: line 2, byte 6 \(offset 15\): the file is not valid UTF-8"
    with pytest.raises(TBPTTError, match=message):
        write_tokens(text_path, tmp_path / "ids.bin", Vocabulary.build("good"), chunk_chars=3)
    assert (tmp_path / "ids.bin").read_bytes() == b"old"
    assert names(tmp_path) == ["corpus.txt", "ids.bin"]


def test_whitespace_only_text_writes_nothing(tmp_path):
    text_path = write_text(tmp_path, " \t\r ")
    vocabulary = Vocabulary.build("a b", level="word")
    with pytest.raises(TBPTTError, match=r"corpus\.txt: holds no tokens"):
        write_tokens(text_path, tmp_path / "ids.bin", vocabulary)
    with pytest.raises(TBPTTError, match=r"corpus\.txt: holds no tokens"):
        build_vocabulary(text_path, level="word")
    assert names(tmp_path) == ["corpus.txt"]


def test_write_tokens_refuses_bad_paths_and_chunk_sizes(tmp_path):
    vocabulary = Vocabulary.build("ab")
    text_path = write_text(tmp_path, "ab")
    with pytest.raises(TBPTTError, match="no such text file"):
        write_tokens(tmp_path / "missing.txt", tmp_path / "ids.bin", vocabulary)
    with pytest.raises(TBPTTError, match="is a folder"):
        write_tokens(tmp_path, tmp_path / "ids.bin", vocabulary)
    with pytest.raises(TBPTTError, match="the text file is empty"):
        write_tokens(write_text(tmp_path, "", "empty.txt"), tmp_path / "ids.bin", vocabulary)
    with pytest.raises(TBPTTError, match=r"writes raw binary, not \.npy; name it \.bin"):
        write_tokens(text_path, tmp_path / "ids.npy", vocabulary)
    with pytest.raises(TBPTTError, match="chunk_chars=0 must be an integer >= 1"):
        write_tokens(text_path, tmp_path / "ids.bin", vocabulary, chunk_chars=0)
    with pytest.raises(TBPTTError, match="is the text file itself"):
        write_tokens(text_path, text_path, vocabulary)
    assert names(tmp_path) == ["corpus.txt", "empty.txt"]


def test_open_tokens_reads_a_one_dimensional_integer_npy(tmp_path):
    np.save(tmp_path / "ids.npy", np.array([3, 1, 4], dtype=np.int32))
    ids = open_tokens(tmp_path / "ids.npy")
    assert isinstance(ids, np.memmap) and ids.tolist() == [3, 1, 4]


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((2, 3), dtype=np.int64), r"holds an array of shape \(2, 3\), not 1-D"),
        (np.zeros(3, dtype=np.float32), "holds float32 values, not integer ids"),
        (np.zeros(0, dtype=np.int64), r"holds no ids \(an empty array\)"),
    ],
)
def test_open_tokens_refuses_npy_of_the_wrong_shape_or_dtype(tmp_path, array, message):
    np.save(tmp_path / "ids.npy", array)
    with pytest.raises(TBPTTError, match=message):
        open_tokens(tmp_path / "ids.npy")


def test_open_tokens_refuses_bad_npy_files_and_a_conflicting_dtype(tmp_path):
    (tmp_path / "fake.npy").write_bytes(b"not numpy at all")
    with pytest.raises(TBPTTError, match=r"fake\.npy: not a NumPy \.npy file"):
        open_tokens(tmp_path / "fake.npy")
    np.save(tmp_path / "ids.npy", np.arange(100, dtype=np.int64))
    data = (tmp_path / "ids.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:-8])
    with pytest.raises(TBPTTError, match=r"cut\.npy: cannot be memory-mapped"):
        open_tokens(tmp_path / "cut.npy")
    with pytest.raises(TBPTTError, match="holds int64 ids but dtype='uint16' was given"):
        open_tokens(tmp_path / "ids.npy", dtype="uint16")


def test_open_tokens_refuses_raw_files_of_the_wrong_size_or_dtype(tmp_path):
    (tmp_path / "odd.bin").write_bytes(b"\x01\x00\x02")
    message = r"odd\.bin: its 3 bytes are not a whole number of uint16 ids \(2 bytes each\)"
    with pytest.raises(TBPTTError, match=message):
        open_tokens(tmp_path / "odd.bin")
    with pytest.raises(TBPTTError, match="not a whole number of int32 ids"):
        open_tokens(tmp_path / "odd.bin", dtype="int32")
    with pytest.raises(TBPTTError, match="dtype='float64' is not a token dtype"):
        open_tokens(tmp_path / "odd.bin", dtype="float64")
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(TBPTTError, match=r"empty\.bin: the token file is empty"):
        open_tokens(tmp_path / "empty.bin")
    with pytest.raises(TBPTTError, match="no such token file"):
        open_tokens(tmp_path / "missing.bin")
    with pytest.raises(TBPTTError, match="is a folder"):
        open_tokens(tmp_path)
