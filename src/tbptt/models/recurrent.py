"""Elman, LSTM and GRU networks on PyTorch's fused ``nn.RNN/LSTM/GRU``.

Each network maps inputs ``(T, B)`` of token ids (with ``vocab_size``) or ``(T, B, F)``
features (with ``input_size``) through an optional embedding, a stack of recurrent
layers and a linear head to outputs ``(T, B, output_size)``. State is batch-first:
``(B, num_layers, hidden_size)``, a tuple ``(h, c)`` of two such for the LSTM.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from tbptt.errors import TBPTTError, check_probability
from tbptt.models import dropout as awd
from tbptt.models.penalties import WindowPenalties
from tbptt.models.segments import RNNState, Segments
from tbptt.resets import reset_pieces

CELLS = {"elman": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}

RESET_STRATEGIES = ("auto", "split", "packed")

INITS = ("torch", "uniform:A", "orthogonal")
"""Initialisations: PyTorch's defaults; the embedding and head weights drawn from
U(-A, A) and the head bias zero (pytorch/examples' word language model, Zaremba et
al. 2014); each gate's hidden-to-hidden matrix orthogonal (Saxe et al. 2014)."""

Layers = Callable[..., tuple[Tensor, RNNState]]
"""Recurrent layers as a function ``(inputs, hidden) -> (outputs, hidden)``: an
``nn.RNN/LSTM/GRU``, or one called with other weights (``torch.func.functional_call``)."""

CPU_CHUNK_STEPS = 16
"""Steps per call of a packed RNN on the CPU (see ``Segments.run``)."""


