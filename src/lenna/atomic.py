"""Writes a user keeps, made atomic: beside, fsync, rename.

Why: a failure while writing (a full disk, a crash, Ctrl-C) must leave the previous version
of a file whole, never a truncated one (DESIGN.md, Safety). The new content goes to a
temporary name in the same folder, reaches the disk, and only then takes the real name in
one rename.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path


def fsync(path: Path) -> None:
    """``path``'s content on disk (a file, or a folder's entries)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once: setting it to read it is not safe while threads run


def settle_mode(tmp: Path, path: Path) -> None:
    """Give ``tmp`` the mode ``path`` has (a replaced file keeps its permissions), else a new
    file's usual one: some writers (safetensors) create files readable by their owner only."""
    mode = path.stat().st_mode & 0o777 if path.is_file() else 0o666 & ~_UMASK
    os.chmod(tmp, mode)


def temporary_beside(path: Path) -> Path:
    """A name of its own in ``path``'s folder (hidden, and never another writer's)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def missing_folder(folder: Path) -> str:
    """Why ``folder`` cannot take a new file, in a user's words (the caller found it is not
    a folder): it does not exist, or it is a file."""
    return (
        f"{folder} is a file, not a folder"
        if folder.exists()
        else f"folder {folder} does not exist"
    )


def write_with(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` makes the new content at a temporary path, which then replaces
    ``path``; on any failure the temporary file is removed and ``path`` is as it was."""
    path = Path(path)
    tmp = temporary_beside(path)
    try:
        write(tmp)
        fsync(tmp)
        settle_mode(tmp, path)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.filename not in (None, str(tmp)) or e.errno is None:
            raise
        # the user's file, not the hidden temporary one (an unwritable folder, a full disk),
        # nor no file at all (a writer that does not say which, as pyarrow on a full disk)
        raise type(e)(e.errno, e.strerror, str(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync(path.parent)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """``path`` holds ``text``, or (on failure) what it held before."""
    return write_with(path, lambda tmp: tmp.write_text(text))


def replace_files(folder: Path, write: Callable[[Path], object], stale: tuple[str, ...]) -> None:
    """Give ``folder`` the files ``write(staging)`` makes in a staging folder beside it.

    Every new file is complete on disk before any old one is replaced, so a failure while
    writing (a full disk) leaves the previous files untouched. Files named in ``stale``
    that the new set lacks are removed last."""
    staging = temporary_beside(folder)
    staging.mkdir()
    try:
        write(staging)
        names = sorted(p.name for p in staging.iterdir())
        for name in names:
            fsync(staging / name)
            if (staging / name).is_file():
                settle_mode(staging / name, folder / name)
        folder.mkdir(exist_ok=True)
        for name in names:
            os.replace(staging / name, folder / name)
        for name in stale:
            if name not in names:
                (folder / name).unlink(missing_ok=True)
        fsync(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
