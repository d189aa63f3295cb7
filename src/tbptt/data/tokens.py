"""Token files for corpora larger than memory: written in chunks, read memory-mapped.

A token file is the ids of a text, one after another, as raw little-endian binary
(``uint16`` by default: vocabularies up to 65,536 tokens) or as a 1-D integer
``.npy`` array. :func:`open_tokens` maps it into memory without reading it, so the
stream layout can slice batches out of a corpus larger than RAM in constant memory::

    vocabulary = build_vocabulary("train.txt", level="char")   # one streaming pass
    write_tokens("train.txt", "train.bin", vocabulary)         # a second pass
    ids = open_tokens("train.bin")                             # (N,) memory map

:func:`write_tokens` reads the text ``chunk_chars`` characters at a time (text mode,
so a chunk never ends inside a multi-byte UTF-8 character). At word level a chunk
that ends inside a word keeps that word back for the next chunk, so the ids equal
``vocabulary.encode(read_text(path))`` for every chunk size.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tbptt.data.text import Vocabulary, check_level, tokenize
from tbptt.errors import TBPTTError, quoted
from tbptt.files import atomic_write, check_file, decode_error, file_error

RAW_DTYPES = ("uint16", "uint32", "int32", "int64")
"""The element types a raw token file may have; ``uint16`` is the default."""

NPY_MAGIC = b"\x93NUMPY"


def token_dtype(vocabulary_size: int, dtype: str | np.dtype | None = None) -> np.dtype:
    """The little-endian dtype for ids of a vocabulary of ``vocabulary_size`` tokens.

    ``None`` picks ``uint16`` when the ids fit, else ``uint32``. A given dtype must be
    one of ``RAW_DTYPES`` and hold the largest id.
    """
    if dtype is None:
        dtype = "uint16" if vocabulary_size <= 1 << 16 else "uint32"
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = repr(dtype)
    if name not in RAW_DTYPES:
        raise TBPTTError(f"dtype={quoted(dtype)} is not a token dtype; use one of {RAW_DTYPES}")
    largest = int(np.iinfo(name).max)
    if vocabulary_size - 1 > largest:
        raise TBPTTError(
            f"a vocabulary of {vocabulary_size} tokens needs ids up to {vocabulary_size - 1}, "
            f"more than {name} holds ({largest}); use a wider dtype or dtype=None"
        )
    return np.dtype(name).newbyteorder("<")


def read_chunks(path: str | os.PathLike[str], level: str, chunk_chars: int) -> Iterator[str]:
    """The text of a UTF-8 file in pieces of about ``chunk_chars`` characters.

    Pieces end on token boundaries: ``tokenize`` of every piece, concatenated, is
    ``tokenize`` of the whole text. Memory stays about ``chunk_chars`` characters
    plus the longest word. A leading byte-order mark is dropped, newlines are kept
    as they are (as :func:`tbptt.text.read_text` does).
    """
    check_level(level)
    if not isinstance(chunk_chars, int) or chunk_chars < 1:
        raise TBPTTError(f"chunk_chars={quoted(chunk_chars)} must be an integer >= 1")
    path = check_file(path, "text file")
    try:
        with open(path, encoding="utf-8-sig", errors="strict", newline="") as file:
            carry = ""
            while chunk := file.read(chunk_chars):
                piece = carry + chunk
                cut = len(piece) if level == "char" else word_boundary(piece)
                carry = piece[cut:]
                if cut:
                    yield piece[:cut]
            if carry:
                yield carry
    except UnicodeDecodeError:
        raise decode_error(path) from None


def word_boundary(text: str) -> int:
    """The length of ``text`` up to its last whitespace: the rest may be a cut word."""
    cut = len(text)
    while cut > 0 and not text[cut - 1].isspace():
        cut -= 1
    return cut


def build_vocabulary(
    path: str | os.PathLike[str],
    level: str = "char",
    min_count: int = 1,
    chunk_chars: int = 1 << 20,
) -> Vocabulary:
    """``Vocabulary.build`` of a text file, counted in one streaming pass."""
    counts: Counter[str] = Counter()
    for piece in read_chunks(path, level, chunk_chars):
        counts.update(tokenize(piece, level))
    if not counts:
        raise file_error(path, "holds no tokens (only whitespace)", "give a file with text")
    return Vocabulary.from_counts(counts, level, min_count)


def write_tokens(
    text_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    vocabulary: Vocabulary,
    *,
    chunk_chars: int = 1 << 20,
    dtype: str | np.dtype | None = None,
) -> int:
    """Tokenise the text file at ``text_path`` into the raw token file ``out_path``.

    Reads and encodes ``chunk_chars`` characters at a time, so memory does not grow
    with the file. ``dtype=None`` picks the narrowest of ``uint16``/``uint32`` that
    holds the vocabulary's ids. The output appears only once complete: on any error
    nothing is left at ``out_path`` (an older file there stays as it was). Returns
    the number of tokens written.
    """
    out_path = Path(out_path)
    try:
        chosen = token_dtype(vocabulary.size, dtype)
    except TBPTTError as error:
        raise file_error(out_path, str(error), "nothing was written") from None
    if out_path.suffix == ".npy":
        fix = "name it .bin (raw ids; open_tokens reads it with the same dtype)"
        raise file_error(out_path, "write_tokens writes raw binary, not .npy", fix)
    text_path = check_file(text_path, "text file")
    if out_path.exists() and out_path.resolve() == text_path.resolve():
        raise file_error(out_path, "is the text file itself", "write to another path")
    count = 0
    with atomic_write(out_path) as out:
        for piece in read_chunks(text_path, vocabulary.level, chunk_chars):
            ids = vocabulary.encode(piece).numpy().astype(chosen)
            out.write(ids.tobytes())
            count += ids.size
        if count == 0:
            raise file_error(text_path, "holds no tokens (only whitespace)", "give text")
    return count


def open_tokens(path: str | os.PathLike[str], dtype: str | np.dtype | None = None) -> np.memmap:
    """The ids of a token file as a read-only 1-D memory map ``(N,)``.

    ``.npy`` files must hold a non-empty 1-D integer array (``dtype``, if given, must
    match it). Any other file is raw little-endian ids of ``dtype`` (default
    ``uint16``), and its size must be a whole number of ids. Nothing is read until
    the map is indexed, so the file may be larger than memory.
    """
    path = check_file(path, "token file")
    if path.suffix == ".npy":
        return open_npy(path, dtype)
    try:
        chosen = token_dtype(1, "uint16" if dtype is None else dtype)
    except TBPTTError as error:
        raise file_error(path, str(error), "pass the dtype it was written with") from None
    size = path.stat().st_size
    if size % chosen.itemsize:
        raise file_error(
            path,
            f"its {size} bytes are not a whole number of {chosen.name} ids "
            f"({chosen.itemsize} bytes each): truncated, or written with another dtype",
            "pass the dtype it was written with (dtype=...)",
        )
    return np.memmap(path, dtype=chosen, mode="r")


def open_npy(path: Path, dtype: str | np.dtype | None) -> np.memmap:
    """A 1-D integer ``.npy`` file as a read-only memory map ``(N,)``."""
    fix = "save the ids with np.save(path, ids) where ids is a 1-D integer array"
    with open(path, "rb") as file:
        if file.read(len(NPY_MAGIC)) != NPY_MAGIC:
            raise file_error(path, "not a NumPy .npy file (no .npy header)", fix)
    try:
        ids = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        problem = f"cannot be memory-mapped ({error})"
        raise file_error(path, problem, fix) from None
    if not isinstance(ids, np.memmap) or ids.ndim != 1:
        shape = tuple(getattr(ids, "shape", ()))
        raise file_error(path, f"holds an array of shape {shape}, not 1-D", fix)
    if ids.dtype.kind not in "iu":
        raise file_error(path, f"holds {ids.dtype} values, not integer ids", fix)
    if ids.size == 0:
        raise file_error(path, "holds no ids (an empty array)", fix)
    if dtype is not None and token_dtype(1, dtype) != ids.dtype:
        problem = f"holds {ids.dtype} ids but dtype={quoted(dtype)} was given"
        raise file_error(path, problem, "leave dtype out for .npy files")
    return ids


def file_location(array: object) -> tuple[str, int] | None:
    """Where a 1-D ``np.memmap`` (or a contiguous view of one, like ``tokens[1:]``)
    starts: ``(file name, byte offset of its first element)``; else ``None``."""
    if not isinstance(array, np.memmap) or array.ndim != 1 or not array.flags.c_contiguous:
        return None
    root: np.ndarray = array
    while isinstance(root.base, np.ndarray):
        root = root.base
    if not isinstance(root, np.memmap) or root.filename is None:
        return None
    address = array.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    return root.filename, root.offset + address


def id_chunks(ids: Any, size: int = 1 << 22) -> Iterator[tuple[int, np.ndarray]]:
    """``ids: (N,)`` (a memory map, an array or a CPU tensor) in consecutive NumPy
    pieces of at most ``size`` ids, each with its start: one pass over a token file in
    constant memory (a map is read with :func:`read_runs`, so its pages do not stay
    resident)."""
    for start in range(0, len(ids), size):
        part = ids[start : start + size]
        if file_location(part) is not None:
            part = read_runs(part, np.array([0]), len(part))[0]
        yield start, np.asarray(part)


def read_runs(array: np.memmap, starts: np.ndarray, length: int) -> np.ndarray:
    """``array[s : s + length]`` for each start ``s``: ``(len(starts), length)``.

    Reads the file with ``os.pread`` instead of through the map: pages read through
    a map stay in this process's resident set, so streaming a corpus through it would
    grow the process to the corpus's size; these reads leave only the page cache
    (which the kernel frees at will). Positions past the end repeat the last element,
    as clamped indexing would.
    """
    location = file_location(array)
    if location is None:
        raise TypeError("read_runs needs a 1-D contiguous np.memmap")
    filename, offset = location
    runs = np.empty((len(starts), length), dtype=array.dtype)
    size, item = len(array), array.itemsize
    descriptor = os.open(filename, os.O_RDONLY)
    try:
        for row, start in enumerate(starts.tolist()):
            first = min(start, size - 1)
            count = max(min(length, size - first), 1)
            data = os.pread(descriptor, count * item, offset + first * item)
            runs[row, :count] = np.frombuffer(data, dtype=array.dtype)
            runs[row, count:] = runs[row, count - 1]
    finally:
        os.close(descriptor)
    return runs
