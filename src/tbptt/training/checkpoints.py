"""Checkpoints that never lose work: written atomically, loaded without running code.

A checkpoint is a dict of tensors and plain values saved with ``torch.save`` into a
temporary file that is fsynced and renamed over the target (``tbptt.files``), so a
crash at any moment leaves the previous checkpoint whole. Loading uses
``weights_only=True``: a file that holds pickled Python objects, which could run code,
is refused. Every checkpoint carries a SHA-256 checksum of its payload (its tensors'
bytes, dtypes and shapes, and its plain values), verified on load, so damage inside
a tensor that the file format does not notice (a flipped bit) is refused too.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import zipfile
from typing import Any

import torch

from tbptt.files import atomic_write, check_file, file_error, nesting_error

FORMAT = "tbptt-checkpoint"
VERSION = 2
"""Version 2 adds the checksum; version 1 files (without one) still load."""
READS = (1, 2)
DAMAGED_FIX = "use another checkpoint: the run's checkpoints/best.pt or an earlier copy"


def save(path: str | os.PathLike[str], payload: dict[str, Any] | bytes) -> None:
    """Write ``payload`` (tensors, numbers, strings, lists, tuples, dicts; or what
    :func:`dumps` made of them) to ``path`` atomically."""
    data = payload if isinstance(payload, bytes) else dumps(payload)
    with atomic_write(path) as file:
        file.write(data)


def dumps(payload: dict[str, Any]) -> bytes:
    """``payload`` as the bytes of a checkpoint, tagged with the format and version."""
    body = {"format": FORMAT, "version": VERSION, **payload}
    body.pop("checksum", None)  # a payload that was loaded: its checksum is made anew
    body["checksum"] = checksum(body)
    buffer = io.BytesIO()
    torch.save(body, buffer)
    return buffer.getvalue()


def checksum(payload: Any) -> str:
    """SHA-256 of ``payload``: every tensor's dtype, shape and bytes and every plain
    value, in a fixed order (dict keys sorted), so equal payloads give equal sums
    wherever their tensors live."""
    digest = hashlib.sha256()

    def feed(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            flat = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"tensor {flat.dtype} {tuple(value.shape)}:".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes())  # a copy, one tensor at a time
        elif isinstance(value, dict):
            digest.update(f"dict {len(value)}:".encode())
            for key in sorted(value, key=repr):
                feed(key)
                feed(value[key])
        elif isinstance(value, list | tuple):
            digest.update(f"{type(value).__name__} {len(value)}:".encode())
            for item in value:
                feed(item)
        else:
            digest.update(f"{type(value).__name__} {value!r};".encode())

    feed(payload)
    return digest.hexdigest()


def loads(data: bytes, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The payload of checkpoint bytes from :func:`dumps` (loaded as safely as a file)."""
    payload = dict(torch.load(io.BytesIO(data), map_location=map_location, weights_only=True))
    payload.pop("checksum", None)
    return payload


def load(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save`; refuses code, damage and foreign files."""
    path = check_file(path, "checkpoint")
    problem = "is damaged or truncated, or not a PyTorch file"
    damaged = file_error(path, problem, DAMAGED_FIX)
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        raise damaged
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        problem = "holds Python objects that safe loading refuses (they could run code)"
        fix = "only load checkpoints written by tbptt; never unpickle files you do not trust"
        raise file_error(path, problem, fix) from error
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as error:
        raise damaged from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise file_error(path, "is not a tbptt checkpoint", "give a file from a run's checkpoints/")
    if payload.get("version") not in READS:
        problem = f"has checkpoint version {payload.get('version')!r}, this tbptt reads {VERSION}"
        raise file_error(path, problem, "use the tbptt version that wrote it")
    saved = payload.pop("checksum", None)
    try:
        matches = payload["version"] < 2 or saved == checksum(payload)
    except RecursionError:
        raise nesting_error(path) from None
    if not matches:
        problem = "is damaged: its contents do not match the checksum saved with them"
        raise file_error(path, problem, DAMAGED_FIX)
    return payload
