"""The benchmarks' shared ending: figures printed, and appended to RESULTS.md unless told not."""

from __future__ import annotations

import importlib.util
from argparse import Namespace
from pathlib import Path

import pytest

from lenna.measure.fingerprint import fingerprint


@pytest.fixture
def record_module(tmp_path, monkeypatch):
    path = Path(__file__).parents[1] / "benchmarks" / "_record.py"
    spec = importlib.util.spec_from_file_location("_record_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", tmp_path / "RESULTS.md")
    return module


def test_publish_prints_and_appends_a_dated_section(record_module, capsys):
    fp = fingerprint("cpu", threads=2, batch=1)
    record_module.publish("demo_bench", fp, ["| a | b |", "|---|---|"])
    record_module.publish("demo_bench", fp, ["second"])
    assert capsys.readouterr().out == "| a | b |\n|---|---|\nsecond\n"
    text = record_module.RESULTS.read_text()
    assert text.startswith("# Benchmark results")
    assert text.count("## demo_bench — ") == 2
    assert "2 threads" in text and text.index("| a | b |") < text.index("second")


def test_publish_without_save_only_prints(record_module, capsys):
    record_module.publish("demo_bench", fingerprint("cpu"), ["only printed"], save=False)
    assert capsys.readouterr().out == "only printed\n"
    assert not record_module.RESULTS.exists()


def test_publish_cpu_takes_threads_and_no_record_from_the_arguments(record_module, capsys):
    record_module.publish_cpu("cpu_bench", Namespace(threads=2, no_record=True), ["a"])
    assert not record_module.RESULTS.exists()
    record_module.publish_cpu("cpu_bench", Namespace(threads=2, no_record=False), ["b"])
    text = record_module.RESULTS.read_text()
    assert "## cpu_bench — " in text and "2 threads" in text and "batch 1" in text
    assert capsys.readouterr().out == "a\nb\n"


def test_a_section_names_uncommitted_code(record_module, monkeypatch):
    """Figures from code that differs from the commit must not claim the commit."""
    monkeypatch.setattr(record_module, "_revision", lambda: "abc1234+uncommitted")
    record_module.publish("demo_bench", fingerprint("cpu"), ["x"])
    assert "commit abc1234+uncommitted" in record_module.RESULTS.read_text()
