"""On-policy reinforcement learning with recurrent policies, on the engine.

What lives here: the convention that turns environments' ``done`` flags into the
engine's ``resets`` (``resets_from_dones``, with its diagram) and the ``Rollout``:
T steps of N environments with the policy's state at their start, so that several
epochs over one rollout, in minibatches of environments, re-run the policy exactly.
Several targets for one loss (actions, advantages, old log-probabilities, returns)
travel as a nested structure that the engine slices along time like the inputs.

What it may import: PyTorch and :mod:`tbptt.engine` (and :mod:`tbptt.errors`);
never an environment library such as gymnasium (only ``examples/recurrent_ppo``
does), nor :mod:`tbptt.training` or :mod:`tbptt.cli`; the engine never imports it
(the import-linter contracts in ``pyproject.toml`` hold it to that).
"""

from tbptt.rl.rollout import Rollout, resets_from_dones

__all__ = ["Rollout", "resets_from_dones"]
