"""What a forecasting run shows and writes: the report as a table, the predictions
file (CSV or .npy) and the plot of truth against forecasts (see
:mod:`tbptt.cli.forecasting` for how they are computed)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from tbptt.data import Series
from tbptt.errors import TBPTTError
from tbptt.figures import pyplot, save_figure
from tbptt.files import atomic_write
from tbptt.forecast import Transforms


def predictions_table(
    transforms: Transforms, series: Series, origins: np.ndarray, forecasts: np.ndarray
) -> tuple[list[str], list[list[str]]]:
    """The header and rows of a predictions CSV: the origin's time (or row), then
    ``COLUMN+1 .. COLUMN+H`` for each target, in the data's units."""
    names = transforms.target_columns
    header = ["time" if series.times is not None else "row"]
    header += [f"{name}+{lead}" for name in names for lead in range(1, transforms.horizon + 1)]
    rows = []
    for origin, values in zip(origins, forecasts, strict=True):
        label = series.times[origin] if series.times is not None else str(origin)
        rows.append([label, *(f"{v:.7g}" for v in values.T.reshape(-1))])
    return header, rows


def write_predictions(
    path: str, header: list[str], rows: list[list[str]], forecasts: np.ndarray
) -> None:
    """Write the predictions as CSV, or as a ``.npy`` array ``(M, H, O)``."""
    if path.endswith(".npy"):
        buffer = io.BytesIO()
        np.save(buffer, forecasts)
        payload = buffer.getvalue()
    else:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        payload = text.getvalue().encode()
    with atomic_write(Path(path)) as file:
        file.write(payload)


def plot_forecast(
    path: str,
    transforms: Transforms,
    series: Series,
    origins: np.ndarray,
    forecasts: np.ndarray,
    leads: list[int],
) -> None:
    """Truth against the forecasts at ``leads``, each drawn at the step it forecasts,
    one panel per target."""
    plt = pyplot()
    count = len(transforms.target_columns)
    figure, axes = plt.subplots(count, 1, figsize=(10, 3 * count), squeeze=False)
    span = np.arange(origins[0], min(origins[-1] + transforms.horizon + 1, len(series)))
    for index, (axis, name) in enumerate(zip(axes[:, 0], transforms.target_columns, strict=True)):
        axis.plot(span, series.targets[span, index], color="black", lw=1.2, label="truth")
        for lead in leads:
            axis.plot(origins + lead, forecasts[:, lead - 1, index], lw=1, label=f"lead {lead}")
        axis.set_ylabel(name)
        axis.legend(loc="upper left", fontsize=8)
    axes[-1, 0].set_xlabel("step" if series.times is None else "step (row of the series)")
    save_figure(figure, path)


def check_leads(leads: list[int] | None, horizon: int) -> list[int]:
    """The leads to plot (default: 1 and the horizon), each in ``[1, horizon]``."""
    chosen = sorted({1, horizon}) if not leads else leads
    bad = [lead for lead in chosen if not 1 <= lead <= horizon]
    if bad:
        raise TBPTTError(f"--leads {bad[0]} is not in [1, {horizon}]; choose leads of the run")
    return chosen


def format_report(report: dict[str, Any]) -> str:
    """A forecast report as a table: one row per method, then the verdict and the
    error per lead (a few leads for long horizons)."""
    columns = ("mse", "mae", "rmse", "mse_scaled", "mae_scaled", "skill")
    width = max(len(name) for name in report["methods"]) + 2
    lines = [
        f"forecast  {report['data']}: {report['origins']} origins, leads 1..{report['horizon']}",
        f"{'':{width}}" + "".join(f"{c:>12}" for c in columns),
    ]
    for name, metrics in report["methods"].items():
        lines.append(f"{name:{width}}" + "".join(f"{metrics[c]:12.5g}" for c in columns))
    lines.append(report["verdict"])
    horizon = report["horizon"]
    shown = sorted({1, *range(0, horizon + 1, max(horizon // 6, 1))} - {0} | {horizon})
    lines.append(f"{'mse by lead':{width}}" + "".join(f"{'lead ' + str(h):>12}" for h in shown))
    for name, metrics in report["methods"].items():
        values = "".join(f"{metrics['mse_by_lead'][h - 1]:12.5g}" for h in shown)
        lines.append(f"{name:{width}}{values}")
    return "\n".join(lines)


def all_finite(report: dict[str, Any]) -> bool:
    """Whether every number of a report is finite (the skill may be NaN)."""
    return all(
        math.isfinite(metrics[key])
        for metrics in report["methods"].values()
        for key in ("mse", "mae")
    )
