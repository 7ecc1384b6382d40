"""Ctrl-C and SIGTERM as one exception, raised where a long run can stop cleanly.

The handler raises :class:`Interrupted` at once, so a run stops mid-sample or mid-step, and it
also notes the signal. Python runs a handler at whatever bytecode comes next; if that is inside
code that ignores exceptions (a ``__del__``, a garbage-collector or C-library callback), the
raise is lost, and the run would go on as if never asked to stop. Long loops therefore call
:func:`stop_if_signalled` between steps: a lost raise is raised again there, one step later.
Python would also print the lost raise as "Exception ignored ... Traceback"; the block's
unraisable hook drops that one report (the signal is noted), and passes every other on.

An :class:`Interrupted` caught inside a block does not end it: the next check raises again.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_pending: list[int] = []  # signals received inside the outermost stop_on_signals(), oldest first
_depth = [0]  # nested blocks: only the outermost installs the handlers and forgets signals


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM during a run; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _handler(signum: int, frame: object) -> None:
    _pending.append(signum)
    raise Interrupted(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM (and SIGINT) into :class:`Interrupted` so the run stops between commits."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers (and it is the one signals reach)
        return
    if _depth[0]:  # inside another block: its handlers hold, and it forgets signals at its end
        _depth[0] += 1
        try:
            yield
        finally:
            _depth[0] -= 1
        return
    _pending.clear()  # nothing from before this block counts
    old_hook = sys.unraisablehook

    def hook(report: Any) -> None:
        if not isinstance(report.exc_value, Interrupted):  # ours is noted: no traceback
            old_hook(report)

    old = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}
    sys.unraisablehook = hook
    _depth[0] = 1
    try:
        yield
    finally:
        try:
            for s, h in old.items():
                signal.signal(s, h)
            sys.unraisablehook = old_hook
        finally:
            _depth[0] = 0
            _pending.clear()


def pending_signal() -> int | None:
    """The first signal noted in the enclosing ``stop_on_signals()`` block, or ``None``."""
    return _pending[0] if _depth[0] and _pending else None


def stop_if_signalled() -> None:
    """Raise :class:`Interrupted` if a signal came during the enclosing ``stop_on_signals()``
    block (its own raise may have been lost where it landed); outside any block, nothing."""
    if _depth[0] and _pending:
        raise Interrupted(_pending[0])


@contextmanager
def keep_handlers() -> Iterator[None]:
    """Put SIGINT's and SIGTERM's handlers back after code that replaces them (``ray.init``
    installs its own SIGTERM handler, which would exit 15 without saying what is kept)."""
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            if h is not None:
                signal.signal(s, h)
