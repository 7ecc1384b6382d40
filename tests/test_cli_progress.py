"""Progress when output is not a terminal: plain lines, not bars drawn at the end."""

import io

from rich.console import Console

from lenna.cli.progress import LineProgress, make_progress


def test_a_file_gets_plain_lines_a_terminal_gets_bars():
    to_file = Console(file=io.StringIO(), force_terminal=False)
    assert isinstance(make_progress(to_file), LineProgress)
    tty = Console(file=io.StringIO(), force_terminal=True)
    assert not isinstance(make_progress(tty), LineProgress)


def test_lines_are_throttled_and_the_last_state_is_printed(monkeypatch):
    out = io.StringIO()
    clock = [100.0]
    monkeypatch.setattr("lenna.cli.progress.time.monotonic", lambda: clock[0])
    with LineProgress(Console(file=out, width=200)) as bar:
        task = bar.add_task("measuring", total=5, rate="", last="")
        bar.update(task, completed=1, rate="3.0 samples/min", last="last 1.2 ms")  # printed
        clock[0] += 1
        bar.update(task, completed=2, last="last 1.3 ms")  # too soon: not printed
        clock[0] += 20
        bar.update(task, completed=3)  # printed
        bar.advance(task, 2)  # complete: printed at once
        other = bar.add_task("op table", total=None, rate="", last="")
        bar.update(other, completed=1)
    lines = out.getvalue().splitlines()
    assert lines[0] == "measuring: 1/5  3.0 samples/min last 1.2 ms"
    assert lines[1] == "measuring: 3/5  3.0 samples/min last 1.3 ms"
    assert lines[2] == "measuring: 5/5  3.0 samples/min last 1.3 ms"
    assert lines[-1] == "op table: 1/?"
    assert len(lines) == 4


def test_a_stage_without_a_count_shows_no_zero_of_unknown():
    from rich.console import Console

    from lenna.cli.progress import CountColumn, LineProgress

    console = Console(record=True, width=200, force_terminal=False)
    with LineProgress(console) as bar:
        task = bar.add_task("λ=0 verify", total=None, info="")
        bar.update(task, info="measuring latency")
    assert "0/?" not in console.export_text(clear=False)
    assert "λ=0 verify:  measuring latency" in console.export_text()
    from rich.progress import Progress

    with Progress(CountColumn(), console=Console(record=True, width=80)) as p:
        t = p.add_task("x", total=None)
        assert str(CountColumn().render(p.tasks[0])) == ""
        p.update(t, total=4, completed=1)
        assert str(CountColumn().render(p.tasks[0])) == "1/4"
