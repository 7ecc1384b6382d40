"""Every benchmark script still imports and explains itself: ``--help`` exits 0 with usage.

The scripts run for minutes to hours, so nothing else in the test run executes them; an
import or argument-parser broken by a change elsewhere would otherwise show only when someone
next records figures. All scripts run in one subprocess (one torch import)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))

DRIVER = """
import contextlib, io, json, runpy, sys
out = {}
for path in sys.argv[1:]:
    sys.argv = [path, "--help"]
    buf = io.StringIO()
    code = None
    with contextlib.redirect_stdout(buf):
        try:
            runpy.run_path(path, run_name="__main__")
        except SystemExit as e:
            code = e.code
    out[path] = [code, buf.getvalue()]
print(json.dumps(out))
"""


def test_there_are_benchmark_scripts():
    names = {p.name for p in SCRIPTS}
    assert {"measure_repeatability.py", "label_bias.py", "predictor_accuracy.py"} <= names


def test_every_benchmark_script_answers_help():
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, *map(str, SCRIPTS)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=BENCHMARKS.parent,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for path in map(str, SCRIPTS):
        code, text = results[path]
        assert code == 0, f"{path}: exit {code} (None: it ran instead of answering --help)"
        assert "usage:" in text, f"{path}: no usage text"
        if "publish" in Path(path).read_text():  # it appends to RESULTS.md: a way not to
            assert "--no-record" in text, f"{path}: records, but has no --no-record"
