"""Plot data as JSON in the layout PATo reads: `{"data": [{"x": [...], "y": [...]}]}`.

cryoemservices writes its drift plots this way (a plotly scatter trace); PATo's backend
(`parse_json_file`) takes `data[0].x` and `data[0].y` and pairs them up. Used for the
per-movie drift (`MotionCorrection.driftPlotFullPath`) and a tilt series' shifts
(`Tomogram.xyShiftPlot`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from emproc.io.atomic import write_json_atomic


def write_xy_json(
    x: Sequence[float],
    y: Sequence[float],
    path: str | os.PathLike[str],
    *,
    x_label: str = "",
    y_label: str = "",
) -> None:
    """Write one scatter trace of paired `x`, `y` values (rounded to 0.001) atomically."""
    if len(x) != len(y):
        raise ValueError(f"{path}: x and y differ in length ({len(x)} != {len(y)})")
    trace = {
        "x": [round(float(v), 3) for v in x],
        "y": [round(float(v), 3) for v in y],
        "type": "scatter",
        "mode": "lines+markers",
    }
    layout = {"xaxis": {"title": x_label}, "yaxis": {"title": y_label}}
    write_json_atomic(path, {"data": [trace], "layout": layout})
