"""Activation memory, counted exactly: the bytes autograd keeps for the backward pass.

The memory that full BPTT grows with the sequence length and truncation bounds by k2
is the activations saved for backward. Peak resident memory measures it badly (it is
process-wide, never falls, and includes the allocator's caches); counting the tensors
autograd saves is deterministic (the same model, shapes and window give the same
count on every run) and works on any device.

    meter = SavedTensors(exclude=model.parameters())
    with meter:
        for window in runner.windows(inputs, targets):
            window.loss.backward()   # frees what the window saved
            meter.release()
    meter.peak_bytes                 # the most any one window held
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


class SavedTensors:
    """Counts the bytes of the distinct storages autograd saves for backward while the
    context is active, excluding ``exclude`` (parameters are memory either way).

    ``bytes`` is what has been saved since the last :meth:`release` (call it after each
    backward, which frees them), ``peak_bytes`` the largest ``bytes`` seen.
    """

    def __init__(self, exclude: Iterable[Tensor] = ()) -> None:
        self._excluded = {tensor.untyped_storage().data_ptr() for tensor in exclude}
        self._seen: set[int] = set()
        self.bytes = 0
        self.peak_bytes = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)

    def _pack(self, tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key not in self._seen and key not in self._excluded:
            self._seen.add(key)
            self.bytes += storage.nbytes()
            self.peak_bytes = max(self.peak_bytes, self.bytes)
        return tensor

    def release(self) -> None:
        """Start counting afresh: what was saved so far has been freed by a backward."""
        self._seen.clear()
        self.bytes = 0

    def __enter__(self) -> SavedTensors:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)


def _unpack(tensor: Tensor) -> Tensor:
    return tensor
