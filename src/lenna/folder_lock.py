"""One writer per output folder: a run holds its ``--out`` folder while it writes there.

Why: two runs started into one folder both found it empty and wrote it together (two configs,
one α log of both runs). An advisory ``flock`` on the folder (released by the OS if the process
dies) makes the second one stop at once, in one line.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from lenna.atomic import missing_folder
from lenna.errors import InputError


@contextmanager
def held_folder(out: Path, what: str) -> Iterator[bool]:
    """``out``, created if missing (its parent must exist), held by this process as its one
    writer until the block ends, or refused in one line; yields whether it was created here.
    A folder made here that a refusal leaves empty is removed, so a corrected command finds
    no trace of it."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")
    if not out.parent.exists():  # as train and measure: a typo is not a new tree of folders
        raise InputError(f"--out {out}: {missing_folder(out.parent)}")
    created = not out.exists()
    try:
        out.mkdir(exist_ok=True)
        fd = os.open(out, os.O_RDONLY)
    except OSError as e:
        raise InputError(f"--out {out} cannot be made or opened ({e.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                f"{out} is being written by another {what}; wait for it to finish, or give "
                "another --out"
            ) from None
        try:
            yield created
        except BaseException:
            if created and not any(out.iterdir()):  # refused before anything was written
                with suppress(OSError):  # never hide the error that got us here
                    out.rmdir()
            raise
    finally:
        os.close(fd)  # releases the flock
