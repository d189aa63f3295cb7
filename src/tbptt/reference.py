"""BPTT and TBPTT(k1, k2) for a one-layer Elman network, from the equations in NumPy.

No autograd: every derivative below is written out by hand in float64, so this module
is the test oracle for the torch engine and can be read as teaching material. The
definitions it follows are those of ``docs/semantics.md``.

Forward recurrence (time-major, steps i = 0 .. T-1)::

    h_{-1} = h0 (or zeros)
    z_i    = 0 if resets[i] else h_{i-1}          reset: a new sequence starts at i
    a_i    = W_ih x_i + b_ih + W_hh z_i + b_hh
    h_i    = tanh(a_i)
    y_i    = W_out h_i + b_out
    l_i    = loss(y_i, target_i)                   one number per step and stream

Window n of TBPTT(k1, k2) runs steps ``[s_n, t_n)`` and takes its loss over
``[t_{n-1}, t_n)``, where ``t_n = min(n * k1, T)`` and ``s_n = max(t_{n-1} - (k2 - k1), 0)``;
its loss is the masked mean ``L_n = sum(l * m) / sum(m)`` over those loss steps and all
streams. Backward recurrence of window n, for i = t_n - 1 down to s_n::

    dL/dy_i     = d L_n / d y_i                    zero outside the loss steps
    dL/dh_i     = W_out^T dL/dy_i + dL/dh_i (from step i+1)
    dL/da_i     = (1 - h_i^2) * dL/dh_i            tanh' = 1 - tanh^2
    dL/dW_ih   += dL/da_i x_i^T      dL/dW_hh += dL/da_i z_i^T
    dL/db_ih   += dL/da_i            dL/db_hh += dL/da_i
    dL/dW_out  += dL/dy_i h_i^T      dL/db_out += dL/dy_i
    dL/dh_{i-1} = W_hh^T dL/da_i, set to zero for streams with resets[i]

Where truncation cuts: the recurrence stops at i = s_n. The state entering step s_n is
the forward-pass state at the same parameters, taken as a constant, so the last
``dL/dh_{s_n - 1}`` is dropped. A reset cuts the same chain inside a window, one stream
at a time. With k1 = k2 = T there is one window and nothing is cut: full BPTT.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

TORCH_NAMES = {
    "W_ih": "rnn.weight_ih_l0",
    "W_hh": "rnn.weight_hh_l0",
    "b_ih": "rnn.bias_ih_l0",
    "b_hh": "rnn.bias_hh_l0",
    "W_out": "head.weight",
    "b_out": "head.bias",
}
"""Our parameter name -> the name of the same parameter in ``tbptt.models.Elman``."""

LOSSES = ("mse", "cross_entropy")


@dataclass
class ElmanParams:
    """Parameters of the Elman network, float64, shaped as in ``torch.nn.RNN``/``Linear``."""

    W_ih: np.ndarray
    """(H, F) input-to-hidden weights."""
    W_hh: np.ndarray
    """(H, H) hidden-to-hidden weights."""
    b_ih: np.ndarray
    """(H,) input-to-hidden bias."""
    b_hh: np.ndarray
    """(H,) hidden-to-hidden bias."""
    W_out: np.ndarray
    """(O, H) output weights."""
    b_out: np.ndarray
    """(O,) output bias."""

    @classmethod
    def random(
        cls,
        input_size: int,
        hidden_size: int,
        output_size: int,
        rng: np.random.Generator,
        scale: float = 0.5,
    ) -> ElmanParams:
        """Normal(0, scale^2) parameters, for tests."""
        shapes = {
            "W_ih": (hidden_size, input_size),
            "W_hh": (hidden_size, hidden_size),
            "b_ih": (hidden_size,),
            "b_hh": (hidden_size,),
            "W_out": (output_size, hidden_size),
            "b_out": (output_size,),
        }
        return cls(**{name: scale * rng.standard_normal(shape) for name, shape in shapes.items()})

    @classmethod
    def from_named(cls, named: dict[str, ArrayLike]) -> ElmanParams:
        """Build from a dict keyed by the torch names in ``TORCH_NAMES``."""
        missing = [t for t in TORCH_NAMES.values() if t not in named]
        if missing:
            raise ValueError(f"from_named: missing parameters {missing}; expected {TORCH_NAMES}")
        return cls(
            **{ours: np.asarray(named[t], dtype=np.float64) for ours, t in TORCH_NAMES.items()}
        )

    def as_dict(self) -> dict[str, np.ndarray]:
        """The arrays keyed by our names ("W_ih", ..., "b_out")."""
        return {name: getattr(self, name) for name in TORCH_NAMES}


def _run(
    params: ElmanParams, inputs: np.ndarray, h_start: np.ndarray, resets: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Run the recurrence from ``h_start`` (B, H) over ``inputs`` (T, B, F).

    Returns ``z`` (T, B, H), the state entering each step after resets, and ``h``
    (T, B, H), the state after each step.
    """
    steps, batch = inputs.shape[:2]
    hidden_size = params.W_hh.shape[0]
    z = np.zeros((steps, batch, hidden_size))
    h = np.zeros((steps, batch, hidden_size))
    state = h_start
    for i in range(steps):
        if resets is not None:
            state = np.where(resets[i][:, None], 0.0, state)
        z[i] = state
        a = inputs[i] @ params.W_ih.T + params.b_ih + state @ params.W_hh.T + params.b_hh
        state = h[i] = np.tanh(a)
    return z, h


