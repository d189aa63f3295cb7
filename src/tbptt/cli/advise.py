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
import sys
from pathlib import Path

import torch

from tbptt import diagnostics
from tbptt.cli.commands import checkpoint_file, evaluation_data, load_model
from tbptt.cli.output import progress_bar
from tbptt.cli.runconfig import EvalConfig
from tbptt.cli.rundata import objective
from tbptt.cli.schema import check_recorded_files
from tbptt.cli.threads import use_threads
from tbptt.data import Batch, Streams
from tbptt.errors import TBPTTError, quoted
from tbptt.files import atomic_write


def pair(text: str) -> tuple[int, int]:
    """``K1:K2`` as a pair of ints."""
    try:
        k1, k2 = (int(part) for part in text.split(":"))
    except ValueError:
        raise TBPTTError(f"--pairs takes K1:K2 with integers, got {quoted(text)}") from None
    return k1, k2


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
    if not chosen:
        raise TBPTTError(
            f"a sample of {steps} step(s) leaves no truncation to compare with full BPTT "
            "(the default candidates are k = 2, 4, 8, ... below --steps); raise --steps, "
            "or give --k or --pairs"
        )
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


def main(args: argparse.Namespace) -> int:
    """Run ``tbptt advise`` with its options (:mod:`tbptt.cli.main`); returns the exit
    code."""
    diagnostics.advice.check_tolerance(args.tolerance)
    use_threads(args.threads)
    checkpoint: str = args.checkpoint
    out = out_folder(args, checkpoint)
    if args.checkpointed:
        print("tbptt advise: --checkpointed is deprecated: it is now --recompute", file=sys.stderr)
    settings = EvalConfig(seed=args.seed, device=args.device)
    model, saved, config = load_model(checkpoint, settings)
    if args.file is None:
        check_recorded_files(checkpoint_file(checkpoint), config)
    streams, _, _ = evaluation_data(config, saved, args.file, settings)
    batch = sample(streams, args.steps, args.streams).to(settings.device)
    steps = batch.inputs.shape[0]
    truncations = candidates(args.k, args.pairs, steps)
    loss_fn, _ = objective(config.data)
    with progress_bar(len(truncations) + 2, "gradient", desc="advise") as bar:
        advice = diagnostics.advise(
            model,
            loss_fn,
            batch.inputs,
            batch.targets,
            truncations,
            tolerance=args.tolerance,
            resets=batch.resets,
            mask=batch.mask,
            num_ends=args.ends,
            max_lag=args.max_lag,
            recompute=args.recompute or args.checkpointed,
            progress=bar.update,
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
