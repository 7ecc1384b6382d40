"""The shipped dataset a benchmark trains its predictor on when none is given.

One place, so every script moves to a newer file together: the best-judged complete file of
each space and runtime, measured with every default of its day on one quiet host: the
default sampler's (version 3) in eager mode, version 4's under ONNX Runtime, where it won on
cells of mostly cheap ops and lost nothing beyond a split's noise elsewhere
(benchmarks/HISTORY.md, "Sampler version 4"). Its machine is not yours: pass
``--predictor-data`` with a file measured where the benchmark runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

DATA = Path(__file__).parent / "data"
SHIPPED = {
    ("lenna", "torch"): DATA / "lenna-v3-zen5.db",
    ("darts", "torch"): DATA / "darts-v3-zen5.db",
    ("lenna", "onnxruntime"): DATA / "lenna-ort-v4-zen5.db",
    ("darts", "onnxruntime"): DATA / "darts-ort-v4-zen5.db",
}


# defaults whose labels an ORT method change has since altered, until measured again; a
# benchmark that trains on one says so (tests/test_benchmark_scripts.py keeps this list true)
STALE = {
    ("darts", "onnxruntime"): (
        "its labels predate graphs version 2 (a factorised reduce's Pad node, which the "
        "deployed graph lacks, reads such reduction cells high; docs/benchmarks.md, "
        "'The datasets in benchmarks/data')"
    ),
}


def shipped(space: str, backend: str = "torch") -> Path:
    """The default dataset of ``space`` under ``backend``."""
    try:
        path = SHIPPED[(space, backend)]
    except KeyError:
        raise SystemExit(f"no shipped dataset for space {space!r}: pass --predictor-data") from None
    if (space, backend) in STALE:
        print(f"note: {path.name}: {STALE[(space, backend)]}", file=sys.stderr)
    return path


def described(backend: str = "torch") -> str:
    """``lenna: PATH, darts: PATH`` for a --help text."""
    return ", ".join(f"{s}: {p.name}" for (s, b), p in SHIPPED.items() if b == backend)
