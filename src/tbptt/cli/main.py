"""The ``tbptt`` command line: ``train``, ``eval``, ``generate``, ``demo`` and ``advise``.

The options of ``train``, ``eval`` and ``generate`` are built from the config
dataclasses (:mod:`tbptt.cli.options`). Every error in the input ends the command
with one line on stderr, naming the problem and the fix, and exit code 2. SIGINT and
SIGTERM stop a command at any moment (SIGTERM as SIGINT does, so a run cleans up): a
run with a checkpoint to resume exits with 130 and says how to resume it, one
stopped before it saved anything leaves nothing and exits with 1.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import math
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from types import FrameType

import tbptt
from tbptt.cli.options import Parser, add_config_options, add_output_options, options_of
from tbptt.cli.output import Output, format_record, output_mode
from tbptt.cli.runconfig import (
    SECTIONS,
    EvalConfig,
    GenerateConfig,
    RunConfig,
    read_config_file,
    resolve,
)
from tbptt.errors import Stopped, TBPTTError

DESCRIPTION = (
    "Train recurrent networks with exact full and truncated backpropagation through "
    "time, TBPTT(k1, k2): a gradient every k1 steps, flowing back k2 steps."
)
TRAIN_EXAMPLES = """examples:
  tbptt train --text corpus.txt --k1 32 --k2 64 --run-dir runs/corpus
  tbptt train --csv weather.csv --inputs temp wind --targets temp --horizon 1
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
    generate = commands.add_parser(
        "generate", help="sample text from a language model", description="Sample text."
    )
    generate.add_argument("checkpoint", help="a checkpoint, or a run directory (its best.pt)")
    add_config_options(generate, {"generate": GenerateConfig})
    commands.add_parser("demo", help="the demo (tbptt demo --help)", add_help=False)
    commands.add_parser(
        "advise",
        help="choose k: truncation bias and gradient flow of a run (tbptt advise --help)",
        add_help=False,
    )
    return parser


def run_train(args: argparse.Namespace) -> int:
    from tbptt.cli import commands

    output, options = Output(output_mode(args)), options_of(args)
    if args.resume is not None:
        if args.config is not None or args.overwrite:
            raise TBPTTError("--resume uses the run's saved config: drop --config and --overwrite")
        return commands.resume(args.resume, options, output)
    file_values = read_config_file(args.config) if args.config is not None else {}
    return commands.train(resolve(file_values, options), overwrite=args.overwrite, output=output)


def run_eval(args: argparse.Namespace) -> int:
    from tbptt.cli import commands

    settings = EvalConfig(**options_of(args).get("eval", {}))
    metrics = commands.evaluate(args.checkpoint, args.file, settings)
    if args.json:
        print(json.dumps(metrics))
    else:
        print(format_record({"kind": "eval", **metrics}).strip())
    if not all(math.isfinite(value) for value in metrics.values()):
        print("tbptt eval: warning: some metrics are not finite", file=sys.stderr)
    return 0


def run_generate(args: argparse.Namespace) -> int:
    from tbptt.cli import commands

    settings = GenerateConfig(**options_of(args).get("generate", {}))
    print(commands.generate(args.checkpoint, settings))
    return 0


HANDLERS = {"train": run_train, "eval": run_eval, "generate": run_generate}
OWN_PARSERS = {"demo": "tbptt.cli.demo", "advise": "tbptt.cli.advise"}
"""Subcommands that parse their own options: their modules, imported only when asked for."""


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
        if arguments and arguments[0] in OWN_PARSERS:
            return int(importlib.import_module(OWN_PARSERS[arguments[0]]).main(arguments[1:]))
        parser = build_parser()
        args = parser.parse_args(arguments)
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
