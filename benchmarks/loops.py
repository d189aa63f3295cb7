"""The training loops that benchmarks/engine_throughput.py times, written as users
write them: the plain PyTorch loop, a per-step cell loop, PyTorch Lightning 1.x's
split-the-batch TBPTT, and tbptt's Runner. Each trains one window per call of
:meth:`Loop.window` on a pool of chunks ``(inputs, targets, resets)``, each ``(k, B)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import tbptt

CELLS = {"elman": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}


# --------------------------------------------------------------------------- models


class PlainNetwork(nn.Module):
    """The network as a user writes it: embedding, fused RNN, head; state (L, B, H)."""

    def __init__(self, network: tbptt.models.RecurrentNetwork) -> None:
        super().__init__()
        self.embedding, self.rnn, self.head = network.embedding, network.rnn, network.head

    def forward(self, inputs: Tensor, hidden):
        outputs, hidden = self.rnn(self.embedding(inputs), hidden)
        return self.head(outputs), hidden


class BatchFirstNetwork(PlainNetwork):
    """The network as a Lightning user writes it: batch-first ``inputs: (B, T)``
    through ``nn.LSTM(batch_first=True)``, which transposes to time-major and back
    (here by hand, so the weights stay those of the other variants)."""

    def forward(self, inputs: Tensor, hidden):
        outputs, hidden = self.rnn(self.embedding(inputs).transpose(0, 1), hidden)
        return self.head(outputs.transpose(0, 1)), hidden


class WithoutResets(nn.Module):
    """The built-in network behind a ``forward(x, state)`` without ``resets``, so the
    engine applies resets itself by splitting the window."""

    def __init__(self, network: tbptt.models.RecurrentNetwork) -> None:
        super().__init__()
        self.network = network

    def forward(self, inputs: Tensor, state=None):
        return self.network(inputs, state)

    def initial_state(self, batch_size: int, device=None, dtype=None):
        return self.network.initial_state(batch_size, device=device, dtype=dtype)


class PerStepNetwork(nn.Module):
    """One cell per layer sharing the fused RNN's weights, stepped in a Python loop."""

    def __init__(self, network: tbptt.models.RecurrentNetwork) -> None:
        super().__init__()
        self.embedding, self.head = network.embedding, network.head
        self.lstm = network.cell == "lstm"
        rnn = network.rnn
        self.cells = nn.ModuleList()
        for layer in range(network.num_layers):
            cell = CELLS[network.cell](
                rnn.input_size if layer == 0 else rnn.hidden_size, rnn.hidden_size
            )
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                setattr(cell, name, getattr(rnn, f"{name}_l{layer}"))  # shared Parameters
            self.cells.append(cell)

    def forward(self, inputs: Tensor, state: list, keep: Tensor):
        """``inputs: (T, B)``, ``state``: one per layer, ``keep: (T, B, 1)`` = 1 - reset."""
        features = self.embedding(inputs)
        outputs = []
        for step in range(features.shape[0]):
            layer_input = features[step]
            for layer, cell in enumerate(self.cells):
                if self.lstm:
                    h, c = state[layer]
                    state[layer] = cell(layer_input, (h * keep[step], c * keep[step]))
                    layer_input = state[layer][0]
                else:
                    state[layer] = cell(layer_input, state[layer] * keep[step])
                    layer_input = state[layer]
            outputs.append(layer_input)
        return self.head(torch.stack(outputs)), state


# --------------------------------------------------------------------------- loops


class Loop:
    """A training loop over a pool of chunks ``(inputs, targets, resets)``, each
    ``(k, B)``, cycled in order; :meth:`window` trains on the next chunk."""

    def __init__(self, model: nn.Module, chunks: list, optimizer: str, lr: float) -> None:
        self.model, self.chunks, self.position = model, chunks, 0
        if optimizer == "sgd":
            self.optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        else:
            self.optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def window(self) -> Tensor:
        """Train on the next chunk; returns its loss (detached)."""
        chunk = self.chunks[self.position % len(self.chunks)]
        self.position += 1
        return self.train_step(*chunk).detach()

    def block(self, windows: int) -> None:
        for _ in range(windows):
            self.window()

    def train_step(self, inputs: Tensor, targets: Tensor, resets: Tensor) -> Tensor:
        raise NotImplementedError


