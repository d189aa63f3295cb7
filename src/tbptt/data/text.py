"""Text as token ids: character- and word-level vocabularies, reading and splitting.

A :class:`Vocabulary` maps tokens to ids and back. Its id order is deterministic:
``<unk>`` is id 0, then the tokens by descending count, ties broken by code-point
order. Two levels:

- ``"char"``: every character is a token, so ``decode(encode(text)) == text`` for
  any text whose characters the vocabulary holds. Newlines are characters like any
  other (no newline translation: ``"\\r\\n"`` is two tokens).
- ``"word"``: tokens are the runs of non-whitespace characters, plus one ``"\\n"``
  token for every newline, so line structure survives. Other whitespace only
  separates words and is not kept: ``decode`` joins the words of a line with single
  spaces, so ``decode(encode(text))`` is ``text`` with every line's words joined by
  one space and no spaces at line ends.

A token has at most ``MAX_TOKEN_LENGTH`` (1,000) characters, so a "word" that is a
whole file is refused, when a vocabulary is built or loaded, in a short message.

At both levels a token seen fewer than ``min_count`` times while building, or not
seen at all (a character that appears only in a validation file, say), is encoded
as ``<unk>`` (id 0), and id 0 decodes to the string ``"<unk>"``.

Vocabularies are saved as plain JSON, never pickled. File errors are one line:
``path: place: problem; fix`` (see :func:`file_error`), and every file this module
writes appears whole or not at all (:func:`atomic_write`).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from tbptt.errors import TBPTTError, quoted
from tbptt.files import atomic_write, check_file, decode_error, file_error, nesting_error

UNK = "<unk>"
"""The token that stands for every token the vocabulary does not hold; always id 0."""

LEVELS = ("char", "word")
MAX_TOKEN_LENGTH = 1000
"""The most characters a token may have (a word's; a character's is 1), so that a
vocabulary whose tokens are not words (a whole file in one) is refused, not read."""
FORMAT = "tbptt-vocabulary"
VERSION = 1
_WORD = re.compile(r"\n|\S+")

Sliceable = TypeVar("Sliceable", Tensor, np.ndarray)


def read_text(path: str | os.PathLike[str]) -> str:
    """The whole text of a UTF-8 file, exactly (no newline translation).

    A leading byte-order mark is dropped. Missing, empty, folder and non-UTF-8
    paths are errors that name the file (and for bad bytes, the line and byte).
    """
    path = check_file(path, "text file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise decode_error(path) from None
    if not text:
        raise file_error(path, "holds only a byte-order mark", "give a file with text")
    return text


def tokenize(text: str, level: str) -> list[str]:
    """The tokens of ``text`` at ``level`` ("char" or "word"), in order."""
    check_level(level)
    return list(text) if level == "char" else _WORD.findall(text)


def check_level(level: str) -> None:
    """Refuse a level other than "char" or "word"."""
    if level not in LEVELS:
        raise TBPTTError(f"level={quoted(level)} is not a vocabulary level; use 'char' or 'word'")


def token_problem(tokens: Sequence[Any], level: str) -> str | None:
    """What is wrong with ``tokens`` as a vocabulary at ``level``, or ``None``."""
    if not tokens or tokens[0] != UNK:
        return f"the first token must be {UNK!r}"
    seen: set[str] = set()
    for index, token in enumerate(tokens):
        if not isinstance(token, str):
            return f"token {index} is {quoted(token)}, not a string"
        if token in seen:
            return f"token {index} ({quoted(token)}) appears twice"
        seen.add(token)
        if index == 0:
            continue
        if len(token) > MAX_TOKEN_LENGTH:
            return (
                f"token {index} is {len(token):,} characters long, more than the "
                f"{MAX_TOKEN_LENGTH:,} a token may have"
            )
        if level == "char" and len(token) != 1:
            return f"token {index} ({quoted(token)}) is not one character"
        if level == "word" and token != "\n" and _WORD.fullmatch(token) is None:
            return f"token {index} ({quoted(token)}) is not a word (empty or holds whitespace)"
    return None


@dataclass(frozen=True)
class Vocabulary:
    """Tokens and their ids; ``tokens[i]`` has id ``i`` and ``tokens[0]`` is ``<unk>``."""

    tokens: tuple[str, ...]
    """Every token, in id order."""
    level: str = "char"
    """``"char"`` or ``"word"``: how ``encode`` cuts text into tokens."""
    index: dict[str, int] = field(init=False, repr=False, compare=False)
    """Token to id, built from ``tokens``."""

    def __post_init__(self) -> None:
        check_level(self.level)
        object.__setattr__(self, "tokens", tuple(self.tokens))
        if (problem := token_problem(self.tokens, self.level)) is not None:
            raise TBPTTError(f"bad vocabulary: {problem}; build one with Vocabulary.build")
        object.__setattr__(self, "index", {t: i for i, t in enumerate(self.tokens)})

    @classmethod
    def build(cls, text: str, level: str = "char", min_count: int = 1) -> Vocabulary:
        """The vocabulary of ``text``: tokens seen at least ``min_count`` times."""
        return cls.from_counts(Counter(tokenize(text, level)), level, min_count)

    @classmethod
    def from_counts(
        cls, counts: Mapping[str, int], level: str = "char", min_count: int = 1
    ) -> Vocabulary:
        """The vocabulary of tokens counted ``counts[token]`` times (e.g. over a stream)."""
        check_level(level)
        if not isinstance(min_count, int) or min_count < 1:
            raise TBPTTError(f"min_count={quoted(min_count)} must be an integer >= 1")
        if not any(token != UNK for token in counts):
            raise TBPTTError("the text holds no tokens; build the vocabulary from non-empty text")
        kept = [t for t, c in counts.items() if c >= min_count and t != UNK]
        if not kept:
            raise TBPTTError(f"min_count={min_count} leaves no tokens; lower min_count")
        if (long := next((t for t in kept if len(t) > MAX_TOKEN_LENGTH), None)) is not None:
            raise TBPTTError(
                f"the text holds a token of {len(long):,} characters, {quoted(long)}, more "
                f"than the {MAX_TOKEN_LENGTH:,} a token may have; use level 'char', or a "
                "min_count above its count"
            )
        kept.sort(key=lambda token: (-counts[token], token))
        return cls((UNK, *kept), level)

    @property
    def size(self) -> int:
        """The number of ids, ``<unk>`` included."""
        return len(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> Tensor:
        """The ids of the tokens of ``text``: int64 ``(N,)``; unknown tokens are id 0."""
        get = self.index.get
        return torch.tensor([get(t, 0) for t in tokenize(text, self.level)], dtype=torch.int64)

    def decode(self, ids: Tensor | np.ndarray | Sequence[int]) -> str:
        """The text of ``ids: (N,)``; word level joins the words of a line with spaces."""
        if isinstance(ids, (Tensor, np.ndarray)) and ids.ndim != 1:
            raise TBPTTError(f"ids of shape {tuple(ids.shape)} are not 1-D; decode one sequence")
        values = ids.tolist() if isinstance(ids, (Tensor, np.ndarray)) else list(ids)
        tokens = []
        for position, value in enumerate(values):
            if not isinstance(value, (int, np.integer)) or not 0 <= value < self.size:
                raise TBPTTError(
                    f"id {quoted(value)} at position {position} is not in this vocabulary of "
                    f"{self.size} tokens; decode ids made by the same vocabulary"
                )
            tokens.append(self.tokens[value])
        if self.level == "char":
            return "".join(tokens)
        return re.sub(r" ?\n ?", "\n", " ".join(tokens))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write this vocabulary to ``path`` as JSON (atomically)."""
        document = {"format": FORMAT, "version": VERSION, "level": self.level}
        text = json.dumps({**document, "tokens": list(self.tokens)}, ensure_ascii=False)
        with atomic_write(path) as file:
            file.write(text.encode("utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocabulary:
        """The vocabulary saved at ``path``, its JSON structure checked."""
        path = check_file(path, "vocabulary file")
        fix = "give a file written by Vocabulary.save"
        try:
            document = json.loads(path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError:
            raise decode_error(path) from None
        except json.JSONDecodeError as error:
            where = f"line {error.lineno}, column {error.colno}"
            raise file_error(path, f"not valid JSON ({error.msg})", fix, where=where) from None
        except RecursionError:
            raise nesting_error(path) from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise file_error(path, f"not a vocabulary (no format {FORMAT!r})", fix)
        if document.get("version") != VERSION:
            version = document.get("version")
            raise file_error(
                path, f"version {quoted(version)} is unknown", fix, where="key 'version'"
            )
        level = document.get("level")
        if level not in LEVELS:
            raise file_error(
                path, f"{quoted(level)} is not 'char' or 'word'", fix, where="key 'level'"
            )
        tokens = document.get("tokens")
        if not isinstance(tokens, list):
            raise file_error(path, "missing or not a list", fix, where="key 'tokens'")
        if (problem := token_problem(tokens, level)) is not None:
            raise file_error(path, problem, fix, where="key 'tokens'")
        return cls(tuple(tokens), level)


def split_point(length: int, validation_fraction: float, what: str = "tokens") -> int:
    """Where a contiguous split of ``length`` items puts the validation part's start.

    The validation part is the last ``round(length * validation_fraction)`` items;
    an error if either part would be empty.
    """
    if not 0 < validation_fraction < 1:
        raise TBPTTError(
            f"validation_fraction={quoted(validation_fraction)} must lie strictly between 0 and 1"
        )
    validation = round(length * validation_fraction)
    if validation < 1 or validation >= length:
        part = "validation" if validation < 1 else "training"
        raise TBPTTError(
            f"splitting {length} {what} with validation_fraction={validation_fraction} "
            f"leaves the {part} part empty; use more data or change validation_fraction"
        )
    return length - validation


def split(ids: Sliceable, validation_fraction: float = 0.1) -> tuple[Sliceable, Sliceable]:
    """Cut ``ids: (N, ...)`` in time into ``(train, validation)``, the end to validation.

    Contiguous (no shuffling: the streams keep their order); both parts are views.
    """
    start = split_point(len(ids), validation_fraction)
    return ids[:start], ids[start:]
