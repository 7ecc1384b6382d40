"""Options that act only on normalised labels are refused where there are none, in one line,
before a file is made (they were accepted and then dropped, or recorded but never used)."""

from __future__ import annotations

import importlib.util

import pytest
from measure_helpers import one_line_error
from typer.testing import CliRunner

from lenna.cli import app
from lenna.measure.config import MeasureConfig

runner = CliRunner()


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--no-normalise", "--max-load", "1.2"], "unnormalised (--no-normalise)"),
        (["--no-normalise", "--reference", "matched"], "drop --reference"),
        (["--rule", "seed", "--reference", "narrow"], "the seed rule's, never normalised"),
        (["--rule", "seed", "--max-load", "1.15"], "the seed rule"),
    ],
)
def test_a_normalised_only_option_without_normalisation_is_one_line(tmp_path, flags, needle):
    out = tmp_path / "x.db"
    result = runner.invoke(
        app, ["measure", "--space", "lenna", "--out", str(out), "-n", "1", *flags]
    )
    one_line_error(result, needle)
    assert not out.exists()


@pytest.mark.parametrize(("reference", "max_load"), [("single", None), (None, 0.0)])
def test_what_unnormalised_labels_are_anyway_is_accepted(tmp_path, reference, max_load):
    from lenna.cli.measure import _build_config

    cfg = _build_config(
        tmp_path / "x.db", space="lenna", normalise=False, reference=reference, max_load=max_load
    )
    assert cfg.measure.reference == "single" and cfg.measure.max_load == 0


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_unnormalised_labels_get_no_load_guard_by_default(backend):
    if backend == "onnxruntime" and importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("needs the onnx extra")
    assert MeasureConfig(normalise=False, backend=backend).max_load == 0
    assert MeasureConfig(backend=backend).max_load == (1.15 if backend == "onnxruntime" else 0)