class RecurrentNetwork(nn.Module):
    """A recurrent network that follows the tbptt model protocol and applies resets
    inside one fused call.

    Args:
        cell: ``"elman"`` (tanh RNN), ``"lstm"`` or ``"gru"``.
        hidden_size: units per recurrent layer.
        vocab_size: inputs are token ids ``(T, B)`` read through an embedding.
        input_size: inputs are features ``(T, B, input_size)``. Give exactly one of
            ``vocab_size`` and ``input_size``.
        output_size: outputs per step (default: ``vocab_size``).
        num_layers: stacked recurrent layers.
        embedding_size: embedding width (default: ``hidden_size``).
        dropout: dropout on the embedding, between layers and before the head.
        embedding_dropout, input_dropout, hidden_dropout, output_dropout, weight_drop:
            AWD-LSTM's regularisers (Merity et al. 2018; ``tbptt.models.dropout``),
            each drawn once per TBPTT window: whole words of the embedding; locked
            (one mask per stream, every step) on the inputs, between layers and on
            the last layer's outputs; DropConnect on the hidden-to-hidden weights.
        activation_penalty, temporal_penalty: AWD-LSTM's AR (alpha) and TAR (beta)
            on the last layer's outputs, summed over each window's calls and taken
            by :meth:`window_penalty` (``tbptt.models.penalties``).
        tie_weights: share the embedding matrix with the head (Press & Wolf 2017);
            needs ``embedding_size == hidden_size``.
        init: ``"torch"`` (PyTorch's defaults), ``"uniform:A"`` or ``"orthogonal"``
            (see ``INITS``).
        forget_bias: LSTMs only: start every forget gate's bias at this value
            (Jozefowicz et al. 2015 recommend 1), so the cell keeps its memory early in
            training; PyTorch's two bias vectors sum to it.
        reset_strategy: how resets inside a window run, all exact:
            ``"split"``: one fused call between consecutive steps where some stream
            resets (fastest on CPU, where the fused kernel beats the packed one);
            ``"packed"``: every stream's segments as separate sequences in one call on a
            ``PackedSequence`` (cuDNN runs these natively); ``"auto"`` (default):
            packed on CUDA, split otherwise. ``benchmarks/README.md`` has the figures.
    """

    def __init__(
        self,
        cell: str,
        hidden_size: int,
        *,
        vocab_size: int | None = None,
        input_size: int | None = None,
        output_size: int | None = None,
        num_layers: int = 1,
        embedding_size: int | None = None,
        dropout: float = 0.0,
        tie_weights: bool = False,
        init: str = "torch",
        forget_bias: float | None = None,
        embedding_dropout: float = 0.0,
        input_dropout: float = 0.0,
        hidden_dropout: float = 0.0,
        output_dropout: float = 0.0,
        weight_drop: float = 0.0,
        activation_penalty: float = 0.0,
        temporal_penalty: float = 0.0,
        reset_strategy: str = "auto",
    ) -> None:
        super().__init__()
        if reset_strategy not in RESET_STRATEGIES:
            raise TBPTTError(
                f"unknown reset_strategy {reset_strategy!r}: choose one of "
                f"{', '.join(RESET_STRATEGIES)}"
            )
        self.reset_strategy = reset_strategy
        check_config(cell, hidden_size, vocab_size, input_size, num_layers, dropout)
        output_size = vocab_size if output_size is None else output_size
        if output_size is None:
            raise TBPTTError("output_size is required with input_size (features in)")
        embedding_size = hidden_size if embedding_size is None else embedding_size
        self.cell, self.hidden_size, self.num_layers = cell, hidden_size, num_layers
        self.embedding = None if vocab_size is None else nn.Embedding(vocab_size, embedding_size)
        rnn_input = embedding_size if vocab_size is not None else input_size
        self.rnn = CELLS[cell](
            rnn_input, hidden_size, num_layers, dropout=dropout if num_layers > 1 else 0.0
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, output_size)
        if tie_weights:
            if self.embedding is None or embedding_size != hidden_size:
                raise TBPTTError(
                    "tie_weights needs token inputs (vocab_size) and embedding_size == hidden_size"
                )
            self.head.weight = self.embedding.weight
        self.initialize(init, forget_bias)
        self.regularise(
            embedding=embedding_dropout,
            input=input_dropout,
            hidden=hidden_dropout,
            output=output_dropout,
            weight=weight_drop,
        )
        self.penalties = WindowPenalties(activation_penalty, temporal_penalty)

    def regularise(self, **probabilities: float) -> None:
        """Set AWD-LSTM's dropout probabilities (see the class): ``embedding``,
        ``input``, ``hidden``, ``output`` and ``weight``."""
        for name, p in probabilities.items():
            check_probability(f"{name} dropout", p)
        if probabilities.get("embedding", 0.0) and self.embedding is None:
            raise TBPTTError("embedding dropout drops words: it needs token inputs (vocab_size)")
        self.awd = {**getattr(self, "awd", {}), **probabilities}
        self.masks = awd.WindowMasks()
        self.layers = []  # one-layer stand-ins, on no device, to run the layers apart
        if self.awd.get("hidden", 0.0) and self.num_layers > 1:
            self.layers = [
                CELLS[self.cell](
                    getattr(self.rnn, f"weight_ih_l{layer}").shape[1],
                    self.hidden_size,
                    device="meta",
                )
                for layer in range(self.num_layers)
            ]

    def new_window(self) -> None:
        """Draw new dropout masks for the next window and start its penalties (the
        engine calls this before each window; without AWD-LSTM's dropouts it draws
        nothing)."""
        if any(self.awd.values()):
            self.masks.new_window()
        self.penalties.new_window()

    def window_penalty(self, counted: Tensor | None = None) -> Tensor | None:
        """The window's AR and TAR penalty, a scalar to add to its loss (``None``
        without them, or outside training mode). ``counted: (L, B)`` bool marks the
        steps of the window's L steps that carry loss and are not padding (``None``:
        all); the engine passes it (see ``tbptt.models.penalties``)."""
        return self.penalties.penalty(counted)

    def initialize(self, init: str, forget_bias: float | None = None) -> None:
        """Initialise the parameters by ``init`` (see ``INITS``; ``"torch"`` keeps what
        the layers drew), then set the LSTM's forget-gate biases to ``forget_bias`` if
        given. Draws from the global RNG."""
        bound = parse_init(init)
        if forget_bias is not None and (self.cell != "lstm" or not math.isfinite(forget_bias)):
            raise TBPTTError(
                f"forget_bias is for LSTMs and must be finite, got {forget_bias} with "
                f"cell {self.cell!r}; drop it or use cell lstm"
            )
        with torch.no_grad():
            if bound is not None:
                if self.embedding is not None:
                    nn.init.uniform_(self.embedding.weight, -bound, bound)
                nn.init.uniform_(self.head.weight, -bound, bound)
                nn.init.zeros_(self.head.bias)
            if init == "orthogonal":
                for layer in range(self.num_layers):
                    weight = getattr(self.rnn, f"weight_hh_l{layer}")
                    for gate in weight.split(self.hidden_size):
                        nn.init.orthogonal_(gate)
            if forget_bias is not None:
                forget = slice(self.hidden_size, 2 * self.hidden_size)  # gates i, f, g, o
                for layer in range(self.num_layers):
                    getattr(self.rnn, f"bias_ih_l{layer}")[forget] = forget_bias
                    getattr(self.rnn, f"bias_hh_l{layer}")[forget] = 0.0

    def initial_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> RNNState:
        """Zeros, ``(B, num_layers, hidden_size)`` (a pair of them for the LSTM)."""
        like = self.head.weight
        shape = (batch_size, self.num_layers, self.hidden_size)
        device = like.device if device is None else device
        dtype = like.dtype if dtype is None else dtype
        zeros = torch.zeros(shape, device=device, dtype=dtype)
        return (zeros, zeros.clone()) if self.cell == "lstm" else zeros

    def forward(
        self,
        inputs: Tensor,
        state: RNNState | None = None,
        resets: Tensor | None = None,
    ) -> tuple[Tensor, RNNState]:
        """Run ``inputs: (T, B)`` or ``(T, B, F)`` from ``state`` (``None``: zeros).

        ``resets: (T, B)`` bool: the state of stream b is replaced by zeros before
        step i where ``resets[i, b]``. Returns ``outputs: (T, B, output_size)`` and
        the state after the last step.
        """
        p, training = self.awd, self.training
        if self.embedding is None:
            features = inputs
        else:
            features = awd.embed(self.masks, self.embedding, inputs, p["embedding"], training)
        features = awd.locked(self.masks, "input", self.dropout(features), p["input"], training)
        batch = features.shape[1]
        if state is None:
            state = self.initial_state(batch, features.device, features.dtype)
        hidden = to_rnn_layout(state)
        if resets is not None and not bool(resets.any()):  # a CPU-GPU sync point
            resets = None
        initial = None
        if resets is not None:
            initial = to_rnn_layout(self.initial_state(batch, features.device, features.dtype))
        if self.layers and training:
            outputs, final = self.run_layers(features, hidden, initial, resets)
        else:
            rnn: Layers = self.rnn
            if training and p["weight"]:
                weights = awd.drop_weights(
                    self.masks, dict(self.rnn.named_parameters()), p["weight"]
                )
                rnn = with_weights(self.rnn, weights)
            outputs, final = self.run_with_resets(rnn, features, hidden, initial, resets)
        dropped = self.dropout(awd.locked(self.masks, "output", outputs, p["output"], training))
        if training:
            self.penalties.record(outputs, dropped, resets)
        return self.head(dropped), from_rnn_layout(final)

    def run_layers(
        self,
        features: Tensor,
        hidden: RNNState,
        initial: RNNState | None,
        resets: Tensor | None,
    ) -> tuple[Tensor, RNNState]:
        """The layers one at a time, with locked dropout between them (states ``(L, B,
        H)``, each layer's slice ``[layer : layer + 1]``)."""
        outputs, finals = features, []
        weights = awd.drop_weights(
            self.masks, dict(self.rnn.named_parameters()), self.awd["weight"]
        )
        for layer, stand_in in enumerate(self.layers):
            if layer > 0:
                outputs = self.dropout(outputs)  # as nn.LSTM's dropout between layers
                outputs = awd.locked(
                    self.masks, f"hidden{layer}", outputs, self.awd["hidden"], True
                )
            own = {
                f"{name.rsplit('_l', 1)[0]}_l0": value
                for name, value in weights.items()
                if name.rsplit("_l", 1)[1] == str(layer)
            }
            pick = functools.partial(map_pair, lambda s, i=layer: s[i : i + 1])
            outputs, final = self.run_with_resets(
                with_weights(stand_in, own),
                outputs,
                pick(hidden),
                None if initial is None else pick(initial),
                resets,
            )
            finals.append(final)
        return outputs, map_pair(lambda *parts: torch.cat(parts), *finals)

    def run_with_resets(
        self,
        rnn: Layers,
        features: Tensor,
        hidden: RNNState,
        initial: RNNState | None,
        resets: Tensor | None,
    ) -> tuple[Tensor, RNNState]:
        """``rnn`` (the layers, as a function of inputs and state) over ``features:
        (T, B, F)`` with resets, states in PyTorch's ``(L, B, H)`` layout, by
        ``reset_strategy`` (see the class)."""
        if resets is None or initial is None:
            return rnn(features, hidden)
        strategy = self.reset_strategy
        if strategy == "auto":
            strategy = "packed" if features.is_cuda else "split"
        if strategy == "split":
            return run_split(rnn, features, hidden, initial, resets)
        segments = Segments.from_resets(resets)
        starts = map_pair(segments.start_state, hidden, initial)
        chunk_steps = None if features.is_cuda else CPU_CHUNK_STEPS
        outputs, final = segments.run(rnn, features, starts, chunk_steps)
        return outputs, map_pair(segments.end_state, final)


