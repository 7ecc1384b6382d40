"""The cross-file case of ``measure_repeatability.py``: the same blocks in separate files.

Each repetition is a fresh process running ``lenna measure`` into a new file, so everything a
file does for itself (its calibration included) is part of the figure, as when a user measures
twice. Two arms, interleaved file by file so slow spells hit both:

- ``shared`` (LENNA's default): one machine calibration, made by the first file into an empty
  cache (three calibrations: the fastest reference time, the median anchor ratios) and taken
  from the cache by the next;
- ``per-file`` (LENNA before it): each file calibrates its own ``Z0`` and anchors once, in an
  empty cache of its own.

For every pair of files, the median |Δ|/mean over the blocks; each file's ``Z0`` and wall time
(calibration included).
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLI = "import sys; from lenna.cli import main; sys.argv[0] = 'lenna'; main()"
PER_FILE = (
    "import sys; import lenna.measure.machine_calibration as m; m.REPEATS = 1; "
    "from lenna.cli import main; sys.argv[0] = 'lenna'; main()"
)


def measure_file(out: Path, cache: Path, code: str, n: int, seed: int, threads: int) -> float:
    """``lenna measure`` of ``n`` lenna blocks into ``out`` in a fresh process; wall seconds."""
    env = {**os.environ, "LENNA_CACHE_DIR": str(cache)}
    args = ["--space", "lenna", "--out", str(out), "-n", str(n), "--seed", str(seed)]
    args += ["--threads", str(threads), "--drift-every", "0"]
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code, "measure", *args],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def read(path: Path) -> tuple[np.ndarray, float]:
    con = sqlite3.connect(path)
    try:
        y = np.array(
            [v for (v,) in con.execute("SELECT latency_ms FROM samples ORDER BY sample_index")]
        )
        (z0,) = con.execute("SELECT value FROM meta WHERE key = 'reference_ms'").fetchone()
    finally:
        con.close()
    return y, float(z0)


ARMS = {"shared": CLI, "per-file": PER_FILE}


def cross_file(
    files: int, samples: int, seed: int, threads: int, arms: tuple[str, ...] = tuple(ARMS)
) -> list[str]:
    """Run the ``arms`` (both by default), ``files`` files each; the Markdown lines of the
    result."""
    arms = {a: ARMS[a] for a in arms}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        walls: dict[str, list[float]] = {a: [] for a in arms}
        for k in range(files):
            for arm, code in arms.items():
                cache = tmp / ("cache-shared" if arm == "shared" else f"cache-{arm}-{k}")
                out = tmp / f"{arm}-{k}.db"
                walls[arm].append(measure_file(out, cache, code, samples, seed, threads))
                print(f"{arm} file {k + 1}: {walls[arm][-1]:.1f} s", flush=True)
        lines = [
            f"Cross-file: {files} files per arm of the same {samples} blocks (lenna, sampler "
            f"seed {seed}, every default but `--drift-every 0`, {threads} thread(s)), each "
            "written by a fresh `lenna measure` process"
            + (", the arms interleaved file by file." if len(arms) > 1 else "."),
            "",
            "| arm | pairs: median \\|Δ\\|/mean | worst pair | Z0 of the files (ms) "
            "| wall per file, calibration included (s) |",
            "|---|---|---|---|---|",
        ]
        for arm in arms:
            data = [read(tmp / f"{arm}-{k}.db") for k in range(files)]
            pairs = []
            for (ya, _), (yb, _) in itertools.combinations(data, 2):
                pairs.append(float(np.median(np.abs(ya - yb) / ((ya + yb) / 2)) * 100))
            lines.append(
                f"| {arm} | {', '.join(f'{p:.2f} %' for p in pairs)} | {max(pairs):.2f} % "
                f"| {', '.join(f'{z:.3f}' for _, z in data)} "
                f"| {', '.join(f'{w:.0f}' for w in walls[arm])} |"
            )
    return lines
