"""NT-ASGD (Merity et al. 2018): SGD, then the average of the iterates once the
validation loss stops improving.

AWD-LSTM trains with SGD and, at the first evaluation whose loss is worse than the
best of all evaluations but the last ``nonmono``, switches to averaged SGD
(``torch.optim.ASGD(t0=0, lambd=0)``), whose steps are SGD's and which keeps the mean
of the parameters after every step since. Evaluations and the best checkpoint then
use that mean. :class:`IterateAverage` keeps the same mean beside plain SGD, so the
optimizer never changes and the average is one more entry of the checkpoint.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from tbptt.errors import TBPTTError


class IterateAverage:
    """The trigger of NT-ASGD and the running mean of the parameters after it."""

    def __init__(self, nonmono: int) -> None:
        if nonmono < 1:
            raise TBPTTError(f"nonmono must be >= 1 evaluations, got {nonmono}")
        self.nonmono = nonmono
        self.losses: list[float] = []
        self.started = False
        self.count = 0
        self.average: dict[str, Tensor] = {}

    def observe(self, loss: float) -> bool:
        """Note an evaluation's loss; ``True`` when it starts the averaging: it is worse
        than the best of all evaluations but the last ``nonmono``."""
        self.losses.append(loss)
        earlier = self.losses[: -self.nonmono - 1]
        if self.started or not earlier or not loss > min(earlier):
            return False
        self.started = True
        return True

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the parameters after an update into the mean (once started)."""
        if not self.started:
            return
        self.count += 1
        for name, parameter in model.named_parameters():
            if self.count == 1:
                self.average[name] = parameter.detach().clone()
            else:
                self.average[name] += (parameter - self.average[name]) / self.count

    @contextlib.contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[None]:
        """``model`` holds the mean inside the block (if there is one), its own
        parameters again after it."""
        if not self.average:
            yield
            return
        parameters = dict(model.named_parameters())
        own = {name: parameters[name].detach().clone() for name in self.average}
        with torch.no_grad():
            for name, value in self.average.items():
                parameters[name].copy_(value)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, value in own.items():
                    parameters[name].copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {
            "losses": list(self.losses),
            "started": self.started,
            "count": self.count,
            "average": dict(self.average),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.losses = list(state["losses"])
        self.started, self.count = bool(state["started"]), int(state["count"])
        self.average = {name: value.clone() for name, value in state["average"].items()}
