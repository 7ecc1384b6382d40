"""The ``lenna`` console script. Loading the command line takes seconds (torch); a Ctrl-C in
that time would print an import traceback, so the loading itself is guarded here."""

from __future__ import annotations

import sys


def main() -> None:
    """Load the command line, then run it; Ctrl-C while loading is one line and exit 130."""
    try:
        from lenna.cli import main as run
    except KeyboardInterrupt:
        sys.stderr.write("lenna: error: interrupted\n")
        raise SystemExit(130) from None
    run()
