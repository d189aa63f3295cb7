"""Files that never lose work: one-line errors that name the place, atomic writes."""

from __future__ import annotations

import codecs
import fcntl
import os
import re
import stat
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from tbptt.errors import TBPTTError

TEMPORARY = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")
"""The name of an :func:`atomic_write` temporary file."""
UTF8_FIX = "save it as UTF-8 (e.g. iconv -f latin1 -t utf-8 in.txt > out.txt)"
LOCK = ".lock"
"""The file in a run directory that :class:`FolderLock` locks."""


def file_error(
    path: str | os.PathLike[str], problem: str, fix: str, *, where: str = ""
) -> TBPTTError:
    """The one-line error for bad input in a file: ``path: where: problem; fix``.

    ``where`` is the place in the file ("line 3, column 'price'"); without it the
    message is ``path: problem; fix``.
    """
    place = f"{os.fspath(path)}: {where}: " if where else f"{os.fspath(path)}: "
    return TBPTTError(" ".join(f"{place}{problem}; {fix}".splitlines()))


def nesting_error(path: str | os.PathLike[str]) -> TBPTTError:
    """The error for a document (JSON, TOML, a checkpoint's values) nested deeper than
    Python's recursion limit lets it be read: refused, not a traceback."""
    problem = f"is nested too deeply to read (over {sys.getrecursionlimit()} levels)"
    return file_error(path, problem, "give a file whose values nest a few levels at most")


def check_file(path: str | os.PathLike[str], kind: str = "file") -> Path:
    """``path`` as a ``Path`` if it names an existing, non-empty file; else an error."""
    path = Path(path)
    if not path.exists():
        raise file_error(path, f"no such {kind}", "check the path")
    if path.is_dir():
        raise file_error(path, "is a folder, not a file", f"give the path of a {kind}")
    if (special := special_file(path)) is not None:
        problem = f"is not a regular file ({special})"
        raise file_error(path, problem, f"give the path of a {kind} on disk")
    if path.stat().st_size == 0:
        raise file_error(path, f"the {kind} is empty", "give a file that holds data")
    return path


def special_file(path: Path) -> str | None:
    """What ``path`` is if it is not a regular file on disk (a FIFO, a device, a
    socket, or a kernel file under /proc or /sys, which only looks like one), else None.
    Reading one could block forever (a FIFO), never end (``/dev/zero``) or read the
    system's state, and its size says nothing."""
    mode = path.stat().st_mode
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    if not stat.S_ISREG(mode):
        return "not a file"
    if path.resolve().parts[1:2] in (("proc",), ("sys",)):
        return "a kernel file under /proc or /sys"
    return None


def decode_error(path: Path) -> TBPTTError:
    """The error for a file that is not UTF-8, naming the first bad byte's place.

    Streams the file once (constant memory) to find the byte offset, then its line
    and byte column (both 1-based).
    """
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset, bad = 0, None
    with open(path, "rb") as file:
        while bad is None and (chunk := file.read(1 << 20)):
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:
                bad = offset - pending + error.start
            offset += len(chunk)
        if bad is None:
            bad = offset - len(decoder.getstate()[0])
    line, line_start, seen = 1, 0, 0
    with open(path, "rb") as file:
        while seen < bad and (chunk := file.read(min(1 << 20, bad - seen))):
            line += chunk.count(b"\n")
            if (last := chunk.rfind(b"\n")) >= 0:
                line_start = seen + last + 1
            seen += len(chunk)
    where = f"line {line}, byte {bad - line_start + 1} (offset {bad})"
    return file_error(path, "the file is not valid UTF-8", UTF8_FIX, where=where)


@contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open ``path`` for binary writing so that it appears whole or not at all.

    Writes go to a temporary file in the same folder, fsynced and renamed over
    ``path`` with ``os.replace`` only when the ``with`` block ends without an
    exception (then the folder is fsynced, so the rename survives a power cut); on an
    exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise file_error(path, "its folder does not exist", "create the folder first")
    if path.is_dir():
        raise file_error(path, "is a folder", "give a file name to write to")
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(temporary, "xb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        sync_folder(path.parent)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(temporary)


def sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` survive a power cut (POSIX; elsewhere a no-op)."""
    if hasattr(os, "O_DIRECTORY"):
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def remove_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that writes cut short by a crash left in ``folder``
    (their targets still hold the last complete version); returns what was deleted."""
    folder = Path(folder)
    stale = [path for path in folder.glob(".*.tmp") if TEMPORARY.fullmatch(path.name)]
    for path in stale:
        with suppress(FileNotFoundError):
            path.unlink()
    return stale


class FolderLock:
    """An exclusive lock on a folder, so one process at a time writes it.

    The OS lock (``flock``) on ``folder/.lock``, which holds the holder's PID for the
    message a second writer gets. The OS releases it when the process dies, however
    it dies, so a killed run never blocks its own resume; a clean release also
    removes the file. Use as a context manager, or :meth:`acquire` and :meth:`release`.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / LOCK
        self._descriptor: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise ``TBPTTError`` naming the process that holds it."""
        while self._descriptor is None:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(descriptor, 32).decode(errors="replace").strip()
                os.close(descriptor)
                who = f"process {holder}" if holder.isdigit() else "another process"
                raise file_error(
                    self.path.parent,
                    f"{who} is writing this run (it holds {self.path.name})",
                    "wait for it to finish or stop it, or choose another --run-dir",
                ) from None
            try:  # a holder's release removes the file: lock the one that is there now
                same = os.stat(self.path).st_ino == os.fstat(descriptor).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(descriptor)
                continue
            os.ftruncate(descriptor, 0)
            os.write(descriptor, f"{os.getpid()}\n".encode())
            self._descriptor = descriptor

    def release(self) -> None:
        """Remove the lock file and let the lock go (nothing if not held)."""
        if self._descriptor is None:
            return
        with suppress(FileNotFoundError):
            os.unlink(self.path)  # while still held: no one can lock the old file after
        os.close(self._descriptor)
        self._descriptor = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
