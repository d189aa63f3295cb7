"""tbptt.rl: dones become resets at the step after, and a stored rollout re-runs exactly."""

from __future__ import annotations

import pytest
import torch

import tbptt
from tbptt import models
from tbptt.rl import Rollout, resets_from_dones
from tests.models_for_tests import DictStateCell

OBS, HIDDEN, OUT = 3, 5, 4


def episode_flags(lengths_per_env, steps):
    """Per env, episodes of known lengths laid end to end: the (T, N) dones (true at
    each episode's last step) and, written separately, the steps where one starts."""
    dones = torch.zeros(steps, len(lengths_per_env), dtype=torch.bool)
    starts = torch.zeros(steps, len(lengths_per_env), dtype=torch.bool)
    for env, lengths in enumerate(lengths_per_env):
        step = 0
        for length in lengths:
            if 0 < step < steps:
                starts[step, env] = True
            step += length
            if step - 1 < steps:
                dones[step - 1, env] = True
    return dones, starts


def test_resets_fall_on_the_first_step_of_each_episode():
    lengths = [[3, 5, 4], [12], [1] * 12, [2, 10]]
    dones, starts = episode_flags(lengths, 12)
    assert torch.equal(resets_from_dones(dones), starts)


def test_the_previous_rollouts_last_done_resets_step_zero():
    # env 0's episode ends on the last step of the first rollout, env 1's does not
    first, _ = episode_flags([[4, 8], [5, 9]], 12)
    second, _ = episode_flags([[2, 10], [2, 10]], 12)
    resets = resets_from_dones(second, previous=first[-1])
    assert resets[0].tolist() == [True, False]
    assert resets[2].tolist() == [True, True]
    assert int(resets.sum()) == 3


@pytest.mark.parametrize(
    ("dones", "message"),
    [
        (torch.zeros(5, dtype=torch.bool), r"shape \(5,\)"),
        (torch.zeros(5, 2, 1, dtype=torch.bool), r"shape \(5, 2, 1\)"),
        (torch.zeros(5, 2), "torch.float32"),
        ([[True, False]], "got list"),
    ],
)
def test_dones_of_the_wrong_shape_or_dtype_are_refused(dones, message):
    with pytest.raises(
        tbptt.TBPTTError, match=f"dones must be a \\(T, N\\) bool tensor.*{message}"
    ):
        resets_from_dones(dones)


def test_previous_dones_of_the_wrong_shape_are_refused():
    with pytest.raises(tbptt.TBPTTError, match=r"previous must be the \(2,\) bool dones"):
        resets_from_dones(torch.zeros(5, 2, dtype=torch.bool), torch.zeros(3, dtype=torch.bool))


def make_policy(kind):
    torch.manual_seed(0)
    if kind == "dict":
        return DictStateCell(OBS, HIDDEN, OUT).double()
    return models.RecurrentNetwork(kind, HIDDEN, input_size=OBS, output_size=OUT).double()


def act(policy, steps, envs, state, seed):
    """Run the policy one step at a time as while acting: observations, dones at
    random (episodes end where they end), the state carried, resets applied."""
    gen = torch.Generator().manual_seed(seed)
    observations = torch.randn(steps, envs, OBS, generator=gen, dtype=torch.float64)
    dones = torch.rand(steps, envs, generator=gen) < 0.25
    resets = resets_from_dones(dones, previous=torch.rand(envs, generator=gen) < 0.5)
    outputs = []
    with torch.no_grad():
        for i in range(steps):
            out, state = tbptt.unroll(policy, observations[i : i + 1], state, resets[i : i + 1])
            outputs.append(out)
    return observations, resets, torch.cat(outputs), state


@pytest.mark.parametrize("kind", ["lstm", "gru", "dict"])
def test_rerunning_a_stored_rollout_gives_the_outputs_it_gave_while_acting(kind):
    policy = make_policy(kind)
    _, _, _, state = act(policy, 6, 4, None, seed=1)  # a state left by an earlier rollout
    observations, resets, acted, _ = act(policy, 10, 4, state, seed=2)
    actions = torch.zeros(10, 4, dtype=torch.long)
    rollout = Rollout(state, observations, resets, {"actions": actions})
    runner = tbptt.Runner(policy, lambda out, t: out.sum(-1), k1=None, state=rollout.state)
    (window,) = runner.windows(rollout.observations, rollout.targets, resets=rollout.resets)
    assert torch.equal(window.outputs, acted)  # bit for bit


@pytest.mark.parametrize("kind", ["lstm", "dict"])
def test_each_minibatch_of_environments_reruns_its_rows_of_the_rollout(kind):
    policy = make_policy(kind)
    _, _, _, state = act(policy, 6, 6, None, seed=3)
    observations, resets, acted, _ = act(policy, 8, 6, state, seed=4)
    targets = {"advantages": torch.randn(8, 6), "old": (torch.randn(8, 6, 2),)}
    rollout = Rollout(state, observations, resets, targets)
    seen = []
    for part in rollout.minibatches(3, torch.Generator().manual_seed(0)):
        assert part.envs == 2
        with torch.no_grad():
            outputs, _ = tbptt.unroll(policy, part.observations, part.state, part.resets)
        envs = [
            int((observations[0] == column).all(-1).nonzero()) for column in part.observations[0]
        ]
        # another batch size may sum in another order: equal to float64 rounding
        torch.testing.assert_close(outputs, acted[:, envs], rtol=1e-13, atol=1e-13)
        assert torch.equal(part.targets["old"][0], targets["old"][0][:, envs])
        seen += envs
    assert sorted(seen) == list(range(6))


def test_a_rollout_state_of_the_wrong_batch_size_is_refused():
    state = (torch.zeros(3, 1, HIDDEN), torch.zeros(3, 1, HIDDEN))
    with pytest.raises(tbptt.TBPTTError, match=r"rollout state of shape \(3, 1, 5\).*N = 4"):
        Rollout(
            state, torch.zeros(5, 4, OBS), torch.zeros(5, 4, dtype=torch.bool), torch.zeros(5, 4)
        )


def test_rollout_resets_and_targets_must_match_the_observations():
    observations = torch.zeros(5, 4, OBS)
    with pytest.raises(tbptt.TBPTTError, match="resets must be"):
        Rollout(None, observations, torch.zeros(5, 4), torch.zeros(5, 4))
    with pytest.raises(tbptt.TBPTTError, match=r"every target.*got shape \(5, 3\)"):
        Rollout(None, observations, torch.zeros(5, 4, dtype=torch.bool), {"a": torch.zeros(5, 3)})


def test_minibatches_must_divide_the_environments():
    rollout = Rollout(
        None, torch.zeros(5, 4, OBS), torch.zeros(5, 4, dtype=torch.bool), torch.zeros(5, 4)
    )
    with pytest.raises(tbptt.TBPTTError, match="3 minibatches do not divide N = 4"):
        rollout.minibatches(3)
