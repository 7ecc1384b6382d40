"""Append a benchmark's figures, with the machine's fingerprint, to benchmarks/RESULTS.md."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

from lenna.measure.fingerprint import describe

RESULTS = Path(__file__).with_name("RESULTS.md")


def record(title: str, fingerprint: dict, body: str) -> None:
    """Append one dated section; ``body`` is Markdown (tables, notes)."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        rev = "?"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = "# Benchmark results\n\nAppended by the scripts in this folder; newest last.\n"
    text = RESULTS.read_text() if RESULTS.exists() else head
    text += f"\n## {title} — {stamp}, commit {rev}\n\nMachine: {describe(fingerprint)}\n\n"
    text += body.rstrip() + "\n"
    RESULTS.write_text(text)


def publish(title: str, fingerprint: dict, lines: list[str], save: bool = True) -> None:
    """Print a benchmark's figures and, unless ``save`` is false (``--no-record``), append
    them to RESULTS.md: every script ends this way."""
    body = "\n".join(lines)
    print(body)
    if save:
        record(title, fingerprint, body)
