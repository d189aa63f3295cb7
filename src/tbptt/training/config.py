"""How to train: :class:`TrainConfig`, the settings of :class:`tbptt.training.trainer.Trainer`.

Every field has a docstring (the command line's help text, :mod:`tbptt.cli.runconfig`) and
is checked when the config is made, so a bad setting fails before a run starts. The
config also says how long the training batches are (:meth:`TrainConfig.batch_steps`).

The module imports torch only where a config is checked or used, so that the command
line builds its parser from :class:`TrainConfig` (``tbptt train --help``) without it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import types
import typing
from dataclasses import dataclass

from tbptt.errors import TBPTTError, check_non_negative, one_of, quoted

logger = logging.getLogger(__name__)

OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "ntasgd": "SGD"}
"""Each optimizer's name in ``torch.optim`` (ntasgd: SGD and the average of its
iterates, :mod:`tbptt.training.averaging`)."""
SCHEDULES = ("constant", "cosine", "plateau")
RANDOM_BATCH_WINDOWS = 8
"""Windows of mean length per training batch under randomised truncation (the
``k1_std`` docstring, the option's help, says 8)."""
MAX_SEED = 2**63 - 1
"""The largest seed: torch's and numpy's generators take it (and a rank added to it)."""
MAX_LR = 1e30
"""Above this, a float32 optimizer step overflows (Adam divides lr by 1 - 0.9)."""


def check_types(config: object) -> None:
    """Refuse a field of dataclass ``config`` whose value is not of its annotated type
    (``int``, ``float`` (an int too), ``str``, ``bool``, ``list[str]``, each maybe
    ``| None``): ``epochs=1.5`` or ``lr="0.1"`` fails here, in one line, not deep in
    training."""
    hints = typing.get_type_hints(type(config))
    for item in dataclasses.fields(config):  # type: ignore[arg-type]
        value, hint = getattr(config, item.name), hints[item.name]
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        if value is None and type(None) in args:
            continue
        if not any(of_type(value, arg) for arg in args if arg is not type(None)):
            names = " or ".join(type_name(arg) for arg in args)
            raise TBPTTError(
                f"{item.name} must be {names}, got {quoted(value)} ({type(value).__name__})"
            )


def of_type(value: object, hint: object) -> bool:
    """Whether ``value`` is of type ``hint`` as a config reads it (no bool for a number)."""
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if typing.get_origin(hint) is list:
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    return isinstance(value, hint) if isinstance(hint, type) else True


def type_name(hint: object) -> str:
    """``hint`` in words: an integer, a number, a string, ..."""
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return names.get(hint, "unset" if hint is type(None) else "a list of strings")  # type: ignore[call-overload]


def check_seed(name: str, seed: object) -> None:
    """Refuse a seed that is not an integer in [0, MAX_SEED]."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise TBPTTError(f"{name} must be an integer from 0 to 2**63 - 1, got {quoted(seed)}")


@dataclass
class TrainConfig:
    """How to train. Every field can be set from the command line or a TOML file."""

    k1: int | None = 64
    """Steps between parameter updates (the window stride); unset: full BPTT per batch."""
    k2: int | None = None
    """Steps a gradient flows back, k1 <= k2 (default k1: non-overlapping windows)."""
    k1_std: float | None = None
    """Randomised truncation (AWD-LSTM): draw each window's k1 from N(k1, k1_std)
    (from N(k1 / 2, k1_std) one time in 20), keep k2 - k1 steps of overlap, and scale
    that update's learning rate by the drawn k1 over k1 (unset: a fixed k1). The
    training data then comes in batches of 8 k1 steps, so the draws follow each
    other along the streams and only a batch's last window is cut short."""
    recompute_activations: bool = False
    """Keep only the state every ~sqrt(window) steps and recompute the rest in the
    backward pass: the same gradients in far less memory, one more forward pass
    (docs/memory.md; activation checkpointing)."""
    recompute_segment: int | None = None
    """With recompute_activations: steps between kept states (default: about the
    square root of the window's steps)."""
    checkpoint_activations: bool | None = None
    """Deprecated: the old name of recompute_activations (until the next release)."""
    checkpoint_segment: int | None = None
    """Deprecated: the old name of recompute_segment (until the next release)."""
    advise_every: int | None = None
    """Updates between rechoosing k2 from the gradient's truncation bias on the first
    validation batch (tbptt.diagnostics.choose_k2: the smallest of k1, 2 k1, 4 k1, ...
    within advise_tolerance of full BPTT); k1 stays. Unset: k2 stays fixed."""
    advise_tolerance: float = 0.95
    """With advise_every: the cosine to the full gradient that k2 must reach."""
    epochs: int = 1
    """Passes over the training streams."""
    max_windows: int | None = None
    """Stop after this many parameter updates (default: run all epochs)."""
    optimizer: str = "adam"
    """adam, adamw, sgd or ntasgd (AWD-LSTM's: SGD until the validation loss is worse
    than the best before the last nonmono evaluations, then evaluated and saved as
    the average of every iterate since)."""
    nonmono: int = 5
    """With ntasgd: the evaluations a worse validation loss is compared past."""
    lr: float = 2e-3
    """Learning rate."""
    weight_decay: float = 0.0
    """Weight decay of the optimizer."""
    clip_norm: float | None = 1.0
    """Clip the gradient's global norm to this (unset: no clipping)."""
    max_skips: int = 5
    """Updates skipped in a row (non-finite loss or gradient) after which the run rolls
    back to its last checkpoint and lowers the learning rate."""
    rollback_lr_factor: float = 0.5
    """Multiplies the learning rate at each rollback (between 0 and 1)."""
    max_rollbacks: int = 3
    """Rollbacks after which a run that still diverges stops with an error."""
    blowup: float | None = 3.0
    """An update whose loss is above this multiple of the run's first update's loss
    has diverged, though finite (char-rnn stops at 3x): it is skipped like a
    non-finite one (unset: only a non-finite loss has)."""
    schedule: str = "constant"
    """Learning-rate schedule: constant; cosine decay to zero over the run; or plateau:
    divide it by plateau_factor after every evaluation that does not improve on the
    best validation loss (pytorch/examples' word language model, Zaremba et al.)."""
    plateau_factor: float = 4.0
    """With the plateau schedule: what the learning rate is divided by (> 1)."""
    plateau_min_lr: float = 0.0
    """With the plateau schedule: the learning rate never falls below this."""
    eval_every: int = 0
    """Updates between evaluations on the validation streams (0: after each epoch)."""
    patience: int | None = None
    """Stop after this many evaluations without a better validation loss."""
    restore_best: bool = False
    """At the end of fit, load the weights of the best validation loss (the latest
    checkpoint keeps the last weights, to resume from); on by default for CSV runs."""
    log_every: int = 50
    """Updates between training log records."""
    checkpoint_every: int = 200
    """Updates between checkpoints (one is also written at the end and on a stop)."""
    seed: int = 0
    """Seeds dropout and every other random draw of training."""
    device: str = "cpu"
    """cpu, cuda or cuda:N (under torchrun, cuda is each process's own GPU)."""
    precision: str = "32"
    """32 (float32), bf16 (autocast to bfloat16) or fp16 (autocast to float16 with a
    grad scaler); parameters and optimizer state stay float32."""
    compile: bool = False
    """Run the training forward passes through torch.compile (the first windows
    compile, which takes a while)."""

    def __post_init__(self) -> None:
        from tbptt.devices import parse_device
        from tbptt.diagnostics.advice import check_tolerance
        from tbptt.engine.windows import check_truncation
        from tbptt.training.precision import check_precision

        check_types(self)
        check_truncation(self.k1, self.k2)
        self._rename("checkpoint_activations", "recompute_activations", False)
        self._rename("checkpoint_segment", "recompute_segment", None)
        segment = self.recompute_segment
        if segment is not None and (segment < 1 or not self.recompute_activations):
            raise TBPTTError(
                f"recompute_segment={segment} needs recompute_activations on and >= 1 steps"
            )
        if self.k1_std is not None and (self.k1 is None or not 0 <= self.k1_std < math.inf):
            raise TBPTTError(f"k1_std needs a k1 and must be >= 0 and finite, got {self.k1_std}")
        if self.advise_every is not None and (self.k1 is None or self.k1_std is not None):
            raise TBPTTError("advise_every needs a fixed k1 (set k1, drop k1_std)")
        check_tolerance(self.advise_tolerance, "advise_tolerance")
        check_precision(self.precision)
        for name in ("epochs", "log_every", "checkpoint_every", "max_skips", "nonmono"):
            if getattr(self, name) < 1:
                raise TBPTTError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_windows", "patience", "advise_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise TBPTTError(f"{name} must be >= 1 or unset, got {value}")
        if self.eval_every < 0 or self.max_rollbacks < 0:
            raise TBPTTError("eval_every and max_rollbacks must be >= 0")
        check_seed("seed", self.seed)
        if not 0 < self.lr <= MAX_LR:
            raise TBPTTError(f"lr must be finite and > 0 and at most {MAX_LR:g}, got {self.lr}")
        check_non_negative("weight_decay", self.weight_decay)
        if self.clip_norm is not None and not 0 < self.clip_norm < math.inf:
            raise TBPTTError(f"clip_norm must be finite and > 0, or unset, got {self.clip_norm}")
        if self.blowup is not None and not 1 < self.blowup < math.inf:
            raise TBPTTError(f"blowup must be finite and > 1, or unset, got {self.blowup}")
        if not 0 < self.rollback_lr_factor < 1:
            raise TBPTTError(
                f"rollback_lr_factor must lie strictly between 0 and 1, "
                f"got {self.rollback_lr_factor}"
            )
        parse_device(self.device)
        one_of("optimizer", self.optimizer, OPTIMIZERS)
        if not 1 < self.plateau_factor < math.inf:
            raise TBPTTError(
                f"plateau_factor divides the learning rate: it must be finite and > 1, "
                f"got {self.plateau_factor}"
            )
        check_non_negative("plateau_min_lr", self.plateau_min_lr)
        one_of("schedule", self.schedule, SCHEDULES)

    def _rename(self, old: str, new: str, default: object) -> None:
        """Move a setting given under its deprecated name ``old`` to ``new``, with one
        warning line (an old run's saved default moves silently)."""
        value = getattr(self, old)
        if value is not None and value != default:
            logger.warning("%s is deprecated: it is now %s", old, new)
            setattr(self, new, value)
        setattr(self, old, None)

    def batch_steps(self, whole: int) -> int:
        """Steps per training batch: one window (k1), several with randomised
        truncation, ``whole`` (the data's length per stream) for full BPTT."""
        if self.k1 is None:
            return whole
        return self.k1 * RANDOM_BATCH_WINDOWS if self.k1_std is not None else self.k1
