"""Peak bytes of live tensor storage, counted exactly, for the memory tests.

Every storage an operator creates while the mode is active (views and in-place
results create none) is counted from its creation until it is freed (a weak
reference's callback): the bytes alive at the worst moment of a forward and backward
pass, whoever holds them (autograd's saved tensors, a checkpoint's boundary states,
gradients). Deterministic: the same operators in the same order give the same count
on every run.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class PeakLiveBytes(TorchDispatchMode):
    """``with PeakLiveBytes() as meter: ...``; then ``meter.peak`` in bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._tracked: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if any(ret.alias_info is not None for ret in func._schema.returns):
            return result  # a view or an in-place result: no new storage
        for tensor in tree_leaves(result):
            if isinstance(tensor, torch.Tensor):
                self._track(tensor.untyped_storage())
        return result

    def _track(self, storage: torch.UntypedStorage) -> None:
        key = storage.data_ptr()
        if key in self._tracked or storage.nbytes() == 0:
            return
        self._tracked.add(key)
        self.live += storage.nbytes()
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, key, storage.nbytes())

    def _free(self, key: int, nbytes: int) -> None:
        self._tracked.discard(key)
        self.live -= nbytes
