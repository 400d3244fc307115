"""Files on disk under BASTION_UPLOAD_DIR: random names, atomic writes, no user input in paths.

A stored name is ``<32 hex>.<ext>`` made here from ``secrets``; variants (avatar sizes) add
``_<size>``. Every path is rebuilt from a name that must match ``NAME_RE``, so nothing a
client sends can point outside the store. Files are written to a temporary file in the
target directory, fsynced and renamed into place: a crash or an aborted request leaves
either the whole file or nothing under its final name.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import tempfile
from pathlib import Path

from flask import current_app

NAME_RE = re.compile(r"\A[0-9a-f]{32}(?:_[0-9]{1,4})?\.(?:jpg|png|gif|webp)\Z")
TEMP_PREFIX = ".partial-"


def root() -> Path:
    path = Path(current_app.config["UPLOAD_DIR"])
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def new_name(extension: str) -> str:
    """A fresh random storage name; the client's file name plays no part in it."""
    return f"{secrets.token_hex(16)}.{extension}"


def variant_name(name: str, size: int) -> str:
    stem, ext = name.split(".", 1)
    return f"{stem}_{size}.{ext}"


def path_for(name: str) -> Path:
    """The file's path, fanned out by name prefix; refuses anything but a stored name."""
    if not NAME_RE.match(name):
        raise ValueError("not a storage name")
    return root() / name[:2] / name


def write_atomic(name: str, data: bytes) -> None:
    """Write ``data`` under ``name`` all at once (temp file + fsync + rename) or not at all.

    A fan-out directory that is a symlink is refused: ``flask uploads check`` leaves such
    entries alone as foreign, so a file written through one would sit where the store can
    neither find nor prune it (and wherever the link points)."""
    target = path_for(name)
    target.parent.mkdir(mode=0o700, exist_ok=True)
    if target.parent.is_symlink():
        raise OSError(errno.ELOOP, "upload fan-out directory is a symlink", str(target.parent))
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        Path(temp).chmod(0o600)
        Path(temp).replace(target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def delete(name: str) -> None:
    path_for(name).unlink(missing_ok=True)


def exists(name: str) -> bool:
    return path_for(name).is_file()
