"""Rollouts of N environments for recurrent policies: ``done`` flags to ``resets``,
and the policy's state kept at the start of each rollout.

The convention, once: ``dones[i, b]`` is the flag the environment returned for the
action taken at step i (the episode ended with that action), so stream b starts a
new episode at step i + 1 and the engine resets its state *before* step i + 1::

    step i             0    1    2    3    4    5    6    7  | 0 (next rollout)
    observation       o0   o1   o2   o3   n0   n1   n2   n3  | ...
    dones[i]           .    .    .    D    .    .    .    D  |
    resets[i]          p    .    .    .    R    .    .    .  | R
                                          ^ resets[i] = dones[i - 1]

    o: one episode, n: the next; D: done; R: reset; p: the previous rollout's last
    done (``previous``), which resets step 0 of this one.

This is the observation order of vector environments that reset an environment in
the same step that ends its episode (gymnasium's ``AutoresetMode.SAME_STEP``: the
step returns the first observation of the next episode, and the last one of the
ended episode in ``info``). CleanRL's recurrent PPO stores the same flags shifted
by one and calls them ``dones`` ("this observation starts an episode"): those are
these ``resets``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tbptt.engine import State, Targets
from tbptt.engine import state as states
from tbptt.errors import TBPTTError


def resets_from_dones(dones: Tensor, previous: Tensor | None = None) -> Tensor:
    """The engine's ``resets: (T, N)`` for a rollout whose ``dones: (T, N)`` bool
    flags end episodes: ``resets[i] = dones[i - 1]``, and ``resets[0] = previous``
    (``(N,)`` bool, the last step's dones of the rollout before; ``None``: no reset,
    the first rollout starts from the initial state anyway).
    """
    if not isinstance(dones, Tensor) or dones.dim() != 2 or dones.dtype != torch.bool:
        raise TBPTTError(
            f"dones must be a (T, N) bool tensor, one flag per step and env, "
            f"got {describe(dones)}: pass torch.as_tensor(terminated | truncated)"
        )
    if previous is None:
        previous = torch.zeros(dones.shape[1], dtype=torch.bool, device=dones.device)
    elif (
        not isinstance(previous, Tensor)
        or tuple(previous.shape) != (dones.shape[1],)
        or previous.dtype != torch.bool
    ):
        raise TBPTTError(
            f"previous must be the ({dones.shape[1]},) bool dones of the last step before "
            f"this rollout, got {describe(previous)}"
        )
    return torch.cat([previous[None].to(dones.device), dones[:-1]])


def describe(value: object) -> str:
    """``shape (T, N) dtype`` for a tensor, else the type's name."""
    if isinstance(value, Tensor):
        return f"shape {tuple(value.shape)} {value.dtype}"
    return type(value).__name__


@dataclass(frozen=True)
class Rollout:
    """T steps of N environments, kept for several epochs of updates.

    Attributes:
        state: the policy's state entering step 0, detached and batch-first
            ``(N, ...)`` (``None``: the initial state). Running the policy from it
            over ``observations`` with ``resets`` gives the outputs it gave while
            acting, so each epoch's losses are those of the policy that acted.
        observations: ``(T, N, ...)``, time-major.
        resets: ``(T, N)`` bool, from :func:`resets_from_dones`.
        targets: a tensor ``(T, N, ...)`` or a tuple, list or dict nesting of them
            (actions, old log-probabilities, advantages, returns), sliced along time
            by the engine and passed whole to the loss.

    Usage (PPO with full BPTT over each minibatch of environments)::

        runner = tbptt.Runner(policy, ppo_loss, k1=None)
        for epoch in range(epochs):
            for part in rollout.minibatches(4, generator):
                runner.reset(part.state)
                for window in runner.windows(part.observations, part.targets,
                                             resets=part.resets):
                    window.loss.backward()
    """

    state: State
    observations: Tensor
    resets: Tensor
    targets: Targets

    def __post_init__(self) -> None:
        if self.observations.dim() < 2:
            raise TBPTTError(
                f"observations must be time-major (T, N, ...), got shape "
                f"{tuple(self.observations.shape)}"
            )
        steps = tuple(self.observations.shape[:2])
        if tuple(self.resets.shape) != steps or self.resets.dtype != torch.bool:
            raise TBPTTError(
                f"resets must be (T, N) = {steps} bool like the observations, got "
                f"{describe(self.resets)}: build them with resets_from_dones"
            )
        for leaf in states.leaves(states.map_state(lambda t: t, self.targets)):
            if tuple(leaf.shape[:2]) != steps:
                raise TBPTTError(
                    f"every target must start with (T, N) = {steps} like the observations, "
                    f"got shape {tuple(leaf.shape)}"
                )
        if self.state is None:
            return
        for leaf in states.leaves(self.state):
            if leaf.dim() == 0 or leaf.shape[0] != steps[1]:
                raise TBPTTError(
                    f"rollout state of shape {tuple(leaf.shape)} does not have one row per "
                    f"environment (N = {steps[1]}): keep the policy's batch-first state "
                    f"entering step 0 of this rollout"
                )
        if any(leaf.requires_grad for leaf in states.leaves(self.state)):
            object.__setattr__(self, "state", states.detach(self.state))

    @property
    def envs(self) -> int:
        """N, the environments side by side."""
        return self.observations.shape[1]

    def select(self, envs: Tensor) -> Rollout:
        """The rollout of environments ``envs: (n,)`` (indices) alone: their rows of
        the state, observations, resets and every target."""

        def columns(leaf: Tensor) -> Tensor:
            return leaf[:, envs]

        state = None if self.state is None else states.map_state(lambda s: s[envs], self.state)
        return Rollout(
            state,
            columns(self.observations),
            columns(self.resets),
            states.map_state(columns, self.targets),
        )

    def minibatches(self, count: int, generator: torch.Generator | None = None) -> list[Rollout]:
        """The environments shuffled (by ``generator``) into ``count`` minibatches of
        N / count each, every step of an environment in its minibatch."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise TBPTTError(f"count must be an int >= 1 minibatches, got {count!r}")
        if self.envs % count:
            raise TBPTTError(
                f"{count} minibatches do not divide N = {self.envs} environments: choose a "
                f"count that divides N"
            )
        order = torch.randperm(self.envs, generator=generator).to(self.observations.device)
        return [self.select(part) for part in order.chunk(count)]