def with_weights(rnn: nn.RNNBase, weights: dict[str, Tensor]) -> Layers:
    """``rnn`` as a function of inputs and state that runs with ``weights`` in place
    of its own parameters (dropped weights, or one layer of a stack)."""

    def run(inputs: Tensor, hidden: RNNState) -> tuple[Tensor, RNNState]:
        return functional_call(rnn, weights, (inputs, hidden))

    return run


def parse_init(init: str) -> float | None:
    """The bound A of ``"uniform:A"``, ``None`` for the other choices of ``INITS``;
    raises a one-line error for anything else."""
    if init in ("torch", "orthogonal"):
        return None
    name, _, value = init.partition(":")
    try:
        bound = float(value) if name == "uniform" else math.nan
    except ValueError:
        bound = math.nan
    if not 0.0 < bound < math.inf:
        raise TBPTTError(
            f"init {init!r} is unknown: choose torch, orthogonal or uniform:A with a "
            "finite A > 0 (uniform:0.1 is pytorch/examples')"
        )
    return bound


def run_split(
    rnn: Layers, features: Tensor, hidden: RNNState, initial: RNNState, resets: Tensor
) -> tuple[Tensor, RNNState]:
    """One fused call between consecutive steps where some stream resets; at those
    steps the resetting streams' states are replaced by ``initial`` (``torch.where``
    passes no gradient back across the reset)."""
    reset_steps, pieces = reset_pieces(resets)  # a CPU-GPU sync
    outputs = []
    for start, end in pieces:
        if start in reset_steps:
            flags = resets[start].view(1, -1, 1)
            hidden = map_pair(lambda i, h, f=flags: torch.where(f, i, h), initial, hidden)
        piece, hidden = rnn(features[start:end], hidden)
        outputs.append(piece)
    return torch.cat(outputs), hidden


