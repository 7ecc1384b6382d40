"""Append a benchmark's figures, with the machine's fingerprint, to benchmarks/RESULTS.md."""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
from pathlib import Path

from lenna.measure.fingerprint import describe, fingerprint

RESULTS = Path(__file__).with_name("RESULTS.md")


def record(title: str, fp: dict, body: str) -> None:
    """Append one dated section; ``fp`` is the machine's fingerprint, ``body`` Markdown."""
    rev = _revision()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = "# Benchmark results\n\nAppended by the scripts in this folder; newest last.\n"
    text = RESULTS.read_text() if RESULTS.exists() else head
    text += f"\n## {title} — {stamp}, commit {rev}\n\nMachine: {describe(fp)}\n\n"
    text += body.rstrip() + "\n"
    RESULTS.write_text(text)


def _revision() -> str:
    """The commit the figures came from; ``+uncommitted`` when tracked files other than
    RESULTS.md differ from it (the code that ran is then not the commit's)."""
    here = Path(__file__).parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=False, cwd=here
        ).stdout

    try:
        rev = git("rev-parse", "--short", "HEAD").strip() or "?"
        changed = git("status", "--porcelain", "--untracked-files=no").splitlines()
    except OSError:
        return "?"
    dirty = [line for line in changed if not line.endswith(RESULTS.name)]
    return rev + ("+uncommitted" if dirty else "")


def publish(title: str, fp: dict, lines: list[str], save: bool = True) -> None:
    """Print a benchmark's figures and, unless ``save`` is false (``--no-record``), append
    them to RESULTS.md: every script ends this way."""
    body = "\n".join(lines)
    print(body)
    if save:
        record(title, fp, body)


def publish_cpu(title: str, args: argparse.Namespace, lines: list[str]) -> None:
    """:func:`publish` for a timing script with ``--threads`` and ``--no-record`` (batch 1),
    on the CPU unless it has a ``--device``."""
    fp = fingerprint(getattr(args, "device", "cpu"), threads=args.threads, batch=1)
    publish(title, fp, lines, not args.no_record)
