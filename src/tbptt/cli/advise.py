"""``tbptt advise``: measure gradient flow and truncation bias on a trained run's data
and recommend the truncation k (see :mod:`tbptt.diagnostics`).

    tbptt advise runs/shakespeare --steps 256 --streams 16 --k 16 32 64 128 --out advice/

reads the run's checkpoint and data the way ``tbptt eval`` does (its validation data,
or FILE read like it), takes a sample of ``--streams`` streams of ``--steps`` steps,
prints the evidence table and the recommendation, and writes ``advice.json``,
``flow.png`` and ``bias.png`` into ``--out``. Rerun it on later checkpoints: the right
k changes as a model learns.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from tbptt import diagnostics
from tbptt.cli.commands import evaluation_data, load_model
from tbptt.cli.options import Parser
from tbptt.cli.runconfig import EvalConfig
from tbptt.cli.rundata import objective
from tbptt.data import Batch, Streams
from tbptt.errors import TBPTTError
from tbptt.files import atomic_write


def pair(text: str) -> tuple[int, int]:
    """``K1:K2`` as a pair of ints."""
    try:
        k1, k2 = (int(part) for part in text.split(":"))
    except ValueError:
        raise TBPTTError(f"--pairs takes K1:K2 with integers, got {text!r}") from None
    return k1, k2


def parse_args(argv: Sequence[str]) -> tuple[Parser, argparse.Namespace]:
    parser = Parser(
        prog="tbptt advise",
        description=(
            "Measure how far gradients flow back and how far each truncation TBPTT(k1, k2) "
            "is from full BPTT on a sample of a run's data; recommend the smallest k2 "
            "whose gradient has cosine >= --tolerance to the full one."
        ),
    )
    parser.add_argument("checkpoint", help="a checkpoint, or a run directory (its best.pt)")
    parser.add_argument(
        "file", nargs="?", help="data like the run's (default: the run's validation data)"
    )
    parser.add_argument("--steps", type=int, default=256, help="steps in the sample (default: 256)")
    parser.add_argument("--streams", type=int, default=8, help="streams in the sample (default: 8)")
    parser.add_argument(
        "--k",
        type=int,
        nargs="+",
        metavar="K",
        help="candidates TBPTT(k, k) (default: (k, k), (k/2, k) for k = 2, 4, ... < --steps)",
    )
    parser.add_argument(
        "--pairs", nargs="+", default=[], metavar="K1:K2", help="candidates TBPTT(k1, k2) too"
    )
    parser.add_argument(
        "--tolerance", type=float, default=0.95, help="cosine to the full gradient (default: 0.95)"
    )
    parser.add_argument(
        "--ends", type=int, default=8, help="loss steps followed back for the flow (default: 8)"
    )
    parser.add_argument(
        "--max-lag", type=int, help="follow gradients back this many steps (default: all)"
    )
    parser.add_argument(
        "--checkpointed",
        action="store_true",
        help="compute the full reference gradient by checkpointed BPTT (less memory)",
    )
    parser.add_argument("--seed", type=int, help="a task run: the seed of the sample's data")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--out", help="folder for advice.json and the plots (default: RUN/advice)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    return parser, parser.parse_args(argv)


def sample(streams: Streams, steps: int, count: int) -> Batch:
    """The first ``steps`` steps of the first ``count`` streams (fewer if the data is
    shorter), with the resets and mask the streams give."""
    parts: list[Batch] = []
    for batch in streams.batches(0):
        parts.append(batch)
        if sum(part.inputs.shape[0] for part in parts) >= steps:
            break
    fields = [
        torch.cat(items)[:steps, :count] for items in zip(*(p.fields() for p in parts), strict=True)
    ]
    return Batch(*fields)


def candidates(ks: list[int] | None, pairs: list[str], steps: int) -> list[tuple[int, int]]:
    """The truncations to measure, each checked: 1 <= k1 <= k2 < steps."""
    chosen = diagnostics.default_truncations(steps) if ks is None and not pairs else []
    chosen += [(k, k) for k in ks or []] + [pair(text) for text in pairs]
    for k1, k2 in chosen:
        if not 1 <= k1 <= k2 or k2 > steps:
            raise TBPTTError(
                f"TBPTT({k1}, {k2}) does not fit a sample of {steps} steps: "
                f"give 1 <= k1 <= k2 <= --steps"
            )
    return chosen


def out_folder(args: argparse.Namespace, checkpoint: str) -> Path:
    given = args.out
    if given is not None:
        out = Path(given)
    else:
        path = Path(checkpoint)
        run = path if path.is_dir() else path.parent.parent
        out = run / "advice"
    if out.exists() and not out.is_dir():
        raise TBPTTError(f"--out {out} is a file; give a folder for advice.json and the plots")
    return out


def main(argv: Sequence[str]) -> int:
    """Run ``tbptt advise``; returns the exit code."""
    parser, args = parse_args(argv)
    for name in ("steps", "streams", "ends", "max_lag"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    diagnostics.advice.check_tolerance(args.tolerance)
    checkpoint: str = args.checkpoint
    out = out_folder(args, checkpoint)
    settings = EvalConfig(seed=args.seed, device=args.device)
    model, saved, config = load_model(checkpoint, settings)
    streams, _ = evaluation_data(config, saved, args.file, settings)
    batch = sample(streams, args.steps, args.streams).to(settings.device)
    steps = batch.inputs.shape[0]
    truncations = candidates(args.k, args.pairs, steps)
    loss_fn, _ = objective(config.data)
    advice = diagnostics.advise(
        model,
        batch.inputs,
        batch.targets,
        loss_fn,
        truncations,
        tolerance=args.tolerance,
        resets=batch.resets,
        mask=batch.mask,
        num_ends=args.ends,
        max_lag=args.max_lag,
        checkpoint=args.checkpointed,
    )
    out.mkdir(parents=True, exist_ok=True)
    summary = {"checkpoint": checkpoint, "streams": batch.inputs.shape[1], **advice.summary()}
    with atomic_write(out / "advice.json") as file:
        file.write((json.dumps(summary, indent=2) + "\n").encode())
    diagnostics.plot_flow(advice, out / "flow.png")
    diagnostics.plot_bias(advice, out / "bias.png")
    if args.json:
        print(json.dumps(summary))
        return 0
    print(
        f"sample: {batch.inputs.shape[1]} streams x {steps} steps; "
        f"*: cosine below {advice.tolerance}"
    )
    print(diagnostics.table(advice))
    print(diagnostics.verdict(advice))
    print(f"wrote {out / 'advice.json'}, {out / 'flow.png'} and {out / 'bias.png'}")
    return 0