def map_pair(fn: Callable[..., Tensor], *states: RNNState) -> RNNState:
    """Apply ``fn`` to a tensor state, or to each of the LSTM's ``(h, c)``."""
    if isinstance(states[0], tuple):
        h, c = (fn(*parts) for parts in zip(*states, strict=True))
        return h, c
    return fn(*states)


def to_rnn_layout(state: RNNState) -> RNNState:
    """Batch-first ``(B, L, H)`` to PyTorch's ``(L, B, H)``, contiguous for cuDNN."""
    return map_pair(lambda s: s.transpose(0, 1).contiguous(), state)


def from_rnn_layout(state: RNNState) -> RNNState:
    """PyTorch's ``(L, B, H)`` back to batch-first ``(B, L, H)``."""
    return map_pair(lambda s: s.transpose(0, 1), state)


def check_config(
    cell: str,
    hidden_size: int,
    vocab_size: int | None,
    input_size: int | None,
    num_layers: int,
    dropout: float,
) -> None:
    """Raise a one-line error for an impossible network configuration."""
    if cell not in CELLS:
        raise TBPTTError(f"unknown cell {cell!r}: choose one of {', '.join(CELLS)}")
    if (vocab_size is None) == (input_size is None):
        raise TBPTTError("give exactly one of vocab_size (token ids in) and input_size (features)")
    for name, size in (
        ("hidden_size", hidden_size),
        ("num_layers", num_layers),
        ("vocab_size", vocab_size),
        ("input_size", input_size),
    ):
        if size is not None and size < 1:
            raise TBPTTError(f"{name} must be >= 1, got {size}")
    check_probability("dropout", dropout)


class Elman(RecurrentNetwork):
    """Elman network (tanh RNN): ``h_i = tanh(W_ih x_i + b_ih + W_hh h_{i-1} + b_hh)``."""

    def __init__(self, hidden_size: int, **kwargs: Any) -> None:
        super().__init__("elman", hidden_size, **kwargs)


class LSTM(RecurrentNetwork):
    """LSTM network (Hochreiter & Schmidhuber 1997, with forget gates); state ``(h, c)``."""

    def __init__(self, hidden_size: int, **kwargs: Any) -> None:
        super().__init__("lstm", hidden_size, **kwargs)


class GRU(RecurrentNetwork):
    """GRU network (Cho et al. 2014)."""

    def __init__(self, hidden_size: int, **kwargs: Any) -> None:
        super().__init__("gru", hidden_size, **kwargs)
