"""Checkpoints that never lose work: written atomically, loaded without running code.

A checkpoint is a dict of tensors and plain values saved with ``torch.save`` into a
temporary file that is fsynced and renamed over the target (``tbptt.files``), so a
crash at any moment leaves the previous checkpoint whole. Loading uses
``weights_only=True``: a file that holds pickled Python objects, which could run code,
is refused.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from typing import Any

import torch

from tbptt.files import atomic_write, check_file, file_error

FORMAT = "tbptt-checkpoint"
VERSION = 1


def save(path: str | os.PathLike[str], payload: dict[str, Any] | bytes) -> None:
    """Write ``payload`` (tensors, numbers, strings, lists, tuples, dicts; or what
    :func:`dumps` made of them) to ``path`` atomically."""
    data = payload if isinstance(payload, bytes) else dumps(payload)
    with atomic_write(path) as file:
        file.write(data)


def dumps(payload: dict[str, Any]) -> bytes:
    """``payload`` as the bytes of a checkpoint, tagged with the format and version."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **payload}, buffer)
    return buffer.getvalue()


def loads(data: bytes, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The payload of checkpoint bytes from :func:`dumps` (loaded as safely as a file)."""
    return dict(torch.load(io.BytesIO(data), map_location=map_location, weights_only=True))


def load(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save`; refuses code, damage and foreign files."""
    path = check_file(path, "checkpoint")
    problem = "is damaged or truncated, or not a PyTorch file"
    damaged = file_error(path, "", problem, "use another checkpoint, e.g. the run's best.pt")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        raise damaged
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        problem = "holds Python objects that safe loading refuses (they could run code)"
        fix = "only load checkpoints written by tbptt; never unpickle files you do not trust"
        raise file_error(path, "", problem, fix) from error
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as error:
        raise damaged from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise file_error(
            path, "", "is not a tbptt checkpoint", "give a file from a run's checkpoints/"
        )
    if payload.get("version") != VERSION:
        problem = f"has checkpoint version {payload.get('version')!r}, this tbptt reads {VERSION}"
        raise file_error(path, "", problem, "use the tbptt version that wrote it")
    return payload
