"""Long-dependency tasks, generated reproducibly from a seed.

Each generator returns a :class:`TaskData` of ``N`` independent sequences, time-major,
one stream each (no resets needed), and each task has a metric from the literature,
computed from the model's outputs and the data. The dependency length is a parameter
(``length``, ``delay``), so the trade-off between the truncation length k2 and credit
assignment over long lags can be measured: no gradient reaches an input from a loss
step more than k2 - 1 steps after it.

    data = tasks.adding(256, 200, seed=0)       # markers up to 199 steps before the target
    model = tbptt.models.LSTM(64, input_size=data.input_size, output_size=1)
    outputs, _ = model(data.inputs)
    tasks.adding_solved(outputs, data)          # H&S 1997: every |error| < 0.04

Token tasks pair with ``LSTM(H, vocab_size=data.input_size, output_size=data.num_classes)``.
The same seed gives identical data; use different seeds for training and test sets.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from tbptt.errors import TBPTTError, quoted


@dataclass(frozen=True, eq=False)
class TaskData:
    """``N`` independent sequences of one task, time-major."""

    inputs: Tensor
    """``(T, N)`` int64 token ids or ``(T, N, F)`` float32 features."""
    targets: Tensor
    """``(T, N)`` int64 classes or ``(T, N, O)`` float32; finite also where masked."""
    mask: Tensor
    """``(T, N)`` bool: the steps that carry a loss and count in the metrics."""
    num_classes: int | None
    """Output units for class or set targets (the model's ``output_size``); None if real."""
    input_size: int | None
    """The input vocabulary size for token inputs, F for real-valued inputs."""

    def __post_init__(self) -> None:
        steps = tuple(self.inputs.shape[:2])
        if self.mask.dtype != torch.bool or tuple(self.mask.shape) != steps:
            raise TBPTTError(f"mask must be a bool tensor of shape {steps}, like inputs' (T, N)")
        if tuple(self.targets.shape[:2]) != steps:
            raise TBPTTError(f"targets must start with inputs' (T, N) = {steps}")


def _check_int(name: str, value: object, minimum: int, why: str = "") -> int:
    """``value`` if it is an int >= ``minimum``, else a TBPTTError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise TBPTTError(f"{name} must be an integer >= {minimum}{why}, got {quoted(value)}")
    return value


def _rng(seed: object) -> np.random.Generator:
    return np.random.default_rng(_check_int("seed", seed, 0))


def _check_outputs(outputs: Tensor, data: TaskData, size: int) -> Tensor:
    """``outputs`` detached, on the data's device, after checking it is ``(T, N, size)``."""
    expected = (*data.mask.shape, size)
    if not isinstance(outputs, Tensor) or tuple(outputs.shape) != expected:
        got = tuple(outputs.shape) if isinstance(outputs, Tensor) else type(outputs).__name__
        raise TBPTTError(f"outputs must have shape (T, N, {size}) = {expected}, got {got}")
    return outputs.detach().to(data.mask.device)


# Adding problem.


def adding(num_sequences: int, length: int, *, seed: int) -> TaskData:
    """The adding problem in the variant of Le et al. (2015) and Arjovsky et al. (2016).

    Hochreiter & Schmidhuber (1997, experiment 4) introduced it; this is the common
    modern form: each step has two features, a value drawn uniformly from [0, 1) and a
    marker; exactly two steps are marked (1.0), one uniformly in the first half
    ``[0, length // 2)`` and one in the second half. The target, at the last step only
    (mask true only there), is the sum of the two marked values; the first marker lies
    between ``length - length // 2`` and ``length - 1`` steps before it.

    Success: MSE far below 0.167, the MSE of always predicting 1 (the variance of the
    sum of two U(0, 1)). H&S count a sequence correct when the absolute error at its
    end is below 0.04 (on their target, scaled to [0, 1]) and report errors on a test
    set of 2560 sequences; see :func:`adding_solved`.

    Returns ``inputs: (length, N, 2)``, ``targets: (length, N, 1)`` float32.
    """
    _check_int("num_sequences", num_sequences, 1)
    _check_int("length", length, 2, " (one marker in each half of the sequence)")
    rng = _rng(seed)
    values = rng.random((length, num_sequences), dtype=np.float32)
    first = rng.integers(0, length // 2, num_sequences)
    second = rng.integers(length // 2, length, num_sequences)
    streams = np.arange(num_sequences)
    markers = np.zeros_like(values)
    markers[first, streams] = markers[second, streams] = 1.0
    targets = np.zeros((length, num_sequences, 1), dtype=np.float32)
    targets[-1, :, 0] = values[first, streams] + values[second, streams]
    mask = np.zeros((length, num_sequences), dtype=bool)
    mask[-1] = True
    inputs = np.stack([values, markers], axis=-1)
    return _task((inputs, targets, mask), num_classes=None, input_size=2)


def adding_mse(outputs: Tensor, data: TaskData) -> float:
    """Mean squared error at the target steps; ``outputs: (T, N, 1)``. Baseline: 0.167."""
    outputs = _check_outputs(outputs, data, 1)
    errors = (outputs - data.targets)[..., 0][data.mask]
    return float(errors.square().mean())


def adding_solved(outputs: Tensor, data: TaskData, *, tolerance: float = 0.04) -> bool:
    """Whether every sequence's absolute error at its target step is below ``tolerance``.

    H&S (1997) use 0.04 on a target of width 1; applied here to a sum of width 2, the
    default is twice as strict in relative terms (0.08 matches theirs).
    """
    outputs = _check_outputs(outputs, data, 1)
    errors = (outputs - data.targets)[..., 0][data.mask]
    return bool((errors.abs() < tolerance).all())


# Copying memory problem.

BLANK = 0
"""The blank token of the copy task; the symbols are 1..symbols, the go marker symbols + 1."""


def copy_memory(
    num_sequences: int, delay: int, *, symbols: int = 8, copy_length: int = 10, seed: int
) -> TaskData:
    """The copying memory problem of Arjovsky et al. (2016), after the long-lag memory
    tasks of Hochreiter & Schmidhuber (1997).

    Input: ``copy_length`` symbols drawn uniformly from 1..``symbols``, then ``delay``
    blanks, a go marker (``symbols + 1``), and ``copy_length`` blanks. Target: blanks
    until the go marker (inclusive), then the symbols in order. Every symbol must be
    held for ``copy_length + delay + 1`` steps. ``T = delay + 1 + 2 * copy_length``;
    Arjovsky et al.'s T is ``delay + 1``.

    The mask covers every step (their variant; train on the output segment only with
    ``mask = data.targets != BLANK``). The memoryless baseline, blanks then a uniform
    guess, has cross-entropy ``copy_length * log(symbols) / T`` (10 log 8 / (T' + 20)
    in their notation). Success: :func:`copy_memory_accuracy` on the copied symbols
    (chance ``1 / symbols``, solved at 1.0).

    Returns ``inputs, targets: (T, N)`` int64 over ``symbols + 2`` tokens.
    """
    _check_int("num_sequences", num_sequences, 1)
    _check_int("delay", delay, 0, " (blank steps between the symbols and the go marker)")
    _check_int("symbols", symbols, 1)
    _check_int("copy_length", copy_length, 1)
    rng = _rng(seed)
    payload = rng.integers(1, symbols + 1, (copy_length, num_sequences))
    length = delay + 1 + 2 * copy_length
    inputs = np.full((length, num_sequences), BLANK, dtype=np.int64)
    inputs[:copy_length] = payload
    inputs[copy_length + delay] = symbols + 1
    targets = np.full_like(inputs, BLANK)
    targets[-copy_length:] = payload
    mask = np.ones((length, num_sequences), dtype=bool)
    return _task((inputs, targets, mask), num_classes=symbols + 2, input_size=symbols + 2)


def copy_memory_accuracy(outputs: Tensor, data: TaskData) -> float:
    """Fraction of copied symbols whose logit is the largest; ``outputs: (T, N, C)``."""
    outputs = _check_outputs(outputs, data, _classes(data))
    copied = (data.targets != BLANK) & data.mask
    return float((outputs.argmax(-1) == data.targets)[copied].float().mean())


# Delayed recall.


def delayed_recall(
    num_sequences: int, delay: int, *, steps: int | None = None, symbols: int = 4, seed: int
) -> TaskData:
    """Recall the symbol seen ``delay`` steps ago, at every step: the simplest task
    with a dependency of known length, the one the ``tbptt demo`` trains on.

    Input: ``steps`` symbols (default ``10 * delay``) drawn uniformly from
    0..``symbols - 1``. Target at step t: the input of step ``t - delay`` (mask false
    for the first ``delay`` steps, which have none). Every target depends on exactly
    one input ``delay`` steps back, so under TBPTT(k1, k2) a loss step can learn it
    only if its history (between ``k2 - k1`` and ``k2 - 1`` steps) reaches back
    ``delay`` steps: never when ``k2 <= delay``. Chance accuracy is ``1 / symbols``
    (:func:`delayed_recall_accuracy`); solved at 1.0.

    Returns ``inputs, targets: (steps, N)`` int64 over ``symbols`` tokens.
    """
    _check_int("num_sequences", num_sequences, 1)
    _check_int("delay", delay, 1, " (steps between a symbol and its recall)")
    _check_int("symbols", symbols, 2)
    steps = _check_int("steps", 10 * delay if steps is None else steps, delay + 1)
    inputs = _rng(seed).integers(0, symbols, (steps, num_sequences))
    targets = np.roll(inputs, delay, axis=0)
    mask = (np.arange(steps) >= delay)[:, None].repeat(num_sequences, axis=1)
    return _task((inputs, targets, mask), num_classes=symbols, input_size=symbols)


def delayed_recall_accuracy(outputs: Tensor, data: TaskData) -> float:
    """Fraction of steps with a target whose logit is the largest; ``outputs: (T, N, C)``."""
    outputs = _check_outputs(outputs, data, _classes(data))
    return float((outputs.argmax(-1) == data.targets)[data.mask].float().mean())


# Temporal order problem.

TEMPORAL_ORDER_TOKENS = "abcdXYEB"
"""Input tokens 0..7: distractors a-d, the relevant X and Y, start E, trigger B."""


def temporal_order(num_sequences: int, length: int, *, seed: int) -> TaskData:
    """The temporal order problem, task 6a of Hochreiter & Schmidhuber (1997).

    A sequence starts with E, ends with the trigger B and is otherwise random
    distractors a-d, except for X or Y at two steps ``t1`` in ``[length // 10,
    length // 5]`` and ``t2`` in ``[length // 2, 3 * length // 5]`` (H&S: lengths 100
    to 110, t1 in 10..20, t2 in 50..60; here every sequence has ``length`` steps). The
    class, at the last step only, is the order: XX -> 0 (their Q), XY -> 1 (R), YX -> 2
    (S), YY -> 3 (U). X/Y must be held at least ``length - 1 - 3 * length // 5`` steps.

    Success: H&S count a sequence correct when every output unit's absolute error at
    the end is below 0.3, and report errors on 2560 test sequences (at most 3 wrong);
    see :func:`temporal_order_correct`, :func:`temporal_order_solved` and
    :func:`temporal_order_accuracy` (chance 1/4).

    Returns ``inputs, targets: (length, N)`` int64; 8 input tokens, 4 classes.
    """
    _check_int("num_sequences", num_sequences, 1)
    _check_int("length", length, 10, " (so X/Y at step length // 10 >= 1 follows the start)")
    rng = _rng(seed)
    inputs = rng.integers(0, 4, (length, num_sequences))
    inputs[0], inputs[-1] = 6, 7
    t1 = rng.integers(length // 10, length // 5 + 1, num_sequences)
    t2 = rng.integers(length // 2, 3 * length // 5 + 1, num_sequences)
    first, second = rng.integers(0, 2, (2, num_sequences))
    streams = np.arange(num_sequences)
    inputs[t1, streams] = 4 + first
    inputs[t2, streams] = 4 + second
    targets = np.zeros_like(inputs)
    targets[-1] = 2 * first + second
    mask = np.zeros((length, num_sequences), dtype=bool)
    mask[-1] = True
    return _task((inputs, targets, mask), num_classes=4, input_size=8)


def temporal_order_accuracy(outputs: Tensor, data: TaskData) -> float:
    """Fraction of sequences whose largest logit at the last step is their class."""
    outputs = _check_outputs(outputs, data, _classes(data))
    return float((outputs.argmax(-1) == data.targets)[data.mask].float().mean())


def temporal_order_correct(outputs: Tensor, data: TaskData, *, max_error: float = 0.3) -> Tensor:
    """``(N,)`` bool, H&S's criterion per sequence on the softmax of ``outputs: (T, N, 4)``
    logits: each class probability at the last step is within ``max_error`` of the
    one-hot target."""
    outputs = _check_outputs(outputs, data, _classes(data))
    probabilities = outputs.softmax(-1)[data.mask]
    one_hot = torch.nn.functional.one_hot(data.targets[data.mask], probabilities.shape[-1])
    return ((probabilities - one_hot).abs() < max_error).all(-1)


def temporal_order_solved(outputs: Tensor, data: TaskData, *, max_error: float = 0.3) -> bool:
    """H&S's criterion met in every sequence (see :func:`temporal_order_correct`)."""
    return bool(temporal_order_correct(outputs, data, max_error=max_error).all())


# Embedded Reber grammar.

REBER_SYMBOLS = "BTPSXVE"
"""The 7 symbols, token ids 0..6; the targets' last axis follows this order."""
_REBER = {1: ("T2", "P3"), 2: ("S2", "X4"), 3: ("T3", "V5"), 4: ("X3", "S6"), 5: ("P4", "V6")}
"""The Reber grammar: node -> its two edges (symbol, next node); node 6 emits E."""


def _embedded_reber_string(rng: np.random.Generator) -> tuple[str, list[str]]:
    """One string and, per symbol, the symbols that may follow the prefix ending there."""
    branch = "TP"[rng.integers(2)]
    string, legal = ["B", branch, "B"], ["TP", "B", "TP"]
    node = 1
    while node != 6:
        edge = _REBER[node][rng.integers(2)]
        node = int(edge[1])
        string.append(edge[0])
        legal.append("E" if node == 6 else "".join(e[0] for e in _REBER[node]))
    string += ["E", branch, "E"]
    legal += [branch, "E", ""]
    return "".join(string), legal


def embedded_reber(num_sequences: int, *, seed: int) -> TaskData:
    """Strings of the embedded Reber grammar, experiment 1 of Hochreiter & Schmidhuber
    (1997) (grammar of Cleeremans et al. 1989): ``B (T|P) <Reber string> (T|P) E``, the
    two T/P equal, every choice 50/50.

    Next-symbol prediction: at each step the target is the set of legal next symbols,
    multi-hot over ``REBER_SYMBOLS`` (empty after the final E); train with binary
    cross-entropy per unit, e.g. ``binary_cross_entropy_with_logits(outputs, targets,
    reduction="none").mean(-1)``. The mask covers each string's length L (at least 9),
    padding after it. The long dependency: the prediction at step L - 3 must recall the
    T/P read at step 1, L - 4 steps back; it grows with L, which is not bounded, but
    long strings are rare (each loop of the grammar repeats with probability 1/2).

    Success (H&S): every symbol of every string predicted correctly, on 256 training
    and 256 test strings (test strings not in the training set); see
    :func:`reber_accuracy` and :func:`reber_penultimate_accuracy`.

    Returns ``inputs: (T, N)`` int64, ``targets: (T, N, 7)`` float32, T the longest L.
    """
    _check_int("num_sequences", num_sequences, 1)
    rng = _rng(seed)
    drawn = [_embedded_reber_string(rng) for _ in range(num_sequences)]
    steps = max(len(string) for string, _ in drawn)
    inputs = np.zeros((steps, num_sequences), dtype=np.int64)
    targets = np.zeros((steps, num_sequences, len(REBER_SYMBOLS)), dtype=np.float32)
    mask = np.zeros((steps, num_sequences), dtype=bool)
    for column, (string, legal) in enumerate(drawn):
        inputs[: len(string), column] = [REBER_SYMBOLS.index(s) for s in string]
        for step, allowed in enumerate(legal):
            targets[step, column, [REBER_SYMBOLS.index(s) for s in allowed]] = 1.0
        mask[: len(string), column] = True
    return _task((inputs, targets, mask), num_classes=7, input_size=7)


def _reber_correct_steps(outputs: Tensor, data: TaskData, threshold: float | None) -> Tensor:
    """``(T, N)`` bool: the step's legal set is predicted (see :func:`reber_accuracy`)."""
    outputs = _check_outputs(outputs, data, len(REBER_SYMBOLS))
    legal = data.targets > 0.5
    if threshold is not None:
        return ((outputs > threshold) == legal).all(-1)
    lowest_legal = torch.where(legal, outputs, math.inf).amin(-1)
    highest_illegal = torch.where(legal, -math.inf, outputs).amax(-1)
    return lowest_legal > highest_illegal


def reber_accuracy(outputs: Tensor, data: TaskData, *, threshold: float | None = None) -> float:
    """Fraction of strings with every step predicted correctly; H&S's success is 1.0.

    With ``threshold=None`` (H&S 1997), a step is correct when the outputs of all legal
    next symbols are larger than all the others ("always the most active ones"); with
    a threshold, when exactly the legal symbols' outputs exceed it (0.5 on sigmoid
    activations, as in later work; 0.0 on logits). ``outputs: (T, N, 7)``.
    """
    correct = _reber_correct_steps(outputs, data, threshold) | ~data.mask
    return float(correct.all(0).float().mean())


def reber_penultimate_accuracy(
    outputs: Tensor, data: TaskData, *, threshold: float | None = None
) -> float:
    """Fraction of strings whose symbol before last (the T/P that repeats the second
    symbol, the long dependency) is predicted correctly, by the rule of
    :func:`reber_accuracy`; chance is 1/2."""
    correct = _reber_correct_steps(outputs, data, threshold)
    step = data.mask.sum(0) - 3
    return float(correct[step, torch.arange(correct.shape[1])].float().mean())


# Mackey-Glass series.

_MG_BETA, _MG_GAMMA, _MG_POWER = 0.2, 0.1, 10
_MG_DT, _MG_SUBSTEPS, _MG_WASHOUT = 0.1, 10, 1000
"""Integration step, integration steps per sample (sampled every 1.0), washout samples."""


def _mackey_glass_series(samples: int, tau_steps: int, start: float) -> np.ndarray:
    """``samples`` values, one per time unit after the washout, from ``x(t) = start``
    for ``t <= 0``; RK4 with the delayed value linearly interpolated at half steps."""
    beta, gamma, power, dt = _MG_BETA, _MG_GAMMA, _MG_POWER, _MG_DT
    total = (_MG_WASHOUT + samples) * _MG_SUBSTEPS
    x = [start] * (tau_steps + 1) + [0.0] * total

    def slope(now: float, delayed: float) -> float:
        return beta * delayed / (1.0 + delayed**power) - gamma * now

    for k in range(tau_steps, tau_steps + total):  # pure floats: fastest in CPython
        now, old, next_old = x[k], x[k - tau_steps], x[k - tau_steps + 1]
        mid = 0.5 * (old + next_old)
        k1 = slope(now, old)
        k2 = slope(now + 0.5 * dt * k1, mid)
        k3 = slope(now + 0.5 * dt * k2, mid)
        k4 = slope(now + dt * k3, next_old)
        x[k + 1] = now + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    first = tau_steps + _MG_WASHOUT * _MG_SUBSTEPS
    return np.array(x[first::_MG_SUBSTEPS][:samples], dtype=np.float32)


def mackey_glass(length: int, *, horizon: int = 1, tau: float = 17, seed: int) -> TaskData:
    """The Mackey-Glass series (Mackey & Glass 1977), to forecast ``horizon`` steps ahead.

    ``dx/dt = 0.2 x(t - tau) / (1 + x(t - tau)^10) - 0.1 x(t)``, chaotic for the standard
    ``tau = 17`` (values in about [0.4, 1.35]). Integrated by fourth-order Runge-Kutta
    with step 0.1 (the delayed term linearly interpolated at half steps), from a
    constant history ``x(t) = x0``, ``x0`` uniform in [0.5, 1.5) by the seed; sampled
    every 1.0 time unit after a washout of 1000 time units.

    Inputs ``x_t``, targets ``x_{t + horizon}``, every step masked in. Success:
    :func:`mackey_glass_nrmse` (1.0 for predicting the mean), as used for horizon 84
    by Jaeger & Haas (2004) and with LSTM by Gers, Eck & Schmidhuber (2001).

    Returns ``inputs, targets: (length, 1, 1)`` float32.
    """
    _check_int("length", length, 1)
    _check_int("horizon", horizon, 1)
    finite = isinstance(tau, int | float) and math.isfinite(tau)
    tau_steps = round(tau / _MG_DT) if finite else 0
    if tau_steps < 1 or not math.isclose(tau_steps * _MG_DT, tau):
        raise TBPTTError(f"tau must be a positive multiple of the step {_MG_DT}, got {quoted(tau)}")
    start = float(_rng(seed).uniform(0.5, 1.5))
    series = _mackey_glass_series(length + horizon, tau_steps, start)
    inputs = series[:length].reshape(length, 1, 1)
    targets = series[horizon:].reshape(length, 1, 1)
    mask = np.ones((length, 1), dtype=bool)
    return _task((inputs, targets, mask), num_classes=None, input_size=1)


def mackey_glass_nrmse(outputs: Tensor, data: TaskData) -> float:
    """Root mean squared error over the masked steps divided by the targets' standard
    deviation; ``outputs: (T, N, 1)``. Predicting the mean gives 1.0, a perfect model 0."""
    outputs = _check_outputs(outputs, data, 1)
    targets = data.targets[data.mask]
    error = (outputs[data.mask] - targets).square().mean().sqrt()
    return float(error / targets.std(correction=0))


def _classes(data: TaskData) -> int:
    if data.num_classes is None:
        raise TBPTTError("this metric needs a token task's data (num_classes is None)")
    return data.num_classes


_Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]


def _task(arrays: _Arrays, *, num_classes: int | None, input_size: int) -> TaskData:
    """``(inputs, targets, mask)`` as tensors that share the arrays' memory."""
    inputs, targets, mask = (torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
    return TaskData(inputs, targets, mask, num_classes, input_size)


TASKS: dict[str, Callable[..., TaskData]] = {
    "adding": adding,
    "copy": copy_memory,
    "recall": delayed_recall,
    "temporal_order": temporal_order,
    "embedded_reber": embedded_reber,
    "mackey_glass": mackey_glass,
}
"""Task name -> generator, for ``tbptt train --task NAME``."""

METRICS: dict[str, Callable[[Tensor, TaskData], float]] = {
    "adding": adding_mse,
    "copy": copy_memory_accuracy,
    "recall": delayed_recall_accuracy,
    "temporal_order": temporal_order_accuracy,
    "embedded_reber": reber_accuracy,
    "mackey_glass": mackey_glass_nrmse,
}
"""Task name -> its headline metric (MSE and NRMSE: lower is better; accuracy: higher)."""
