"""What a command shows: a progress bar on stderr and one record per line on stdout."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tqdm import tqdm


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


def output_mode(args: argparse.Namespace) -> str:
    """``quiet``, ``jsonl`` or ``text``, from the ``--quiet`` and ``--jsonl`` flags."""
    return "quiet" if args.quiet else "jsonl" if args.jsonl else "text"
