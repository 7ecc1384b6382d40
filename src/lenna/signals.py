"""Ctrl-C and SIGTERM as one exception, raised where a long run can stop cleanly.

The handler raises :class:`Interrupted` at once, so a run stops mid-sample or mid-step, and it
also notes the signal. Python runs a handler at whatever bytecode comes next; if that is inside
code that ignores exceptions (a ``__del__``, a garbage-collector or C-library callback), the
raise is printed as "Exception ignored" and lost, and the run would go on as if never asked to
stop. Long loops therefore call :func:`stop_if_signalled` between steps: a lost raise is raised
again there, one step later.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

_pending: list[int] = []  # signals received inside stop_on_signals(), oldest first
_depth = [0]  # nested blocks: only the outermost installs the handlers and forgets signals


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM during a run; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM (and SIGINT) into :class:`Interrupted` so the run stops between commits."""

    def handler(signum: int, frame: object) -> None:
        _pending.append(signum)
        raise Interrupted(signum)

    if _depth[0]:  # inside another block: its handlers hold, and it forgets signals at its end
        _depth[0] += 1
        try:
            yield
        finally:
            _depth[0] -= 1
        return
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    _depth[0] = 1
    try:
        yield
    finally:
        _depth[0] = 0
        for s, h in old.items():
            signal.signal(s, h)
        _pending.clear()


def stop_if_signalled() -> None:
    """Raise :class:`Interrupted` if a signal came during this ``stop_on_signals()`` block (its
    own raise may have been swallowed where it landed)."""
    if _pending:
        raise Interrupted(_pending[0])
