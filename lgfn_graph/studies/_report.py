"""Study reports: mean and spread over seeds, plots with a shaded spread, and the provenance line
every table starts with (tables and PNGs are written by :mod:`lgfn_graph.files`)."""
from __future__ import annotations

import datetime
import os
import platform
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..files import atomic_write


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; 0 for a single value) of ``S`` values."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("mean_std of no values")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def cell(mean: float, std: float, digits: int) -> str:
    """``"mean ± std"`` with ``digits`` decimals."""
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def provenance(command: str) -> str:
    """The date, machine and command of a study, as a Markdown paragraph."""
    return (f"{datetime.date.today()}, {platform.machine()} CPU with {os.cpu_count()} cores, torch "
            f"{torch.__version__}; command: `{command}`")


def band(ax, x: Sequence[float], ys: np.ndarray, label: str, marker: str | None = None) -> None:
    """Plot the mean over seeds of ``ys [S, P]`` against ``x [P]`` with the band of one standard
    deviation either side shaded (none for one seed)."""
    ys = np.asarray(ys, dtype=np.float64)
    m = ys.mean(0)
    (line,) = ax.plot(x, m, label=label, marker=marker)
    if ys.shape[0] > 1:
        s = ys.std(0, ddof=1)
        ax.fill_between(x, m - s, m + s, color=line.get_color(), alpha=0.2, linewidth=0)


def publish(files: Sequence[Path], folder: str | Path) -> None:
    """Copy report files into ``folder`` (e.g. ``studies/results/<study>``), each atomically."""
    for src in files:
        with atomic_write(Path(folder) / src.name, "wb") as f, open(src, "rb") as g:
            shutil.copyfileobj(g, f)
