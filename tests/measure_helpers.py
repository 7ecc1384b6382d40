"""Shared helpers for the measurement-engine tests: fakes, tiny configs, a CLI runner.

Everything real here is tiny on purpose (channels 2–4, resolution 8, batch 1, one thread,
a few resets per sample) so the tests stay fast on a busy 2-core machine.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import numpy as np

from lenna.measure.config import MeasureConfig
from lenna.measure.runner import RunConfig, run_measurement

LENNA_SCRIPT = Path(sys.executable).parent / "lenna"

# A real but quick measurement: plain CI, 3..5 resets, stop at ±50 %.
FAST_RULE = {"min_resets": 3, "max_resets": 5, "rel": 0.5}


def fast_measure(**overrides) -> MeasureConfig:
    kw = {"rule": "ci", "rule_params": dict(FAST_RULE), "threads": 1, **overrides}
    return MeasureConfig(**kw)


def tiny_config(**overrides) -> RunConfig:
    """C 2–4, resolution 8, drift guard off, the fast rule."""
    kw = {
        "space": "lenna",
        "channels": (2, 4),
        "resolutions": (8,),
        "drift_every": 0,
        "measure": fast_measure(),
        **overrides,
    }
    return RunConfig(**kw)


def make_dataset(path: Path, n: int, **kw) -> Path:
    """A tiny dataset with ``n`` rows (``n = 0``: the file and its config, no rows)."""
    run_measurement(path, tiny_config(), n, **kw)
    return path


def rows(path: Path) -> dict[int, float]:
    """``sample_index -> latency_ms`` straight from the file (no LENNA code involved)."""
    con = sqlite3.connect(path, timeout=30)
    try:
        return dict(con.execute("SELECT sample_index, latency_ms FROM samples"))
    finally:
        con.close()


def count_rows(path: Path) -> int:
    return len(rows(path))


class FakeBench:
    """A bench with known values: reset ``r`` has per-pass times ``values_ms[r] + offsets_ms``.

    ``paths[r]`` is what ``reset`` returns (default: all zeros). Counts what the rule asked
    for, so a test can check the rule stopped exactly where it said.
    """

    def __init__(
        self,
        values_ms,
        paths=None,
        offsets_ms=(0.0,),
        num_edges: int = 15,
    ) -> None:
        self.values_ms = list(values_ms)
        self.paths = paths
        self.offsets_ms = np.asarray(offsets_ms, dtype=float)
        self.num_edges = num_edges
        self.resets = 0
        self.pass_calls: list[int] = []

    def reset(self) -> list[int]:
        self.resets += 1
        if self.resets > len(self.values_ms):
            raise AssertionError(f"the rule asked for reset {self.resets}, past the planned ones")
        i = self.resets - 1
        return list(self.paths[i]) if self.paths is not None else [0] * self.num_edges

    def passes(self, n: int) -> np.ndarray:
        self.pass_calls.append(n)
        v = self.values_ms[self.resets - 1]
        offs = np.resize(self.offsets_ms, n)
        return (v + offs) / 1e3


def all_text(result) -> str:
    """stdout and stderr of a CliRunner result together."""
    err = getattr(result, "stderr", "") or ""
    return result.output + ("" if err in result.output else err)


def one_line_error(result, needle: str) -> str:
    """Exit 2, exactly one non-empty line, containing ``needle``, no traceback."""
    text = all_text(result)
    assert result.exit_code == 2, text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert needle in lines[0], lines[0]
    assert "Traceback" not in text
    assert isinstance(result.exception, SystemExit), result.exception
    return lines[0]


def without_onnxruntime(monkeypatch) -> None:
    """Make ``import onnxruntime`` fail for the rest of the test, as on a machine without the
    onnx extra."""
    import builtins

    real = builtins.__import__

    def no_ort(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ort)
