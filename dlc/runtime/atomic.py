"""Atomic file writes: write to a temporary name beside the target, fsync,
then rename, so a crash never leaves a half-written file.

The temporary file comes from `mkstemp`, which makes it 0600.  A file that
dlc writes for the user (weights, packages, generated code, outputs) gets the
mode a plain `open(path, "w")` would give it, 0666 less the umask, before it
is renamed into place; a cache passes `private=True` and keeps 0600."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator


def current_umask() -> int:
    """The process's umask.  Read from /proc where it is shown (Linux), so
    that no other thread ever sees the umask changed; else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def user_file_mode() -> int:
    """The mode `open(path, "w")` gives a new file: 0666 less the umask."""
    return 0o666 & ~current_umask()


@contextmanager
def atomic_open(path: str | os.PathLike, private: bool = False) -> Iterator[BinaryIO]:
    """A binary file to write `path`'s new contents into; it replaces `path` only
    when the block ends without an exception (otherwise the temporary is removed
    and `path` is left as it was).  For writers that stream, such as a zip of a
    large weights file, where `atomic_write`'s one `bytes` would not fit.
    The file ends with the umask's mode, or 0600 when `private`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if not private and hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), user_file_mode())
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write(path: str | os.PathLike, data: bytes, private: bool = False) -> None:
    with atomic_open(path, private) as f:
        f.write(data)
