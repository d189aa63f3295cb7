"""The ``tbptt`` command line: ``train``, ``eval``, ``predict``, ``generate``, ``demo`` and
``advise``.

The options of ``train``, ``eval`` and ``generate`` are built from the config
dataclasses (:mod:`tbptt.cli.options`). Every error in the input ends the command
with one line on stderr, naming the problem and the fix, and exit code 2. SIGINT and
SIGTERM stop a command at any moment (SIGTERM as SIGINT does, so a run cleans up): a
run with a checkpoint to resume exits with 130 and says how to resume it, one
stopped before it saved anything leaves nothing and exits with 1.

Building the parser and printing help import no torch (``tbptt --help`` answers in a
tenth of a second); each subcommand's module, and torch, load when it runs.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType

import tbptt
from tbptt.cli.options import (
    Parser,
    add_config_options,
    add_output_options,
    count,
    options_of,
)
from tbptt.cli.output import Output, format_record, output_mode, plural
from tbptt.cli.runconfig import (
    SECTIONS,
    EvalConfig,
    GenerateConfig,
    PredictConfig,
    RunConfig,
    read_config_file,
    resolve_file,
)
from tbptt.cli.threads import THREADS_HELP
from tbptt.errors import Stopped, TBPTTError

DESCRIPTION = (
    "Train recurrent networks with exact full and truncated backpropagation through "
    "time, TBPTT(k1, k2): a gradient every k1 steps, flowing back k2 steps."
)
TRAIN_EXAMPLES = """examples:
  tbptt train --text corpus.txt --k1 32 --k2 64 --run-dir runs/corpus
  tbptt train --csv weather.csv --targets temp --horizon 24 --test-fraction 0.2
  tbptt train --task copy --length 20 --config copy.toml --lr 0.01
  tbptt train --resume runs/corpus --epochs 4

a config file (TOML) has sections [model], [data], [train] with the options below
as keys (underscores, not dashes) and run_dir at the top; options override it."""

FULL = (errno.ENOSPC, errno.EDQUOT)
"""Errors of a full disk (or quota)."""
TRAIN_SECTIONS: dict[str, type] = {**SECTIONS, "run": RunConfig}
"""The option groups of ``train``: the config file's sections, then the top-level keys."""


