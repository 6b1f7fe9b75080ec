"""Files the service creates are readable by their owner only (0600), whatever the umask.

They hold the trail or its secrets: the SQLite database (and the -wal and -shm files SQLite
gives the database's mode), its writer lock file (anyone who can open it can take the lock and
stall every writer), and exports. `make .env` writes the secret key under `umask 077`.
"""

import contextlib
import os
import stat
from typing import TextIO

OWNER_ONLY = 0o600


def private_file_create(path: str) -> None:
    """Create `path`, empty and 0600, unless it exists already (then leave it as it is).

    Errors are left to whoever opens it next (SQLite's own message for a missing directory).
    """
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OWNER_ONLY))


def private_file_open_append(path: str) -> TextIO:
    """Open `path` to append, creating it 0600."""
    return open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, OWNER_ONLY), "a")  # noqa: SIM115


def private_file_open_overwrite(path: str) -> TextIO:
    """Open `path` to be overwritten (UTF-8 text), readable by its owner only.

    A new file is created 0600. An existing regular file is tightened to 0600 before it is
    emptied, so where that is not allowed (someone else's file) it fails and is left intact.
    Anything else (a pipe, /dev/stdout) keeps its mode.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, OWNER_ONLY)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fchmod(fd, OWNER_ONLY)
            os.ftruncate(fd, 0)
        return open(fd, "w", encoding="utf-8", newline="")  # noqa: SIM115 (the caller closes it)
    except BaseException:
        os.close(fd)
        raise
