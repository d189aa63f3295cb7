"""Checkpoint files: a payload comes back as it went in, and damage anywhere in it,
even one bit inside a tensor, is refused as damaged."""

from __future__ import annotations

import io

import pytest
import torch

from tbptt import TBPTTError
from tbptt.training import checkpoints

PAYLOAD = {
    "model": {"weight": torch.linspace(-1, 1, 64), "steps": torch.tensor(3)},
    "position": {"epoch": 1, "window": 7},
    "history": [torch.ones(2, 3, dtype=torch.bfloat16), None],
}


def test_a_payload_comes_back_as_it_was_saved(tmp_path):
    checkpoints.save(tmp_path / "a.pt", PAYLOAD)
    loaded = checkpoints.load(tmp_path / "a.pt")
    assert torch.equal(loaded["model"]["weight"], PAYLOAD["model"]["weight"])
    assert loaded["position"] == PAYLOAD["position"] and loaded["version"] == checkpoints.VERSION


def test_one_flipped_bit_in_a_tensor_is_refused_as_damaged(tmp_path):
    data = checkpoints.dumps(PAYLOAD)
    at = data.index(PAYLOAD["model"]["weight"].numpy().tobytes()) + 17
    (tmp_path / "a.pt").write_bytes(data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :])
    with pytest.raises(TBPTTError, match="is damaged.*checksum.*best.pt or an earlier"):
        checkpoints.load(tmp_path / "a.pt")


def test_a_changed_plain_value_is_refused_as_damaged(tmp_path):
    data = checkpoints.dumps(PAYLOAD)
    payload = torch.load(io.BytesIO(data), weights_only=True)
    payload["position"]["window"] = 8  # the checksum kept from window 7
    torch.save(payload, tmp_path / "a.pt")
    with pytest.raises(TBPTTError, match="is damaged"):
        checkpoints.load(tmp_path / "a.pt")


def test_a_loaded_payload_saves_again_with_a_fresh_checksum(tmp_path):
    checkpoints.save(tmp_path / "a.pt", PAYLOAD)
    changed = {**checkpoints.load(tmp_path / "a.pt"), "position": {"epoch": 2, "window": 9}}
    checkpoints.save(tmp_path / "b.pt", changed)
    assert checkpoints.load(tmp_path / "b.pt")["position"]["window"] == 9


def test_a_version_1_checkpoint_without_a_checksum_still_loads(tmp_path):
    torch.save({"format": checkpoints.FORMAT, "version": 1, **PAYLOAD}, tmp_path / "old.pt")
    assert checkpoints.load(tmp_path / "old.pt")["position"]["window"] == 7
