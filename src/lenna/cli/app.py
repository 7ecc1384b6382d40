"""The typer application and its error policy.

A user's mistake (an :class:`~lenna.errors.InputError`, or a usage error typer/click
detects) becomes ONE line on stderr and exit code 2; Ctrl-C exits 130 and SIGTERM 143, with
one line, in every command. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import signal
import sqlite3
import sys
import warnings
from typing import Any

import typer
from safetensors import SafetensorError
from typer.core import TyperGroup, TyperOption

from lenna.errors import InputError
from lenna.signals import Interrupted, pending_signal, stop_on_signals


def fail(message: str, code: int = 2) -> None:
    """Print ``lenna: error: message`` on stderr and exit with ``code``."""
    typer.echo(f"lenna: error: {message}", err=True)
    raise SystemExit(code)


class OneLineErrors(TyperGroup):
    """Runs the command tree non-standalone so every user error can be printed as one line."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        warnings.showwarning = _one_line_warning
        try:
            with stop_on_signals():  # SIGTERM too: every command stops as Ctrl-C stops it
                try:
                    rv = super().main(*args, standalone_mode=False, **kwargs)
                except SystemExit:  # a command's own line and code (or success)
                    raise
                except Exception:
                    # the handler's raise landed where Python wraps it (a class body being
                    # imported: RuntimeError); the user asked to stop, this is no bug
                    if pending_signal() is None:
                        raise
                    rv = None
                # Typer turns a Ctrl-C the command did not catch into a silent exit 130
                signum = pending_signal() or (signal.SIGINT if rv == 130 else None)
            if signum is not None:
                interrupted(Interrupted(signum), "files are written whole or not at all")
        except InputError as e:
            fail(str(e))
        except (OSError, sqlite3.Error, SafetensorError) as e:  # unwritable paths, full disks
            fail(f"{e.__class__.__name__}: {e}")
        except typer.TyperException as e:
            if "NoArgsIsHelp" in type(e).__name__:  # bare `lenna` / `lenna space`: show help
                typer.echo(e.format_message())
                return _exit(0, standalone_mode)
            fail(e.format_message().replace("\n", " "), e.exit_code)
        except typer.Abort:
            fail("interrupted", 130)
        return _exit(rv if isinstance(rv, int) else 0, standalone_mode)


def interrupted(e: BaseException, what: str) -> None:
    """Stopped by a signal: one line saying what is kept; 143 for SIGTERM, else 130."""
    code = 143 if getattr(e, "signum", None) == signal.SIGTERM else 130
    fail(f"interrupted: {what}", code)


def _one_line_warning(
    message: Warning | str, category: type, filename: str, lineno: int, *args: Any
) -> None:
    """A warning is one line for a user, not a source location."""
    typer.echo(f"lenna: warning: {message}", err=True)


def _exit(code: int, standalone_mode: bool) -> int:
    if standalone_mode:
        sys.exit(code)
    return code


def _flag_type(self: TyperOption, ctx: Any) -> str | None:
    """A flag takes no value, so its help shows no type (Typer prints ``<bool>`` for each)."""
    return None if self.is_flag else _typed(self, ctx)


_typed = TyperOption.display_type_rich
TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]

app = typer.Typer(
    cls=OneLineErrors,
    name="lenna",
    help="LENNA: measure block latency on this machine, learn it, search with it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs reflow to the terminal's width
)


def _version(value: bool) -> None:
    if value:
        from lenna import __version__

        typer.echo(f"lenna {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """LENNA: measure block latency on this machine, learn it, search with it."""
