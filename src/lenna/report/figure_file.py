"""A figure written as every file a user keeps is: atomically.

Why: ``savefig`` writes straight to its target, so a full disk or a Ctrl-C mid-write left a
truncated image where the user's previous figure was. The format comes from the target's
suffix, since the temporary name beside it has none.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from lenna.atomic import write_with


def save_figure(fig: Figure, out: str | Path, dpi: int) -> Path:
    """Write ``fig`` to ``out`` (png, svg, pdf, … by its suffix; png without one), replacing
    a previous file only once the new one is whole; the figure is closed either way."""
    out = Path(out)
    fmt = out.suffix.lstrip(".").lower() or "png"
    try:
        return write_with(out, lambda tmp: fig.savefig(tmp, dpi=dpi, format=fmt))
    finally:
        plt.close(fig)
