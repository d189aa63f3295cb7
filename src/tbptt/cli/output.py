"""What a command shows: a progress bar on stderr (only on a terminal) and one record
per line on stdout."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from tqdm import tqdm


def format_value(value: Any) -> str:
    """A number short enough for a log line, never in exponent form from 0.001 up:
    four significant digits, whole numbers from 10,000 (``153500``, not ``1.535e+05``)."""
    if not isinstance(value, float) or not math.isfinite(value):
        return str(value)
    if abs(value) >= 1e4:
        return f"{value:.0f}"
    return f"{value:.4g}" if value == 0 or abs(value) >= 1e-3 else f"{value:.3e}"


def plural(count: int, word: str) -> str:
    """``1 update``, ``2 updates``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def progress_bar(total: int, unit: str, *, initial: int = 0, desc: str | None = None) -> tqdm[Any]:
    """A progress bar on stderr, drawn only when stderr is a terminal (a log file gets
    none), left on screen when it ends only if ``desc`` is unset."""
    return tqdm(
        total=total,
        initial=initial,
        unit=unit,
        desc=desc,
        file=sys.stderr,
        disable=None,  # None: off when the file is not a terminal
        leave=desc is None,
        dynamic_ncols=True,
    )


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
        if self.mode == "text":
            self.bar = progress_bar(total, "window", initial=done)

    def window(self, done: int, loss: float) -> None:
        """Advance the bar to ``done`` windows, showing the last window's loss (the
        trainer's ``progress``)."""
        if self.bar is not None:
            self.bar.update(done - self.bar.n)  # negative after a rollback
            self.bar.set_postfix(loss=format_value(loss), refresh=False)

    def record(self, record: dict[str, Any]) -> None:
        """Show one record the trainer logged (a trainer callback)."""
        if self.mode == "jsonl":
            print(json.dumps(record), flush=True)
        elif self.mode == "text":
            tqdm.write(format_record(record), file=sys.stdout)

    def finish(self, result: dict[str, Any], kind: str = "final") -> None:
        """Close the bar and show the run's last metrics as a record of ``kind``
        (``final``, or ``stopped`` for a run a signal stopped)."""
        if self.bar is not None:
            self.bar.close()
        record = {"kind": kind, **{key: value for key, value in result.items() if key != "kind"}}
        if self.mode == "jsonl":
            print(json.dumps(record), flush=True)
        elif self.mode == "text":
            print(format_record(record), flush=True)

    def report(self, report: dict[str, Any], text: str) -> None:
        """A report after training: ``text`` (text mode) or one JSON object."""
        if self.mode == "jsonl":
            print(json.dumps({"kind": "forecast", **report}), flush=True)
        elif self.mode == "text":
            print(text, flush=True)

    def note(self, text: str) -> None:
        """A remark for the person at the terminal (stderr; not in quiet mode)."""
        if self.mode != "quiet":
            print(text, file=sys.stderr)

    def warn(self, text: str) -> None:
        """What the person must know even in quiet mode, as errors are (stderr): a run
        stopped before its end and how to continue it."""
        print(text, file=sys.stderr)


def output_mode(args: argparse.Namespace) -> str:
    """``quiet``, ``jsonl`` or ``text``, from the ``--quiet`` and ``--jsonl`` flags."""
    return "quiet" if args.quiet else "jsonl" if args.jsonl else "text"
