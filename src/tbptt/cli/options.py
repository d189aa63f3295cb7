"""Command-line options built from the config dataclasses (:mod:`tbptt.cli.runconfig`):
one option per field, its help the field's docstring, its parsing the field's type, so
the help and config files never drift apart; and a parser whose errors are one line."""

from __future__ import annotations

import argparse
import difflib
import typing
from collections.abc import Callable
from dataclasses import MISSING, Field, fields, is_dataclass
from typing import Any, NoReturn

from tbptt.cli.runconfig import PATH_FIELDS, describe, field_docs, parse_option, split_optional
from tbptt.errors import quoted

FLAG_PRIORITY = ("train", "model", "data", "run")
"""A field name in two sections is ``--name`` in the first of these, ``--section-name``
in the other (``--seed`` seeds training, ``--data-seed`` a task's data)."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: the problem and where to look;
    a misspelt option gets the nearest one suggested."""

    subcommands: dict[str, Parser] | None = None
    """The subcommands' parsers, by name (on the ``tbptt`` parser)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")

    def parse_strictly(self, arguments: list[str]) -> argparse.Namespace:
        """The parsed ``arguments``; an unknown one is an error, from the subcommand's
        parser that would have taken it, with the nearest option it has."""
        args, unknown = self.parse_known_args(arguments)
        if unknown:
            command = getattr(args, "command", None)
            parser = (self.subcommands or {}).get(command or "", self)
            options = [name for action in parser._actions for name in action.option_strings]
            close = difflib.get_close_matches(unknown[0].split("=")[0], options, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            parser.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
        return args


def count(text: str) -> int:
    """An integer >= 1, as an argparse ``type``."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{quoted(text)} is not an integer >= 1")
    return value


def option_type(hint: Any) -> Callable[[str], Any]:
    """The argparse ``type`` for a field of type ``hint``."""

    def parse(text: str) -> Any:
        try:
            return parse_option(text, hint)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{quoted(text)} is not {describe(hint)}") from None

    return parse


def help_text(doc: str, item: Field[Any], optional: bool) -> str:
    """A field's help: its docstring with its default (unless the docstring says it,
    or it is empty) and how to unset it, before the closing full stop."""
    text = doc.replace("%", "%%")
    if item.default is not MISSING and item.default not in (None, "") and "(default" not in doc:
        unset = "; 'none' unsets it" if optional else ""
        stop = "." if text.endswith(".") else ""
        text = f"{text.removesuffix('.')} (default: {item.default}{unset}){stop}"
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


def add_output_options(parser: argparse.ArgumentParser, jsonl_help: str) -> None:
    """``--quiet`` and ``--jsonl``, which exclude each other."""
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--quiet", action="store_true", help="print nothing but errors")
    output.add_argument("--jsonl", action="store_true", help=jsonl_help)
