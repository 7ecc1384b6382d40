"""Progress of a search or sweep: a step bar per epoch, a line per epoch, a status line
while the derived network is verified."""

from __future__ import annotations

import math
from collections.abc import Callable

from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from lenna.cli.console import console
from lenna.cli.progress import CountColumn, LineProgress, make_progress
from lenna.search.bilevel import StepStats

err = console(stderr=True)


def search_progress() -> Progress | LineProgress:
    """A bar on a terminal, plain lines elsewhere (a log, CI)."""
    return make_progress(
        err,
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        CountColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
    )


class SearchBars:
    """Step bar per epoch with loss, accuracy and predicted latency; a line per epoch; a
    status line while the derived network is verified."""

    def __init__(self, bar: Progress, epochs: int, label: str = "") -> None:
        self.bar, self.epochs, self.label = bar, epochs, label
        self.task: TaskID | None = None
        self.epoch = 0
        self.verify: TaskID | None = None

    def step(self, st: StepStats, i: int, n: int) -> None:
        if self.task is None or st.epoch != self.epoch:
            self.epoch = st.epoch
            if self.task is not None:
                self.bar.remove_task(self.task)
            desc = f"{self.label}epoch {self.epoch}/{self.epochs}"
            self.task = self.bar.add_task(desc, total=n, info="")
        ms = "" if math.isnan(st.expected_ms) else f" E(lat) {st.expected_ms:.2f} ms"
        self.bar.update(
            self.task,
            completed=i,
            info=f"loss {st.w_loss:.3f} acc {100 * st.w_correct / max(1, st.batch):.0f}%{ms}",
        )

    def epoch_done(self, row: dict) -> None:
        ms = "" if math.isnan(row["predicted_ms"]) else f", E(latency) {row['predicted_ms']:.3f} ms"
        self.bar.console.print(
            f"{self.label}epoch {int(row['epoch'])}: w acc {100 * row['w_acc']:.1f} %, "
            f"α-half acc {100 * row['a_acc']:.1f} %{ms}, {row['epoch_s']:.0f} s"
        )

    def note(self, text: str) -> None:
        """Verification stage (measuring, training) of the derived network."""
        if self.task is not None:
            self.bar.remove_task(self.task)
            self.task = None
        if self.verify is None:
            self.verify = self.bar.add_task(f"{self.label}verify", total=None, info="")
        self.bar.update(self.verify, info=text)

    def on_event(self, kind: str, info: dict) -> None:
        if kind == "step":
            self.step(info["st"], info["i"], info["n"])
        elif kind == "epoch":
            self.epoch_done(info)
        elif kind == "eval":
            self.note(info["stage"])


def sweep_events(bar: Progress, epochs: int) -> Callable[[str, dict], None]:
    """An ``on_event`` for :func:`~lenna.search.sweep.run_sweep`: one :class:`SearchBars` per λ
    or budget."""
    bars: dict[str, SearchBars] = {}

    def on_event(kind: str, info: dict) -> None:
        label = info["label"]
        if kind == "point" or label not in bars:
            bars[label] = SearchBars(bar, epochs, f"{label} ")
        if kind != "point":
            bars[label].on_event(kind, info)

    return on_event