class PlainLoop(Loop):
    """The loop every PyTorch language-model example writes; ignores resets."""

    def __init__(self, network, chunks, optimizer, lr) -> None:
        super().__init__(PlainNetwork(network), chunks, optimizer, lr)
        batch = chunks[0][0].shape[1]
        shape = (network.num_layers, batch, network.hidden_size)
        like = network.head.weight
        zeros = torch.zeros(shape, device=like.device, dtype=like.dtype)
        self.hidden = (zeros, zeros.clone()) if network.cell == "lstm" else zeros

    def train_step(self, inputs, targets, resets):
        logits, hidden = self.model(inputs, self.hidden)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if isinstance(hidden, tuple):
            self.hidden = tuple(h.detach() for h in hidden)
        else:
            self.hidden = hidden.detach()
        return loss


def tbptt_split_batch(batch: tuple[Tensor, ...], split_size: int) -> list[tuple[Tensor, ...]]:
    """Lightning 1.x's default: every batch-first tensor cut along time (dim 1)."""
    return list(zip(*(x.split(split_size, dim=1) for x in batch), strict=True))


class LightningLoop(Loop):
    """Lightning 1.x's truncated_bptt_steps = k: each batch, batch-first ``(B, T)`` with
    T a multiple of k, is split into pieces of k steps, one ``training_step`` per piece,
    the hiddens carried detached (one window = one piece)."""

    def __init__(self, network, chunks, optimizer, lr, k: int, splits: int) -> None:
        batches = []  # batch-first (B, splits * k), as a DataLoader would yield them
        for first in range(0, len(chunks), splits):
            group = chunks[first : first + splits]
            batches.append(
                tuple(
                    torch.cat([chunk[part] for chunk in group]).t().contiguous() for part in (0, 1)
                )
            )
        super().__init__(BatchFirstNetwork(network), batches, optimizer, lr)
        self.k, self.hiddens, self.pending = k, None, []

    def window(self) -> Tensor:
        """Train on the next split, splitting the next batch when none are left."""
        if not self.pending:
            batch = self.chunks[self.position % len(self.chunks)]
            self.position += 1
            self.pending = tbptt_split_batch(batch, self.k)
        return self.train_step(*self.pending.pop(0)).detach()

    def training_step(self, split: tuple[Tensor, ...], hiddens):
        inputs, targets = split
        logits, hiddens = self.model(inputs, hiddens)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return {"loss": loss, "hiddens": hiddens}

    def train_step(self, inputs, targets, resets=None):
        output = self.training_step((inputs, targets), self.hiddens)
        self.optimizer.zero_grad()
        output["loss"].backward()
        self.optimizer.step()
        self.hiddens = tbptt.engine.state.detach(output["hiddens"])
        return output["loss"]


class RunnerLoop(Loop):
    """``tbptt.Runner`` with k1 = k2 = k on chunks of k steps: one window per chunk."""

    def __init__(self, model, chunks, optimizer, lr, k: int, resets: bool) -> None:
        super().__init__(model, chunks, optimizer, lr)
        self.runner = tbptt.Runner(model, tbptt.losses.cross_entropy, k1=k, k2=k)
        self.use_resets = resets

    def train_step(self, inputs, targets, resets):
        resets = resets if self.use_resets else None
        for window in self.runner.windows(inputs, targets, resets=resets):
            self.optimizer.zero_grad()
            window.loss.backward()
            self.optimizer.step()
        return window.loss


class PerStepLoop(Loop):
    """Resets by hand: the state times (1 - reset) before every step."""

    def __init__(self, network, chunks, optimizer, lr) -> None:
        super().__init__(PerStepNetwork(network), chunks, optimizer, lr)
        batch = chunks[0][0].shape[1]
        like = network.head.weight
        zeros = torch.zeros(batch, network.hidden_size, device=like.device, dtype=like.dtype)
        lstm = network.cell == "lstm"
        self.state = [(zeros, zeros) if lstm else zeros for _ in range(network.num_layers)]

    def train_step(self, inputs, targets, resets):
        keep = (1.0 - resets.float()).unsqueeze(-1)
        logits, state = self.model(inputs, self.state, keep)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.state = [
            tuple(s.detach() for s in layer) if isinstance(layer, tuple) else layer.detach()
            for layer in state
        ]
        return loss
