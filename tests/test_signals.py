"""Ctrl-C and SIGTERM stop a run even when the handler's own raise is lost.

Python runs a signal handler at the next bytecode; inside a ``__del__`` or a C-library callback
its exception is printed as "Exception ignored" and dropped. CI once saw ``lenna measure`` go on
for a minute after SIGTERM. Each long loop re-raises a noted signal at its next step.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from contextlib import suppress
from types import SimpleNamespace

import pytest
from measure_helpers import tiny_config
from search_helpers import run
from search_helpers import tiny_config as tiny_search
from test_measuring_loop import fake_spec
from typer.testing import CliRunner

from lenna.cli import app
from lenna.measure import runner as runner_mod
from lenna.measure.runner import run_measurement
from lenna.measure.store import Dataset
from lenna.search.checkpoint import META
from lenna.signals import Interrupted, keep_handlers, stop_if_signalled, stop_on_signals


def swallowed(sig: int = signal.SIGTERM) -> None:
    """A signal whose handler runs where exceptions are dropped (as in a ``__del__``)."""
    with suppress(Interrupted):
        os.kill(os.getpid(), sig)


def test_a_swallowed_signal_is_raised_again_at_the_next_check():
    with stop_on_signals():
        stop_if_signalled()  # nothing pending: no raise
        swallowed(signal.SIGTERM)
        with pytest.raises(Interrupted) as e:
            stop_if_signalled()
    assert e.value.signum == signal.SIGTERM


def test_the_handler_still_raises_at_once():
    with stop_on_signals(), pytest.raises(Interrupted) as e:
        os.kill(os.getpid(), signal.SIGINT)
    assert e.value.signum == signal.SIGINT


def test_leaving_the_block_forgets_the_signal_and_restores_the_handlers():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with stop_on_signals():
        swallowed()
    stop_if_signalled()  # the next run starts clean
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_a_nested_block_leaves_the_outer_one_its_signal():
    with stop_on_signals():
        with stop_on_signals():
            swallowed()
        with pytest.raises(Interrupted):  # the inner block's end did not forget it
            stop_if_signalled()
        handler = signal.getsignal(signal.SIGTERM)
        with stop_on_signals():
            pass
        assert signal.getsignal(signal.SIGTERM) is handler  # still the outer block's


DEL_SCRIPT = """
import os, signal
from lenna.signals import Interrupted, stop_if_signalled, stop_on_signals

class SignalledInDel:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)

with stop_on_signals():
    SignalledInDel()  # dropped at once: the raise lands in __del__, where Python drops it
    try:
        stop_if_signalled()
    except Interrupted as e:
        print("stopped", e.signum)
"""


@pytest.mark.slow  # a fresh interpreter imports torch
def test_a_raise_lost_in_a_del_prints_no_traceback_and_stops_at_the_check():
    """In a fresh interpreter: pytest replaces the unraisable hook in its own process."""
    done = subprocess.run(
        [sys.executable, "-c", DEL_SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"stopped {int(signal.SIGTERM)}"
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr


def test_other_unraisable_reports_still_reach_the_hook_and_it_is_put_back():
    seen = []
    before = sys.unraisablehook
    sys.unraisablehook = seen.append
    try:
        with stop_on_signals():
            sys.unraisablehook(SimpleNamespace(exc_value=ValueError("x")))
            sys.unraisablehook(SimpleNamespace(exc_value=Interrupted(signal.SIGTERM)))
        assert [type(r.exc_value) for r in seen] == [ValueError]
        assert sys.unraisablehook == seen.append
    finally:
        sys.unraisablehook = before


def test_a_signal_from_an_earlier_block_does_not_stop_the_next_run():
    with pytest.raises(Interrupted), stop_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
    with stop_on_signals():
        stop_if_signalled()  # a fresh block: nothing pending


def test_keep_handlers_puts_back_what_a_library_replaced():
    with stop_on_signals():
        ours = signal.getsignal(signal.SIGTERM)
        with keep_handlers():
            signal.signal(signal.SIGTERM, lambda s, f: None)  # as ray.init does
        assert signal.getsignal(signal.SIGTERM) is ours


def test_a_block_in_another_thread_runs_without_handlers():
    """signal.signal works only in the main thread: the API may be driven from another."""
    done = []

    def body():
        with stop_on_signals():
            stop_if_signalled()
            done.append(True)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert done == [True]


def test_measuring_stops_after_the_row_whose_signal_was_swallowed(tmp_path, monkeypatch):
    def spec(space, s, config=None, seed=0, calibration=None):
        if s.index == 2:
            swallowed()
        return fake_spec(space, s, config, seed, calibration)

    monkeypatch.setattr(runner_mod, "measure_spec", spec)
    db = tmp_path / "d.db"
    with stop_on_signals(), pytest.raises(Interrupted) as e:
        run_measurement(db, tiny_config(drift_every=0), 6)
    assert e.value.signum == signal.SIGTERM
    with Dataset.open(db) as ds:
        assert sorted(ds.indices()) == [0, 1, 2]  # the measured row is kept, no more


def test_a_search_stops_at_the_step_after_a_swallowed_signal(tmp_path):
    steps = []

    def on_step(st, i, n):
        steps.append(i)
        if i == 1:
            swallowed(signal.SIGINT)

    cfg = tiny_search(epochs=2)
    with stop_on_signals(), pytest.raises(Interrupted) as e:
        run(cfg, tmp_path / "run", on_step=on_step)
    assert e.value.signum == signal.SIGINT
    assert steps == [1]
    assert not (tmp_path / "run" / META).exists()  # no epoch finished: nothing to resume


# ---- every command: the command line's own handling ----------------------------------------
def test_a_ctrl_c_no_command_catches_is_one_line_and_130(monkeypatch):
    """Typer turns it into a silent exit 130 (train, export, evaluate-arch...)."""
    import lenna.cli.space as space_cli

    def interrupted_listing():
        raise KeyboardInterrupt

    monkeypatch.setattr(space_cli, "list_spaces", interrupted_listing)
    result = CliRunner().invoke(app, ["space", "list"])
    assert result.exit_code == 130
    assert (
        result.stderr.strip() == "lenna: error: interrupted: files are written whole or not at all"
    )


def test_a_sigterm_whose_raise_python_wrapped_is_one_line_and_143(monkeypatch):
    """Landing in a class body being imported, the raise becomes a RuntimeError."""
    import lenna.cli.space as space_cli

    def listing_while_importing():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except Interrupted as e:
            raise RuntimeError("Error calling __set_name__") from e

    monkeypatch.setattr(space_cli, "list_spaces", listing_while_importing)
    result = CliRunner().invoke(app, ["space", "list"])
    assert result.exit_code == 143
    assert "Traceback" not in result.output and "interrupted" in result.stderr


def test_a_bug_without_a_signal_keeps_its_traceback(monkeypatch):
    import lenna.cli.space as space_cli

    def broken():
        raise RuntimeError("a bug")

    monkeypatch.setattr(space_cli, "list_spaces", broken)
    result = CliRunner().invoke(app, ["space", "list"])
    assert isinstance(result.exception, RuntimeError)
