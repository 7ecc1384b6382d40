"""Progress for long work: rich bars on a terminal, plain lines when output goes to a file.

Why: rich draws nothing until the end when stderr is not a terminal, so a log of `make demo`
or `lenna measure > log` showed one line for minutes, then every bar at once. A
:class:`LineProgress` takes the same calls and prints one line per task at most every
:data:`EVERY_S` seconds, and when a task completes.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress, ProgressColumn, Task
from rich.text import Text

EVERY_S = 10.0


class LineProgress:
    """The part of :class:`rich.progress.Progress` the CLI uses, as plain progress lines."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._tasks: dict[int, dict[str, Any]] = {}
        self._next = 0

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.stop()  # an error says what happened in its own line; no stale progress
        self._tasks.clear()

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        self._next += 1
        self._tasks[self._next] = {
            "description": description,
            "total": total,
            "completed": fields.pop("completed", 0),
            "fields": fields,
            "printed": 0.0,
            "last_line": "",
        }
        return self._next

    def update(self, task: int, advance: float | None = None, **kw: Any) -> None:
        t = self._tasks.get(task)
        if t is None:
            return
        for key in ("description", "total", "completed"):
            if kw.get(key) is not None:
                t[key] = kw.pop(key)
            kw.pop(key, None)
        if advance:
            t["completed"] += advance
        t["fields"].update(kw)
        done = t["total"] is not None and t["completed"] >= t["total"]
        if done or time.monotonic() - t["printed"] >= EVERY_S:
            self._print(t)

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, advance=advance)

    def remove_task(self, task: int) -> None:
        self._tasks.pop(task, None)

    def stop(self) -> None:
        """Print the last state of every task whose last state was not printed."""
        for t in self._tasks.values():
            self._print(t)
        self._tasks.clear()

    def _print(self, t: dict[str, Any]) -> None:
        total = "?" if t["total"] is None else f"{t['total']:g}"
        uncounted = t["total"] is None and not t["completed"]  # a stage, not a count: no 0/?
        count = "" if uncounted else f" {t['completed']:g}/{total}"
        extra = " ".join(str(v) for v in t["fields"].values() if v not in ("", None))
        line = f"{t['description']}:{count}" + (f"  {extra}" if extra else "")
        if line != t["last_line"]:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
            t["last_line"] = line
        t["printed"] = time.monotonic()


class CountColumn(MofNCompleteColumn):
    """``done/total``, and nothing for a stage without a count (not ``0/?``)."""

    def render(self, task: Task) -> Text:
        return Text("") if task.total is None and not task.completed else super().render(task)


def make_progress(console: Console, *columns: ProgressColumn) -> Progress | LineProgress:
    """Bars with ``columns`` on a terminal, else plain lines."""
    if console.is_terminal:
        return Progress(*columns, console=console, transient=False)
    return LineProgress(console)
