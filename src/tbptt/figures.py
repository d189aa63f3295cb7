"""Figures as files: matplotlib without a display, and one way to save a figure."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tbptt.files import atomic_write


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed), imported only when
    a figure is drawn: matplotlib is needed for plots alone."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def save_figure(figure: Any, path: str | os.PathLike[str]) -> None:
    """Lay ``figure`` out tightly, write it to ``path`` whole or not at all (in the
    format its suffix names, PNG without one) at 100 dpi, and close it."""
    suffix = Path(path).suffix.lstrip(".").lower()
    figure.tight_layout()
    with atomic_write(path) as file:
        figure.savefig(file, format=suffix or "png", dpi=100)
    pyplot().close(figure)
