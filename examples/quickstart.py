"""Quickstart: truncation length decides what a recurrent network can learn.

An LSTM reads 32 streams of random symbols and must output, at every step, the symbol
it saw DELAY steps earlier. Under TBPTT(k1, k2) the loss of a step sees between
k2 - k1 and k2 - 1 steps of history, so the echo is learned at every step only when
k2 - k1 >= DELAY, at some steps when k2 > DELAY, and at none when k2 <= DELAY.

    python examples/quickstart.py            # 9 s of CPU (21 s on a busy 2-core machine)
    python examples/quickstart.py --quick    # every truncation on short streams, 4 s of CPU
"""

from __future__ import annotations

import argparse
import time

import torch

import tbptt

DELAY, SYMBOLS, STREAMS = 6, 4, 32
QUICK_STEPS = 300
"""``--quick``: steps per stream (too few to learn the echo: the accuracies mean nothing)."""


def echo_stream(seed: int, steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs and targets, time-major ``(T, B)``, and the mask of steps with a target."""
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, SYMBOLS, (steps, STREAMS), generator=gen)
    targets = inputs.roll(DELAY, dims=0)  # target at step i: the input of step i - DELAY
    mask = (torch.arange(steps) >= DELAY)[:, None].expand(steps, STREAMS)
    return inputs, targets, mask


def train(k1: int, k2: int, steps: int) -> float:
    """Train with TBPTT(k1, k2); returns the echo accuracy on fresh streams."""
    torch.manual_seed(0)
    model = tbptt.models.LSTM(64, vocab_size=SYMBOLS)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    runner = tbptt.Runner(model, tbptt.losses.cross_entropy, k1=k1, k2=k2)
    inputs, targets, mask = echo_stream(seed=1, steps=steps)
    for window in runner.windows(inputs, targets, mask=mask):
        optimizer.zero_grad()
        window.loss.backward()
        optimizer.step()
    inputs, targets, mask = echo_stream(seed=2, steps=steps)
    with torch.no_grad():
        outputs, _ = model(inputs)  # evaluation: the whole stream, no truncation
    return (outputs.argmax(-1) == targets)[mask].float().mean().item()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=3000, help="steps per stream")
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_STEPS} steps per stream (unless --steps)"
    )
    args = parser.parse_args(argv)
    if args.quick:  # the quick settings, under any option given explicitly
        parser.set_defaults(steps=QUICK_STEPS)
        args = parser.parse_args(argv)
    torch.set_num_threads(1)  # small matrices: one thread is fastest (benchmarks/README.md)
    print(f"echo a symbol after {DELAY} steps; chance accuracy is {1 / SYMBOLS:.2f}")
    for k1, k2 in [(4, 4), (4, 6), (10, 10), (4, 10)]:
        start = time.perf_counter()
        accuracy = train(k1, k2, args.steps)
        seconds = time.perf_counter() - start
        print(f"TBPTT(k1={k1:2d}, k2={k2:2d}): accuracy {accuracy:.2f}  ({seconds:.1f} s)")


if __name__ == "__main__":
    main()
