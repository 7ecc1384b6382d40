"""JSON has no NaN or infinity: figures that were not measured are written as null."""

from __future__ import annotations

import json
import math
from pathlib import Path

from lenna.atomic import write_text


def finite(x: object) -> object:
    """``x`` with every non-finite float replaced by ``None`` (recursively)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [finite(v) for v in x]
    return x


def dumps(x: object, **kw: object) -> str:
    return json.dumps(finite(x), allow_nan=False, default=str, **kw)


def write_json(path: str | Path, x: object) -> Path:
    """Write atomically (beside, fsync, rename)."""
    return write_text(path, dumps(x, indent=2))
