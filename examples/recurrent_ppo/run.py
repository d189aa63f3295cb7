"""Recurrent PPO on partially observed CartPole: tbptt against the hand-written loop.

CartPole with the velocities hidden (the policy sees the cart position and the pole
angle only, so it must remember to estimate how they change) in gymnasium's vector
environments. One LSTM policy, one PPO (CleanRL's ``ppo_atari_lstm`` scheme: the
policy state at the start of each rollout kept, minibatches of whole environments,
full BPTT through each rollout), two ways to run the recurrent part:

- ``tbptt``: ``tbptt.rl.Rollout`` and ``tbptt.Runner(k1=None)``; the episode ends
  become ``resets`` (``tbptt.rl.resets_from_dones``) that the LSTM applies inside
  fused calls;
- ``loop``: the baseline the RL libraries write, a Python loop over steps that
  multiplies the state by ``1 - done`` before each step (CleanRL's ``get_states``).

Both arms share the hyperparameters, the seeds, the initial weights, the action
draws and the minibatch order, so they compute the same updates up to float
rounding; what differs is the time the update takes. Runs are interleaved (seed by
seed, arm by arm) in one process on one thread, and CPU time is recorded.

    python examples/recurrent_ppo/run.py --out runs/recurrent_ppo        # 3 seeds
    python examples/recurrent_ppo/run.py --quick --out /tmp/ppo          # seconds
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical

import tbptt
from tbptt.devices import machine
from tbptt.rl import Rollout, resets_from_dones

SEEN = [0, 2]  # cart position and pole angle; the velocities (1, 3) are hidden
ACTIONS = 2
State = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class Settings:
    """PPO's hyperparameters: CleanRL's ``ppo_atari_lstm`` scheme; gamma, lambda,
    the learning rate, no entropy bonus and the reward scale chosen in two short
    pilots (one seed, 60 updates) so that a shared trunk learns CartPole's returns."""

    total_steps: int = 200_000
    envs: int = 8
    steps: int = 128
    hidden: int = 64
    lr: float = 2e-3
    gamma: float = 0.98
    gae_lambda: float = 0.98
    minibatches: int = 4
    epochs: int = 4
    clip: float = 0.2
    entropy: float = 0.0
    value: float = 0.5
    max_grad_norm: float = 0.5
    reward_scale: float = 0.01  # returns of up to 500 would swamp the policy loss

    @property
    def updates(self) -> int:
        return max(self.total_steps // (self.envs * self.steps), 1)


QUICK = Settings(total_steps=3 * 4 * 16, envs=4, steps=16, hidden=16, minibatches=2, epochs=2)


def make_policy(settings: Settings) -> tbptt.models.RecurrentNetwork:
    """An LSTM over the two seen features; its head gives 2 logits and the value."""
    return tbptt.models.LSTM(settings.hidden, input_size=len(SEEN), output_size=ACTIONS + 1)


def fused_forward(
    policy: tbptt.models.RecurrentNetwork, obs: Tensor, state: State | None, resets: Tensor
) -> tuple[Tensor, State]:
    """tbptt: ``obs: (T, N, 2)`` in one call, resets applied inside it."""
    return tbptt.unroll(policy, obs, state, resets)


def loop_forward(
    policy: tbptt.models.RecurrentNetwork, obs: Tensor, state: State | None, resets: Tensor
) -> tuple[Tensor, State]:
    """The baseline: one LSTM call per step, the state multiplied by ``1 - reset``
    before it (CleanRL's ``get_states``; ``resets`` are CleanRL's ``dones``)."""
    if state is None:
        state = policy.initial_state(obs.shape[1])
    h, c = (s.transpose(0, 1) for s in state)  # nn.LSTM's (layers, N, H)
    outputs = []
    for x, reset in zip(obs, resets, strict=True):
        keep = (1.0 - reset.to(h.dtype)).view(1, -1, 1)
        out, (h, c) = policy.rnn(x[None], (keep * h, keep * c))
        outputs.append(out)
    return policy.head(torch.cat(outputs)), (h.transpose(0, 1), c.transpose(0, 1))


def ppo_loss(settings: Settings) -> Callable[[Tensor, dict[str, Tensor]], Tensor]:
    """The per-element PPO loss ``(T, N)`` from the outputs and the nested targets:
    clipped policy loss, clipped value loss and the entropy bonus (CleanRL's)."""

    def loss(outputs: Tensor, targets: dict[str, Tensor]) -> Tensor:
        dist = Categorical(logits=outputs[..., :ACTIONS])
        value = outputs[..., ACTIONS]
        ratio = (dist.log_prob(targets["actions"]) - targets["log_probs"]).exp()
        advantages = targets["advantages"]
        clipped = ratio.clamp(1 - settings.clip, 1 + settings.clip)
        policy_loss = torch.max(-advantages * ratio, -advantages * clipped)
        old, returns = targets["values"], targets["returns"]
        value_clipped = old + (value - old).clamp(-settings.clip, settings.clip)
        value_loss = 0.5 * torch.max((value - returns) ** 2, (value_clipped - returns) ** 2)
        return policy_loss - settings.entropy * dist.entropy() + settings.value * value_loss

    return loss


def normalised(targets: dict[str, Tensor]) -> dict[str, Tensor]:
    """The minibatch's advantages normalised (CleanRL's ``norm_adv``)."""
    advantages = targets["advantages"]
    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    return {**targets, "advantages": advantages}


def advantages(
    settings: Settings, rewards: Tensor, values: Tensor, dones: Tensor, last_value: Tensor
) -> Tensor:
    """GAE(gamma, lambda) over ``(T, N)``; an episode's last step bootstraps nothing."""
    result = torch.zeros_like(rewards)
    running = torch.zeros_like(last_value)
    for t in reversed(range(rewards.shape[0])):
        next_value = last_value if t == rewards.shape[0] - 1 else values[t + 1]
        alive = 1.0 - dones[t].float()
        delta = rewards[t] + settings.gamma * next_value * alive - values[t]
        running = delta + settings.gamma * settings.gae_lambda * alive * running
        result[t] = running
    return result


def update_tbptt(model, optimizer, settings, rollout: Rollout, generator) -> None:
    """PPO epochs through tbptt: each minibatch re-runs from its stored state."""
    runner = tbptt.Runner(model, ppo_loss(settings), k1=None)
    for _ in range(settings.epochs):
        for part in rollout.minibatches(settings.minibatches, generator):
            runner.reset(part.state)
            (window,) = runner.windows(
                part.observations, normalised(part.targets), resets=part.resets
            )
            step(model, optimizer, settings, window.loss)


def update_loop(model, optimizer, settings, rollout: Rollout, generator) -> None:
    """The same PPO epochs as CleanRL writes them, on plain tensors."""
    loss_fn = ppo_loss(settings)
    h0, c0 = rollout.state
    episode_starts = rollout.resets  # CleanRL's `dones`: stored before each step
    for _ in range(settings.epochs):
        order = torch.randperm(rollout.envs, generator=generator)
        for envs in order.chunk(settings.minibatches):
            targets = normalised({k: v[:, envs] for k, v in rollout.targets.items()})
            outputs, _ = loop_forward(
                model, rollout.observations[:, envs], (h0[envs], c0[envs]), episode_starts[:, envs]
            )
            step(model, optimizer, settings, loss_fn(outputs, targets).mean())


def step(model: nn.Module, optimizer: torch.optim.Optimizer, settings: Settings, loss) -> None:
    optimizer.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
    optimizer.step()


def make_envs(settings: Settings) -> gym.vector.VectorEnv:
    """CartPole-v1 x N; an ended episode resets in the same step (the convention of
    ``tbptt.rl.resets_from_dones``)."""
    return gym.vector.SyncVectorEnv(
        [lambda: gym.make("CartPole-v1") for _ in range(settings.envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )


def train(arm: str, seed: int, settings: Settings) -> dict:
    """One run; returns its curve (per update) and timings."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = make_policy(settings)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, eps=1e-5)
    forward = fused_forward if arm == "tbptt" else loop_forward
    update = update_tbptt if arm == "tbptt" else update_loop
    envs = make_envs(settings)
    raw, _ = envs.reset(seed=seed)
    obs = torch.as_tensor(raw[:, SEEN], dtype=torch.float32)
    n, steps = settings.envs, settings.steps
    state = model.initial_state(n)
    last_done = torch.zeros(n, dtype=torch.bool)
    running_return = np.zeros(n)
    curve, episodes = [], []
    act_cpu = update_cpu = 0.0
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    for index in range(settings.updates):
        for group in optimizer.param_groups:  # CleanRL's linear annealing
            group["lr"] = settings.lr * (1.0 - index / settings.updates)
        tick = time.process_time()
        rollout_state = state
        buffers = {k: torch.zeros(steps, n) for k in ("rewards", "values", "log_probs")}
        observations = torch.zeros(steps, n, len(SEEN))
        actions = torch.zeros(steps, n, dtype=torch.long)
        dones = torch.zeros(steps, n, dtype=torch.bool)
        starts = torch.zeros(steps, n, dtype=torch.bool)  # the loop's own bookkeeping
        with torch.no_grad():
            for t in range(steps):
                observations[t], starts[t] = obs, last_done
                out, state = forward(model, obs[None], state, last_done[None])
                dist = Categorical(logits=out[0, :, :ACTIONS])
                actions[t] = dist.sample()
                buffers["log_probs"][t] = dist.log_prob(actions[t])
                buffers["values"][t] = out[0, :, ACTIONS]
                raw, reward, terminated, truncated, _ = envs.step(actions[t].numpy())
                done = np.logical_or(terminated, truncated)
                running_return += reward
                for env in np.flatnonzero(done):
                    episodes.append(((index * steps + t + 1) * n, float(running_return[env])))
                running_return[done] = 0.0
                buffers["rewards"][t] = settings.reward_scale * torch.as_tensor(reward)
                dones[t] = last_done = torch.as_tensor(done)
                obs = torch.as_tensor(raw[:, SEEN], dtype=torch.float32)
            out, _ = forward(model, obs[None], state, last_done[None])
            gae = advantages(settings, buffers["rewards"], buffers["values"], dones, out[0, :, -1])
        resets = resets_from_dones(dones, previous=starts[0])
        assert torch.equal(resets, starts)  # the convention is the loop's bookkeeping
        targets = {
            "actions": actions,
            "log_probs": buffers["log_probs"],
            "advantages": gae,
            "returns": gae + buffers["values"],
            "values": buffers["values"],
        }
        rollout = Rollout(rollout_state, observations, resets, targets)
        tock = time.process_time()
        model.train()
        update(model, optimizer, settings, rollout, generator)
        act_cpu += tock - tick
        update_cpu += time.process_time() - tock
        recent = [r for s, r in episodes if s > index * steps * n]
        curve.append(
            {
                "env_steps": (index + 1) * steps * n,
                "wall_s": time.perf_counter() - start_wall,
                "cpu_s": time.process_time() - start_cpu,
                "mean_return": float(np.mean(recent)) if recent else math.nan,
            }
        )
    envs.close()
    last = [r for s, r in episodes if s > 0.9 * settings.updates * steps * n]
    return {
        "arm": arm,
        "seed": seed,
        "curve": curve,
        "episodes": episodes,
        "final_return": float(np.mean(last)) if last else math.nan,
        "cpu_s": time.process_time() - start_cpu,
        "act_cpu_s": act_cpu,
        "update_cpu_s": update_cpu,
        "update_cpu_ms": 1000 * update_cpu / settings.updates,
    }


def summarise(runs: list[dict]) -> dict:
    """Per arm: final return and time per update, mean and spread over seeds."""
    summary = {}
    for arm in sorted({r["arm"] for r in runs}):
        mine = [r for r in runs if r["arm"] == arm]
        summary[arm] = {
            key: {"mean": float(np.mean(values)), "min": min(values), "max": max(values)}
            for key in ("final_return", "update_cpu_ms", "cpu_s")
            for values in [[r[key] for r in mine]]
        }
    if {"tbptt", "loop"} <= set(summary):
        pairs = {r["seed"]: {} for r in runs}
        for r in runs:
            pairs[r["seed"]][r["arm"]] = r["update_cpu_ms"]
        ratios = [p["loop"] / p["tbptt"] for p in pairs.values() if len(p) == 2]
        summary["update_speedup"] = {"mean": float(np.mean(ratios)), "per_seed": ratios}
    return summary


def smoothed(curve: list[dict], width: int = 10) -> list[float]:
    """The mean return over the last ``width`` updates that ended an episode."""
    returns = np.array([p["mean_return"] for p in curve])
    result = []
    for index in range(len(returns)):
        recent = returns[max(0, index - width + 1) : index + 1]
        recent = recent[~np.isnan(recent)]
        result.append(float(recent.mean()) if len(recent) else math.nan)
    return result


def plot(runs: list[dict], path: Path) -> None:
    """Return (mean over 10 updates) against env steps, CPU time and wall time, one
    line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"tbptt": "tab:blue", "loop": "tab:orange"}
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    labelled = set()
    for run in runs:
        returns = smoothed(run["curve"])
        label = None if run["arm"] in labelled else run["arm"]
        labelled.add(run["arm"])
        for axis, key in zip(axes, ("env_steps", "cpu_s", "wall_s"), strict=True):
            x = [p[key] for p in run["curve"]]
            axis.plot(x, returns, color=colours[run["arm"]], alpha=0.8, lw=1, label=label)
    axes[0].xaxis.set_major_formatter(lambda value, _: f"{value / 1000:.0f}k")
    axes[0].set_xlabel("environment steps")
    axes[1].set_xlabel("CPU seconds (1 thread)")
    axes[2].set_xlabel("wall seconds (shared machine)")
    axes[0].set_ylabel("episodic return, mean of 10 updates")
    axes[0].legend()
    figure.suptitle("Recurrent PPO, CartPole-v1 without velocities")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arms", nargs="+", default=["tbptt", "loop"], choices=["tbptt", "loop"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--total-steps", type=int, default=Settings.total_steps)
    parser.add_argument("--quick", action="store_true", help="tiny settings, seconds")
    parser.add_argument("--out", type=Path, default=Path("runs/recurrent_ppo"))
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="RESULTS",
        help="train nothing: join the runs of these results.json files (other seeds, "
        "the same settings) into --out, summary and plot",
    )
    args = parser.parse_args()
    if args.merge:
        merge(args.merge, args.out)
        return
    torch.set_num_threads(1)
    settings = QUICK if args.quick else Settings(total_steps=args.total_steps)
    seeds = args.seeds[:1] if args.quick else args.seeds
    args.out.mkdir(parents=True, exist_ok=True)
    runs: list[dict] = []
    for seed in seeds:  # interleaved: both arms of a seed back to back
        for arm in args.arms:
            run = train(arm, seed, settings)
            runs.append(run)
            print(
                f"{arm:5s} seed {seed}: final return {run['final_return']:7.1f}, "
                f"{run['update_cpu_ms']:7.1f} ms CPU per update, {run['cpu_s']:6.1f} s CPU",
                flush=True,
            )
            summary = summarise(runs)
            report = {
                "settings": asdict(settings),
                "seeds": seeds,
                "summary": summary,
                "runs": runs,
                "machine": machine(),
            }  # written after every run, so an interrupted sweep keeps what finished
            (args.out / "results.json").write_text(json.dumps(report, indent=1))
    plot(runs, args.out / "returns.png")
    if "update_speedup" in summary:
        print(f"update time, loop / tbptt: {summary['update_speedup']['mean']:.2f}x")
    print(f"wrote {args.out / 'results.json'} and {args.out / 'returns.png'}")


def merge(paths: list[Path], out: Path) -> None:
    """One report from several sweeps of the same settings."""
    reports = [json.loads(path.read_text()) for path in paths]
    if any(r["settings"] != reports[0]["settings"] for r in reports):
        raise SystemExit("run.py: error: the results were made with different settings")
    runs = [run for report in reports for run in report["runs"]]
    keys = [(run["arm"], run["seed"]) for run in runs]
    if len(set(keys)) < len(keys):
        raise SystemExit("run.py: error: a seed appears twice for one arm: merge other seeds")
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "settings": reports[0]["settings"],
        "seeds": [seed for r in reports for seed in r["seeds"]],
        "summary": summarise(runs),
        "runs": runs,
        "machine": [r["machine"] for r in reports],
        "merged_from": [str(path) for path in paths],
    }
    (out / "results.json").write_text(json.dumps(report, indent=1))
    plot(runs, out / "returns.png")
    print(f"wrote {out / 'results.json'} and {out / 'returns.png'}")


if __name__ == "__main__":
    main()
