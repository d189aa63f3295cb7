"""The ``tbptt`` command line: ``train``, ``eval``, ``predict``, ``generate``, ``demo`` and
``advise``.

The options of ``train``, ``eval`` and ``generate`` are built from the config
dataclasses (:mod:`tbptt.cli.options`). Every error in the input ends the command
with one line on stderr, naming the problem and the fix, and exit code 2; a run
stopped by SIGINT/SIGTERM exits with 130 after writing its checkpoint.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import math
import sys
from collections.abc import Sequence

import tbptt
from tbptt.cli.options import Parser, add_config_options, add_output_options, options_of
from tbptt.cli.output import Output, format_record, output_mode
from tbptt.cli.runconfig import (
    SECTIONS,
    EvalConfig,
    GenerateConfig,
    PredictConfig,
    RunConfig,
    read_config_file,
    resolve,
)
from tbptt.errors import TBPTTError

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
    if "methods" in metrics:  # a forecasting run's report
        from tbptt.cli.forecast_output import all_finite, format_report

        print(json.dumps(metrics) if args.json else format_report(metrics))
        if not all_finite(metrics):
            print("tbptt eval: warning: some metrics are not finite", file=sys.stderr)
        return 0
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


def run_predict(args: argparse.Namespace) -> int:
    from tbptt.cli import commands

    settings = PredictConfig(**options_of(args).get("predict", {}))
    written = commands.predict(args.checkpoint, args.file, settings)
    plot = f" and {written['plot']}" if written["plot"] else ""
    print(
        f"wrote {written['origins']} forecasts of the {written['data']} to {written['out']}{plot}"
    )
    return 0


HANDLERS = {"train": run_train, "eval": run_eval, "predict": run_predict, "generate": run_generate}
OWN_PARSERS = {"demo": "tbptt.cli.demo", "advise": "tbptt.cli.advise"}
"""Subcommands that parse their own options: their modules, imported only when asked for."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tbptt`` command; returns the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
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
    except KeyboardInterrupt:
        print("tbptt: interrupted", file=sys.stderr)
        return 130
