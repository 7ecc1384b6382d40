"""Every benchmark script still imports and explains itself: ``--help`` exits 0 with usage.

The scripts run for minutes to hours, so nothing else in the test run executes them; an
import or argument-parser broken by a change elsewhere would otherwise show only when someone
next records figures. All scripts run in one subprocess (one torch import)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
SCRIPTS = sorted(
    p
    for p in [*BENCHMARKS.glob("*.py"), *BENCHMARKS.glob("diagnostics/*.py")]
    if not p.name.startswith("_")
    # the fleet benchmark needs the optional `ray` extra (part of `dev`, so CI has it)
    and (p.name != "fleet_scaling.py" or importlib.util.find_spec("ray") is not None)
)

# Each script runs with ``--help`` under an alarm, with a stand-in ``_record`` whose publish
# raises: a script that ran instead of answering could neither hang the test nor append to
# RESULTS.md. Any exception is kept per script, so one broken script does not hide the rest.
DRIVER = """
import contextlib, io, json, runpy, signal, sys, traceback, types
stub = types.ModuleType("_record")
def refuse(*a, **k):
    raise RuntimeError("ran the benchmark instead of answering --help")
stub.publish = stub.publish_cpu = stub.record = refuse
sys.modules["_record"] = stub
def alarm(*a):
    raise TimeoutError("still running after 60 s")
signal.signal(signal.SIGALRM, alarm)
out = {}
for path in sys.argv[1:]:
    sys.argv = [path, "--help"]
    buf, code, error = io.StringIO(), None, ""
    signal.alarm(60)
    with contextlib.redirect_stdout(buf):
        try:
            runpy.run_path(path, run_name="__main__")
        except SystemExit as e:
            code = e.code
        except BaseException:
            error = traceback.format_exc(limit=3)
    signal.alarm(0)
    out[path] = [code, buf.getvalue(), error]
print(json.dumps(out))
"""


def test_there_are_benchmark_scripts():
    names = {p.name for p in SCRIPTS}
    assert {"measure_repeatability.py", "label_bias.py", "predictor_accuracy.py"} <= names


@pytest.mark.slow
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
        code, text, error = results[path]
        assert not error, f"{path}:\n{error}"
        assert code == 0, f"{path}: exit {code} (None: it ran instead of answering --help)"
        assert "usage:" in text, f"{path}: no usage text"
        if "_record" in Path(path).read_text():  # it appends to RESULTS.md: a way not to
            assert "--no-record" in text, f"{path}: records, but has no --no-record"


def test_every_benchmark_shell_script_parses():
    """The shell scripts (the GPU session) run where a GPU is lent, rarely: `bash -n` at least
    catches a syntax error before that call is spent."""
    scripts = sorted(BENCHMARKS.glob("*.sh"))
    assert scripts, "no shell scripts in benchmarks/"
    for path in scripts:
        done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, f"{path.name}: {done.stderr}"


def test_default_datasets_are_shipped_files_of_their_space_and_runtime():
    """Each benchmark's default predictor data exists, is of the space and runtime it is the
    default for, and was drawn by the current sampler (a stale default would train the
    benchmarks' predictors on labels the docs no longer describe)."""
    from lenna.measure.backend import ORT_GRAPHS
    from lenna.measure.run_config import MeasureConfig, RunConfig, upgrade_config
    from lenna.measure.store import Dataset
    from lenna.space import Block, get_space
    from lenna.space.layers import FactorizedReduce

    sys.path.insert(0, str(BENCHMARKS))
    try:
        from _datasets import SHIPPED, STALE, described, shipped
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert {space for space, _ in SHIPPED} == {"lenna", "darts"}
    assert {backend for _, backend in SHIPPED} == {"torch", "onnxruntime"}
    for (space, backend), path in SHIPPED.items():
        with Dataset.open(path, readonly=True) as ds:
            meta, rows = ds.meta, len(ds.samples())
        cfg = upgrade_config(meta["config"])
        assert meta["space"] == space, path.name
        assert cfg["measure"]["backend"] == backend, path.name
        # drawn by the sampler a new file of that runtime gets by default
        new = RunConfig(space=space, measure=MeasureConfig(backend=backend))
        assert cfg["sampler_version"] == new.sampler_version, path.name
        assert rows >= (1500 if space == "lenna" else 800), path.name
        if backend == "onnxruntime":  # timed with the graphs labels are timed with now, or
            # said to be stale, or of a space whose blocks no graph change touched
            graphs = meta["fingerprint"].get("graphs", 1)
            untouched = not any(
                isinstance(m, FactorizedReduce)
                for bt in ("normal", "reduction")
                for m in Block(get_space(space), bt, 8, "gated").modules()
            )
            assert graphs == ORT_GRAPHS or (space, backend) in STALE or untouched, path.name
            assert ((space, backend) in STALE) == (graphs != ORT_GRAPHS and not untouched)
    assert described("torch") == "lenna: lenna-v3-zen5.db, darts: darts-v3-zen5.db"
    with pytest.raises(SystemExit, match="no shipped dataset"):
        shipped("nosuchspace")


def test_benchmark_scripts_open_datasets_read_only():
    """A benchmark reads the shipped files; opened writable, SQLite rewrites a file's header
    (its journal mode) on close, so a plain run left the shipped data modified in git."""
    import re

    opened = []
    for path in [*BENCHMARKS.glob("*.py"), *BENCHMARKS.glob("diagnostics/*.py")]:
        for call in re.findall(r"Dataset\.open\(([^)]*)\)", path.read_text(encoding="utf-8")):
            opened.append(path.name)
            assert "readonly=True" in call, f"{path.name}: Dataset.open({call}) may write"
    assert "predictor_accuracy.py" in opened
