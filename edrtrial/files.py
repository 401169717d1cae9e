"""Files that hold the programme's data, the SQLite store and written reports: owner-only.

They name companies, their PCs and users and what happened on them, so a file edrtrial
creates is readable by its owner only (0600, folders it creates 0700), whatever the umask.
A file that already exists keeps the mode someone gave it (a backup tool's group may need
to read it), but a mode that lets others read it is logged as a warning, once per file.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
_warned: set[Path] = set()


def private_dir(path: Path) -> None:
    """Create the folder and its missing parents owner-only; existing folders stay as they are."""
    missing: list[Path] = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            continue  # made by someone else meanwhile: theirs, not ours to change
        os.chmod(folder, PRIVATE_DIR)  # mkdir's mode passes through the umask


def create_private(path: Path) -> bool:
    """Create an empty owner-only file unless it exists (then warn if others may read it)."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        warn_if_shared(path)
        return False
    os.close(fd)
    return True


def write_private_text(path: Path, text: str) -> None:
    """Write a text file (UTF-8), created owner-only; an existing file keeps its mode."""
    private_dir(path.parent)
    existed = path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    if existed:
        warn_if_shared(path)


def write_private_bytes(path: Path, content: bytes) -> None:
    """Write a new file whole, owner-only: written beside it and renamed into place, so a
    crash leaves the old file or the new one, never half of one."""
    private_dir(path.parent)
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "wb") as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)


def warn_if_shared(path: Path) -> None:
    """Log once per file when its group or others may read or write it."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    key = path.resolve()
    if mode & 0o077 and key not in _warned:
        _warned.add(key)
        log.warning(
            "%s can be read by others than its owner (mode %04o) and holds company data; "
            "run `chmod 600 %s` unless that is intended",
            path,
            mode,
            path,
        )
