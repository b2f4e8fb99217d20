"""The one exception type for mistakes a user can fix.

The CLI prints a `SpkverifError` on one line (`path:line: message`) and exits 1;
any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
from pathlib import Path


class SpkverifError(Exception):
    """A user-caused error, located at a file and line when there is one."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line

    def __str__(self) -> str:
        if self.path is None:
            return self.message
        if self.line is None:
            return f"{self.path}: {self.message}"
        return f"{self.path}:{self.line}: {self.message}"


class MachineError(SpkverifError):
    """A `SpkverifError` the machine caused (full disk, file-size limit, read-only file system,
    no permission, a missing file); `errno` is the C library's code, for callers that tell a
    full disk from the rest."""

    def __init__(self, message: str, path: str | Path | None, errno: int | None):
        super().__init__(message, path)
        self.errno = errno


def os_error(error: OSError, path: str | Path | None = None) -> MachineError:
    """An error of the machine as a user error naming `path` (else the file the error names):
    `PATH: no space left on device`, in the words of the C library's strerror, lower-cased."""
    text = error.strerror or (os.strerror(error.errno) if error.errno else str(error))
    text = text[:1].lower() + text[1:]
    where = path if path is not None else error.filename
    return MachineError(text, where, error.errno)