def _initial_state(params: ElmanParams, batch: int, h0: np.ndarray | None) -> np.ndarray:
    hidden_size = params.W_hh.shape[0]
    if h0 is None:
        return np.zeros((batch, hidden_size))
    return np.asarray(h0, dtype=np.float64).reshape(batch, hidden_size)


def forward(
    params: ElmanParams,
    inputs: np.ndarray,
    h0: np.ndarray | None = None,
    resets: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the network.

    inputs: (T, B, F); h0: (B, H) or None for zeros; resets: (T, B) bool or None.
    Returns hidden states (T, B, H), ``h_i`` after step i, and outputs (T, B, O).
    """
    inputs = np.asarray(inputs, dtype=np.float64)
    resets = None if resets is None else np.asarray(resets, dtype=bool)
    _, hidden = _run(params, inputs, _initial_state(params, inputs.shape[1], h0), resets)
    return hidden, hidden @ params.W_out.T + params.b_out


def _log_softmax(outputs: np.ndarray) -> np.ndarray:
    shifted = outputs - outputs.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def element_losses(outputs: np.ndarray, targets: np.ndarray, loss: str = "mse") -> np.ndarray:
    """Loss per step and stream, (T, B).

    outputs: (T, B, O). "mse": targets (T, B, O), mean over O of (y - target)^2.
    "cross_entropy": targets (T, B) class indices, -log softmax(y)[target].
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    if loss == "mse":
        return ((outputs - np.asarray(targets, dtype=np.float64)) ** 2).mean(axis=-1)
    if loss == "cross_entropy":
        picked = np.take_along_axis(_log_softmax(outputs), np.asarray(targets)[..., None], -1)
        return -picked[..., 0]
    raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")


def _output_grad(outputs: np.ndarray, targets: np.ndarray, loss: str) -> np.ndarray:
    """d l_i,b / d y_i,b for every element, (T, B, O)."""
    if loss == "mse":
        return 2.0 * (outputs - np.asarray(targets, dtype=np.float64)) / outputs.shape[-1]
    if loss == "cross_entropy":
        probabilities = np.exp(_log_softmax(outputs))
        one_hot = np.eye(outputs.shape[-1])[np.asarray(targets)]
        return probabilities - one_hot
    raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")


def _check_k(k1: int, k2: int) -> None:
    for name, k in (("k1", k1), ("k2", k2)):
        if k < 1:
            raise ValueError(f"{name} must be >= 1, got {k}")
    if k1 > k2:
        raise ValueError(
            f"k1={k1} > k2={k2}: k1 is the stride between updates and k2 the number of steps "
            f"backpropagated, so TBPTT(k1, k2) needs 1 <= k1 <= k2"
        )


def window_spans(T: int, k1: int, k2: int | None = None) -> list[tuple[int, int, int]]:
    """The windows of TBPTT(k1, k2) over T steps as (s_n, t_{n-1}, t_n), in order.

    Window n runs steps [s_n, t_n) and takes its loss over [t_{n-1}, t_n), with
    t_n = min(n * k1, T) and s_n = max(t_{n-1} - (k2 - k1), 0). k2=None means k2 = k1.
    """
    k2 = k1 if k2 is None else k2
    _check_k(k1, k2)
    spans = []
    t_prev, n = 0, 1
    while t_prev < T:
        t_n = min(n * k1, T)
        spans.append((max(t_prev - (k2 - k1), 0), t_prev, t_n))
        t_prev, n = t_n, n + 1
    return spans


def _window_gradient(
    params: ElmanParams,
    inputs: np.ndarray,
    z: np.ndarray,
    hidden: np.ndarray,
    dloss_dy: np.ndarray,
    resets: np.ndarray | None,
    span: tuple[int, int, int],
) -> dict[str, np.ndarray]:
    """Backpropagate one window from t_n - 1 down to s_n.

    z, hidden: (T, B, H) from the forward pass; dloss_dy: (T, B, O), d L_n / d y_i,
    already zero outside the window's loss steps.
    """
    start, loss_start, end = span
    grads = {name: np.zeros_like(value) for name, value in params.as_dict().items()}
    dh_from_next = np.zeros_like(hidden[0])  # dL/dh_i arriving from step i+1
    for i in reversed(range(start, end)):
        dh = dh_from_next
        if i >= loss_start:
            grads["W_out"] += dloss_dy[i].T @ hidden[i]
            grads["b_out"] += dloss_dy[i].sum(axis=0)
            dh = dh + dloss_dy[i] @ params.W_out
        da = (1.0 - hidden[i] ** 2) * dh
        grads["W_ih"] += da.T @ inputs[i]
        grads["W_hh"] += da.T @ z[i]
        grads["b_ih"] += da.sum(axis=0)
        grads["b_hh"] += da.sum(axis=0)
        dh_from_next = da @ params.W_hh
        if resets is not None:
            dh_from_next[resets[i]] = 0.0  # a reset: no gradient crosses into step i-1
    return grads  # the loop stops at s_n: the state entering s_n is a constant


def gradients(
    params: ElmanParams,
    inputs: np.ndarray,
    targets: np.ndarray,
    k1: int | None,
    k2: int | None = None,
    *,
    h0: np.ndarray | None = None,
    resets: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    loss: str = "mse",
) -> list[dict[str, np.ndarray]]:
    """The gradient dL_n/dθ of every TBPTT(k1, k2) window at fixed parameters, in order.

    inputs: (T, B, F); targets: (T, B, O) floats for "mse", (T, B) ints for
    "cross_entropy"; h0: (B, H); resets, mask: (T, B) bool. k1=None is full BPTT
    (one window, k1 = k2 = T); k2=None means k2 = k1. Each dict is keyed like
    ``ElmanParams`` ("W_ih", ..., "b_out"). A window whose mask is all zero gets zeros.
    """
    inputs = np.asarray(inputs, dtype=np.float64)
    steps, batch = inputs.shape[:2]
    if k1 is None:
        if k2 is not None:
            raise ValueError(f"k2={k2} given without k1: pass k1 too, or neither for full BPTT")
        spans = [(0, 0, steps)]
    else:
        spans = window_spans(steps, k1, k2)
    resets = None if resets is None else np.asarray(resets, dtype=bool)
    weights = np.ones((steps, batch)) if mask is None else np.asarray(mask, dtype=np.float64)
    z, hidden = _run(params, inputs, _initial_state(params, batch, h0), resets)
    outputs = hidden @ params.W_out.T + params.b_out
    dl_dy = _output_grad(outputs, targets, loss)
    result = []
    for span in spans:
        _, loss_start, end = span
        window_weights = np.zeros((steps, batch))
        window_weights[loss_start:end] = weights[loss_start:end]
        total = window_weights.sum()
        if total > 0:  # L_n = sum(l * m) / sum(m); an all-padding window has L_n = 0
            window_weights /= total
        dloss_dy = window_weights[..., None] * dl_dy
        result.append(_window_gradient(params, inputs, z, hidden, dloss_dy, resets, span))
    return result