def build_parser() -> Parser:
    """The ``tbptt`` argument parser and its subcommands."""
    parser = Parser(prog="tbptt", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"tbptt {tbptt.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    formatter = argparse.RawDescriptionHelpFormatter
    train = commands.add_parser(
        "train",
        help="train a model on a text, CSV or token file or a built-in task",
        description=DESCRIPTION,
        epilog=TRAIN_EXAMPLES,
        formatter_class=formatter,
    )
    train.add_argument("--config", metavar="FILE", help="a TOML config file (or a config.json)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    add_output_options(train, "one JSON object per record on stdout")
    add_config_options(train, TRAIN_SECTIONS)
    evaluate = commands.add_parser(
        "eval", help="evaluate a checkpoint on a file", description="Evaluate a checkpoint."
    )
    evaluate.add_argument("checkpoint", help="a checkpoint, or a run directory (its best.pt)")
    evaluate.add_argument(
        "file", nargs="?", help="data like the run's (default: the run's validation data)"
    )
    evaluate.add_argument("--json", action="store_true", help="print one JSON line")
    add_config_options(evaluate, {"eval": EvalConfig})
    predict = commands.add_parser(
        "predict",
        help="write a forecasting run's forecasts (and a plot)",
        description="Write a CSV run's forecasts of its test split (or a FILE) to --out.",
    )
    predict.add_argument("checkpoint", help="a checkpoint, or a run directory (its best.pt)")
    predict.add_argument("file", nargs="?", help="a CSV file with the run's columns")
    add_config_options(predict, {"predict": PredictConfig})
    generate = commands.add_parser(
        "generate", help="sample text from a language model", description="Sample text."
    )
    generate.add_argument("checkpoint", help="a checkpoint, or a run directory (its best.pt)")
    add_config_options(generate, {"generate": GenerateConfig})
    add_demo_parser(commands)
    add_advise_parser(commands)
    parser.subcommands = commands.choices
    return parser


def add_demo_parser(commands: argparse._SubParsersAction[Parser]) -> None:
    """``tbptt demo``: its options (the demo itself is :mod:`tbptt.cli.demo`)."""
    demo = commands.add_parser(
        "demo",
        help="train one LSTM under several truncations; compare accuracy, time and memory",
        description=(
            "Train one LSTM on delayed recall under several truncations TBPTT(k1, k2) and "
            "full BPTT; print accuracy, time and activation memory against k2, and plot them."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    demo.add_argument("--delay", type=count, default=10, help="the recall delay")
    demo.add_argument("--epochs", type=count, default=10, help="passes over the data")
    demo.add_argument("--sequences", type=count, default=256, help="training sequences, 32 a batch")
    demo.add_argument("--seed", type=int, default=0, help="seeds data and weights")
    demo.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    demo.add_argument("--threads", type=count, metavar="N", help=THREADS_HELP)
    demo.add_argument("--out", default="runs/demo", help="where results.json and truncation.png go")


def add_advise_parser(commands: argparse._SubParsersAction[Parser]) -> None:
    """``tbptt advise``: its options (the command itself is :mod:`tbptt.cli.advise`)."""
    advise = commands.add_parser(
        "advise",
        help="choose k: truncation bias and gradient flow of a trained run",
        description=(
            "Measure how far gradients flow back and how far each truncation TBPTT(k1, k2) "
            "is from full BPTT on a sample of a run's data; recommend the smallest k2 "
            "whose gradient has cosine >= --tolerance to the full one."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    advise.add_argument("checkpoint", help="a checkpoint, or a run directory (its best.pt)")
    advise.add_argument(
        "file", nargs="?", help="data like the run's (default: the run's validation data)"
    )
    advise.add_argument("--steps", type=count, default=256, help="steps in the sample")
    advise.add_argument("--streams", type=count, default=8, help="streams in the sample")
    advise.add_argument(
        "--k",
        type=int,
        nargs="+",
        metavar="K",
        help="candidates TBPTT(k, k) (default: (k, k), (k/2, k) for k = 2, 4, ... < --steps)",
    )
    advise.add_argument(
        "--pairs", nargs="+", default=[], metavar="K1:K2", help="candidates TBPTT(k1, k2) too"
    )
    advise.add_argument("--tolerance", type=float, default=0.95, help="cosine to the full gradient")
    advise.add_argument(
        "--ends", type=count, default=8, help="loss steps followed back for the flow"
    )
    advise.add_argument(
        "--max-lag", type=count, help="follow gradients back this many steps (default: all)"
    )
    advise.add_argument(
        "--recompute",
        action="store_true",
        help="compute the full reference gradient with recomputed activations (less memory)",
    )
    advise.add_argument(
        "--checkpointed",
        action="store_true",
        help="Deprecated: the old name of --recompute (until the next release)",
    )
    advise.add_argument("--seed", type=int, help="a task run: the seed of the sample's data")
    advise.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    advise.add_argument("--threads", type=count, metavar="N", help=THREADS_HELP)
    advise.add_argument("--out", help="folder for advice.json and the plots (default: RUN/advice)")
    advise.add_argument("--json", action="store_true", help="print the summary as one JSON line")


def run_train(args: argparse.Namespace) -> int:
    try:
        return start_train(args)
    except Stopped:
        raise
    except KeyboardInterrupt as error:  # while torch loaded or the config was read
        raise stopped_early(args.resume) from error


def stopped_early(resume: str | None) -> Stopped:
    """How a ``train`` stopped before it reached its run is reported: nothing was
    written, and a resume's run is as it was (resumable if it has a checkpoint)."""
    if resume is None:
        return Stopped("", False)
    return Stopped(resume, (Path(resume) / "checkpoints" / "latest.pt").is_file())


def start_train(args: argparse.Namespace) -> int:
    """``tbptt train``: a new run, or ``--resume``."""
    from tbptt.cli import commands

    output, options = Output(output_mode(args)), options_of(args)
    if args.resume is not None:
        if args.config is not None or args.overwrite:
            raise TBPTTError("--resume uses the run's saved config: drop --config and --overwrite")
        return commands.resume(args.resume, options, output)
    file_values = read_config_file(args.config) if args.config is not None else {}
    config = resolve_file(args.config, file_values, options)
    return commands.train(config, overwrite=args.overwrite, output=output)


def run_eval(args: argparse.Namespace) -> int:
    from tbptt.cli import commands

    settings = EvalConfig(**options_of(args).get("eval", {}))
    metrics = commands.evaluate(args.checkpoint, args.file, settings)
    unknown = metrics.pop("unknown_tokens", None)
    if unknown:
        print(f"tbptt eval: {unknown_line(int(unknown), args.file)}", file=sys.stderr)
    if "methods" in metrics:  # a forecasting run's report
        from tbptt.cli.forecast_output import all_finite, format_report

        print(json.dumps(metrics) if args.json else format_report(metrics))
        if not all_finite(metrics):
            print("tbptt eval: warning: some metrics are not finite", file=sys.stderr)
        return 0
    if args.json:
        print(json.dumps(metrics if unknown is None else {**metrics, "unknown_tokens": unknown}))
    else:
        print(format_record({"kind": "eval", **metrics}).strip())
    if not all(math.isfinite(value) for value in metrics.values()):
        print("tbptt eval: warning: some metrics are not finite", file=sys.stderr)
    return 0


def run_generate(args: argparse.Namespace) -> int:
    from tbptt.cli import commands

    settings = GenerateConfig(**options_of(args).get("generate", {}))
    text, unknown = commands.generate(args.checkpoint, settings)
    if unknown:
        print(f"tbptt generate: {unknown_line(unknown, 'the prompt')}", file=sys.stderr)
    print(text)
    return 0


def unknown_line(count: int, where: str) -> str:
    """What to say of ``count`` tokens the run's vocabulary lacks, read as <unk>."""
    verb = "is" if count == 1 else "are"
    return (
        f"{plural(count, 'token')} {verb} not in the run's vocabulary in {where}, read as <unk> "
        "(--strict-vocabulary refuses them)"
    )


def run_demo(args: argparse.Namespace) -> int:
    from tbptt.cli import demo

    return demo.main(args)


def run_advise(args: argparse.Namespace) -> int:
    from tbptt.cli import advise

    return advise.main(args)


def run_predict(args: argparse.Namespace) -> int:
    from tbptt.cli import commands

    settings = PredictConfig(**options_of(args).get("predict", {}))
    written = commands.predict(args.checkpoint, args.file, settings)
    plot = f" and {written['plot']}" if written["plot"] else ""
    print(
        f"wrote {written['origins']} forecasts of the {written['data']} to {written['out']}{plot}"
    )
    return 0


HANDLERS = {
    "train": run_train,
    "eval": run_eval,
    "predict": run_predict,
    "generate": run_generate,
    "demo": run_demo,
    "advise": run_advise,
}
"""Each subcommand's handler; each imports its module (and torch) when it runs."""


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` as SIGINT does, so a
    command stopped either way cleans up (outside a training loop, which handles
    both itself); only in the main thread, where signals can be handled."""

    def interrupt(number: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt("SIGTERM")

    previous = None
    with suppress(ValueError):
        previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tbptt`` command; returns the exit code."""
    with sigterm_interrupts():
        return run(list(sys.argv[1:] if argv is None else argv))


def run(arguments: list[str]) -> int:
    """The command ``arguments`` name; its exit code."""
    try:
        parser = build_parser()
        args = parser.parse_strictly(arguments)
        if args.command is None:
            parser.print_help()
            return 0
        return HANDLERS[args.command](args)
    except TBPTTError as error:
        print(f"tbptt: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a folder that cannot be created, a full disk
        where = f": {error.filename}" if error.filename else ""
        problem = error.strerror or str(error)
        full = error.errno in FULL
        fix = "free some disk space" if full else "check the path and its permissions"
        print(f"tbptt: error{where}: {problem}; {fix}", file=sys.stderr)
        return 2
    except Stopped as stop:
        if stop.resumable:
            print(
                f"tbptt: stopped; continue with: tbptt train --resume {stop.run_dir}",
                file=sys.stderr,
            )
            return 130
        print(
            "tbptt: stopped before the run saved its first checkpoint, so nothing was kept "
            "and there is nothing to resume; run the command again",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("tbptt: interrupted", file=sys.stderr)
        return 130
