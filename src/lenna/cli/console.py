"""The consoles commands print to.

Why ``soft_wrap``: when output goes to a file or a pipe, Rich assumes 80 columns and breaks
long lines mid-sentence; a message that stays one line can be read, grepped and pasted.
Tables still fit the width."""

from __future__ import annotations

from rich.console import Console


def console(stderr: bool = False) -> Console:
    """A console on stdout (or stderr) that never hard-wraps text."""
    return Console(stderr=stderr, soft_wrap=True)
