"""An exclusive lock beside a file: one writer at a time, across the threads and processes of this host."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive(path: Path, *, mode: int = 0o600,
              error: Callable[[OSError, Path], Exception] | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the sidecar ``.<name>.lock`` beside ``path`` for the with-block.

    Blocks until the lock is free; every call opens its own descriptor, so threads of one process exclude each
    other too. Not re-entrant. The sidecar is created with ``mode`` in the folder of ``path``, which must
    exist; ``error(exc, lock_path)`` turns a failure to open it into the caller's exception (without it the
    OSError passes through).
    """
    lock_path = path.with_name(f".{path.name}.lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, mode)
    except OSError as exc:
        if error is None:
            raise
        raise error(exc, lock_path) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
