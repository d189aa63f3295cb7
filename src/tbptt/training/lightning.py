"""Truncated BPTT in PyTorch Lightning 2.x, which dropped ``truncated_bptt_steps``.

:class:`TBPTTModule` is a ``LightningModule`` that trains any tbptt model with
TBPTT(k1, k2) by manual optimisation: each training batch of ``(T, B, ...)`` steps is
cut into windows by :class:`tbptt.Runner`, one optimizer step per window, the state
carried (detached) from batch to batch and resets and masks applied as in
``docs/semantics.md``. Validation carries the state across batches without
truncation, as :meth:`tbptt.training.trainer.Trainer.evaluate` does. Feed it
:class:`tbptt.data.Streams` through :func:`dataloader`::

    module = TBPTTModule(tbptt.models.LSTM(256, vocab_size=V), tbptt.losses.cross_entropy,
                         k1=35, k2=70, lr=1e-3, clip_norm=0.25)
    lightning.Trainer(max_epochs=10).fit(module, dataloader(train), dataloader(valid))

Lightning is an optional dependency (``pip install 'tbptt[lightning]'``); only this
module imports it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from tbptt.data.streams import Batch, Streams
from tbptt.engine import LossFn, Runner, unroll
from tbptt.engine.state import State, detach
from tbptt.errors import TBPTTError

try:
    import lightning
    from lightning.pytorch.utilities import move_data_to_device
except ImportError as error:  # pragma: no cover - depends on the environment
    raise TBPTTError(
        "tbptt.training.lightning needs PyTorch Lightning 2.x: pip install 'tbptt[lightning]'"
    ) from error


def dataloader(streams: Streams) -> torch.utils.data.DataLoader[Batch]:
    """A data loader serving ``streams`` batch by batch, in order (streams are already
    batched, and their order is what carries the state)."""
    return torch.utils.data.DataLoader(streams, batch_size=None)


class TBPTTModule(lightning.LightningModule):  # type: ignore[misc]
    """A Lightning module that trains ``model`` with TBPTT(k1, k2).

    Args:
        model: follows the tbptt model protocol ``forward(x, state) -> (y, state)``.
        loss_fn: per-element losses ``(T, B)``.
        k1: steps between updates (``None``: one window of full BPTT per batch).
        k2: steps a gradient flows back (default k1).
        lr: the learning rate of the default optimizer (Adam); override
            ``configure_optimizers`` for another (a scheduler steps every window).
        clip_norm: clip the gradient's global norm to this (``None``: no clipping).

    Logs ``train_loss`` every window and ``val_loss`` (the masked mean over the
    validation streams) every validation.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        k1: int | None,
        k2: int | None = None,
        *,
        lr: float = 1e-3,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.model, self.loss_fn, self.lr, self.clip_norm = model, loss_fn, lr, clip_norm
        self.runner = Runner(model, loss_fn, k1, k2)
        self.validation_state: State = None
        self.validation_totals = torch.zeros(2, dtype=torch.float64)
        """The masked loss sum and count of this validation so far."""

    def forward(self, inputs: Tensor, state: State = None) -> tuple[Tensor, State]:
        """The model's outputs for ``inputs: (T, B, ...)`` from ``state``."""
        return self.model(inputs, state)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        """One optimizer step per window of ``batch``."""
        optimizer: Any = self.optimizers()  # one optimizer, one scheduler or none
        scheduler: Any = self.lr_schedulers()
        for window in self.runner.windows(batch):
            optimizer.zero_grad()
            self.manual_backward(window.loss)
            if self.clip_norm is not None:
                self.clip_gradients(optimizer, self.clip_norm, gradient_clip_algorithm="norm")
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            self.log("train_loss", window.reported_loss.detach(), batch_size=int(window.count))

    def on_validation_epoch_start(self) -> None:
        self.validation_state, self.validation_totals = None, torch.zeros(2, dtype=torch.float64)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Add up the loss of ``batch``, run from the state the previous batch left.
        Lightning hands the validation batches over one at a time, so this cannot call
        :func:`tbptt.training.evaluate`, which iterates the batches itself."""
        outputs, state = unroll(self.model, batch.inputs, self.validation_state, batch.resets)
        self.validation_state = detach(state)
        losses = self.loss_fn(outputs, batch.targets)
        total = torch.where(batch.mask, losses, torch.zeros_like(losses)).sum()
        self.validation_totals += torch.stack([total.double(), batch.mask.sum().double()]).cpu()

    def on_validation_epoch_end(self) -> None:
        """Log ``val_loss``: the masked mean over all validation streams and steps."""
        total, count = self.validation_totals.tolist()
        self.log("val_loss", total / max(count, 1.0), prog_bar=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the carried state (and history, when k2 > k1) for an exact resume."""
        checkpoint["tbptt_runner"] = self.runner.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = move_data_to_device(checkpoint.get("tbptt_runner", {}), self.device)
        self.runner.load_state_dict({"state": None, **saved})
