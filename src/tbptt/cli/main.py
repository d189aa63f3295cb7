"""The ``tbptt`` command line: ``train``, ``eval``, ``generate``, ``demo`` and ``advise``.

The options of ``train``, ``eval`` and ``generate`` are built from the config
dataclasses (:mod:`tbptt.config`): one option per field, its help the field's
docstring, its parsing the field's type, so the help and config files never drift
apart. Every error in the input ends the command with one line on stderr, naming the
problem and the fix, and exit code 2; a run stopped by SIGINT/SIGTERM exits with 130
after writing its checkpoint.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import math
import sys
import typing
from collections.abc import Callable, Sequence
from dataclasses import MISSING, Field, fields, is_dataclass
from typing import Any, NoReturn

from tqdm import tqdm

import tbptt
from tbptt.config import (
    PATH_FIELDS,
    SECTIONS,
    EvalConfig,
    GenerateConfig,
    RunConfig,
    describe,
    field_docs,
    parse_option,
    read_config_file,
    resolve,
    split_optional,
)
from tbptt.errors import TBPTTError

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
FLAG_PRIORITY = ("train", "model", "data", "run")
"""A field name in two sections is ``--name`` in the first of these, ``--section-name``
in the other (``--seed`` seeds training, ``--data-seed`` a task's data)."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: the problem and where to look."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def option_type(hint: Any) -> Callable[[str], Any]:
    """The argparse ``type`` for a field of type ``hint``."""

    def parse(text: str) -> Any:
        try:
            return parse_option(text, hint)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {describe(hint)}") from None

    return parse


def help_text(doc: str, item: Field[Any], optional: bool) -> str:
    """A field's help: its docstring, its default and how to unset it."""
    text = doc.replace("%", "%%")
    if item.default is not MISSING and item.default is not None:
        unset = "; 'none' unsets it" if optional else ""
        text += f" (default: {item.default}{unset})"
    return text


def add_field_option(group: Any, section: str, cls: type, item: Field[Any], flag: str) -> None:
    """Add the option ``--flag`` for the field ``item`` of ``cls``, stored as
    ``section.name`` (see :func:`options_of`)."""
    hint = typing.get_type_hints(cls)[item.name]
    base, optional = split_optional(hint)
    kwargs: dict[str, Any] = {
        "dest": f"{section}.{item.name}",
        "default": argparse.SUPPRESS,
        "help": help_text(field_docs(cls).get(item.name, ""), item, optional),
    }
    if base is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(base) is list:
        kwargs.update(nargs="+", metavar="COLUMN")
    else:
        metavar = "FILE" if item.name in PATH_FIELDS else item.name.upper()
        kwargs.update(type=option_type(hint), metavar=metavar)
    group.add_argument(f"--{flag.replace('_', '-')}", **kwargs)


def option_fields(cls: type) -> list[Field[Any]]:
    """The fields of ``cls`` that are options (not whole sections)."""
    hints = typing.get_type_hints(cls)
    return [item for item in fields(cls) if not is_dataclass(hints[item.name])]


def add_config_options(parser: argparse.ArgumentParser, sections: dict[str, type]) -> None:
    """One option group per section, one option per field (see ``FLAG_PRIORITY``)."""
    flags: dict[tuple[str, str], str] = {}
    taken: set[str] = set()
    ranked = sorted(sections, key=lambda s: FLAG_PRIORITY.index(s) if s in FLAG_PRIORITY else -1)
    for section in ranked:
        for item in option_fields(sections[section]):
            flags[section, item.name] = (
                item.name if item.name not in taken else f"{section}_{item.name}"
            )
            taken.add(item.name)
    for section, cls in sections.items():
        group = parser.add_argument_group(f"{section} options", cls.__doc__)
        for item in option_fields(cls):
            add_field_option(group, section, cls, item, flags[section, item.name])


def options_of(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The config options given on the command line: ``{section: {field: value}}``."""
    values: dict[str, dict[str, Any]] = {}
    for dest, value in vars(args).items():
        if "." in dest:
            section, name = dest.split(".", 1)
            values.setdefault(section, {})[name] = value
    return values


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


def add_output_options(parser: argparse.ArgumentParser, jsonl_help: str) -> None:
    """``--quiet`` and ``--jsonl``, which exclude each other."""
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--quiet", action="store_true", help="print nothing but errors")
    output.add_argument("--jsonl", action="store_true", help=jsonl_help)


def format_value(value: Any) -> str:
    """A number short enough for a log line."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_record(record: dict[str, Any]) -> str:
    """One fixed-format line: the kind, then every key and value in order."""
    parts = [f"{record.get('kind', ''):5}"]
    parts += [f"{key} {format_value(v)}" for key, v in record.items() if key != "kind"]
    return "  ".join(parts)


class Output:
    """What a training command shows: a progress bar on stderr (windows per second,
    loss, ETA) and one line per record on stdout (``text``), one JSON object per record
    on stdout (``jsonl``), or nothing but errors (``quiet``)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.bar: tqdm[Any] | None = None

    def start(self, total: int, done: int) -> None:
        """Open the progress bar: ``total`` windows, ``done`` of them already."""
        if self.mode == "text":  # disable=None: no bar when stderr is not a terminal
            self.bar = tqdm(total=total, initial=done, unit="window", file=sys.stderr, disable=None)

    def record(self, record: dict[str, Any]) -> None:
        """Show one record the trainer logged (a trainer callback)."""
        if self.mode == "jsonl":
            print(json.dumps(record), flush=True)
        elif self.mode == "text":
            if self.bar is not None:
                self.bar.update(max(record["window"] - self.bar.n, 0))
                if "loss" in record:  # advice and rollback records have none
                    self.bar.set_postfix(loss=format_value(record["loss"]), refresh=False)
            tqdm.write(format_record(record), file=sys.stdout)

    def finish(self, result: dict[str, Any]) -> None:
        """Close the bar and show the final metrics."""
        if self.bar is not None:
            self.bar.close()
        if self.mode == "jsonl":
            print(json.dumps({"kind": "final", **result}), flush=True)
        elif self.mode == "text":
            print(format_record({"kind": "final", **result}), flush=True)

    def note(self, text: str) -> None:
        """A remark for the person at the terminal (stderr; not in quiet mode)."""
        if self.mode != "quiet":
            print(text, file=sys.stderr)


def output_mode(args: argparse.Namespace) -> str:
    return "quiet" if args.quiet else "jsonl" if args.jsonl else "text"


def run_train(args: argparse.Namespace) -> int:
    from tbptt import commands

    output, options = Output(output_mode(args)), options_of(args)
    if args.resume is not None:
        if args.config is not None or args.overwrite:
            raise TBPTTError("--resume uses the run's saved config: drop --config and --overwrite")
        return commands.resume(args.resume, options, output)
    file_values = read_config_file(args.config) if args.config is not None else {}
    return commands.train(resolve(file_values, options), overwrite=args.overwrite, output=output)


def run_eval(args: argparse.Namespace) -> int:
    from tbptt import commands

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
    from tbptt import commands

    settings = GenerateConfig(**options_of(args).get("generate", {}))
    print(commands.generate(args.checkpoint, settings))
    return 0


HANDLERS = {"train": run_train, "eval": run_eval, "generate": run_generate}
OWN_PARSERS = {"demo": "tbptt.demo", "advise": "tbptt.advise"}
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
