"""Atomic file writes: a temporary file in the target's folder, then ``os.replace``.

A crash or an error mid-write leaves the previous file untouched and no temporary file behind. The file
(or folder) ends with the permissions an ordinary ``open`` (``mkdir``) would give it under the process's
umask (0644 / 0755 under the usual 022), not the 0600 / 0700 of ``tempfile``'s private temporaries.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(*, folder: bool = False) -> int:
    """Permissions of a new file (``0o666``) or folder (``0o777``) under the current umask."""
    return (0o777 if folder else 0o666) & ~current_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], *, suffix: str = ".tmp") -> Path:
    """Call ``write(temporary_path)`` and move the result to ``path`` only if it succeeded. ``suffix`` ends
    the temporary name (Keras insists on ``.weights.h5``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
