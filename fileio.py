"""Files written whole or not at all, and their sha256: the two file habits every room shares.

``atomic_path(path)`` yields a temporary path beside ``path`` (the same folder, so the rename is
atomic). When the block ends without an exception, the temporary file is fsynced and renamed over
``path`` with ``os.replace`` (and the folder fsynced with ``durable=True``, so the rename itself
survives a power cut); on an exception it is removed and ``path`` is left as it was. A reader
therefore sees the old file or the new one, never half of one. ``unique=True`` names the temporary
file uniquely, for several processes writing the same path at once; the default name,
``NAME.tmp``, is the one a rerun overwrites and a clean-up can find after a ``kill -9``.

``write_atomic(path, data)`` does that for bytes or text; ``fsync_dir`` makes a rename durable;
``sha256_file`` hashes a file in 4 MiB blocks (``update_digest`` feeds one into a running digest).
This module imports nothing of the project, so every room (heads/ too) may use it.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

_BLOCK = 1 << 22


def fsync_dir(folder: str | Path) -> None:
    """fsync a folder, so that renames inside it are on disk (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not supported here (Windows); the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(path: str | Path, *, unique: bool = False, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` (see the module docstring)."""
    path = Path(path)
    if unique:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(name)
    else:
        tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def write_atomic(path: str | Path, data: bytes | str, *, unique: bool = False, durable: bool = False) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` whole or not at all."""
    with atomic_path(path, unique=unique, durable=durable) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def update_digest(digest, path: str | Path) -> None:
    """Feed a file's bytes into ``digest`` (a hashlib object), 4 MiB at a time."""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    update_digest(digest, path)
    return digest.hexdigest()


def hub_link_ok(path: str | Path) -> bool:
    """Whether ``path`` is a symlink that the Hugging Face cache made: inside a snapshot
    (``models--OWNER--NAME/snapshots/COMMIT/...``), pointing into that repo's own ``blobs/`` folder.

    A folder downloaded through ``huggingface_hub`` holds only such links; every other symlink in an
    artifact folder is refused by the loaders (it could point anywhere on the machine).
    """
    path = Path(path)
    if not path.is_symlink():
        return False
    for parent in path.parents:
        if parent.name == "snapshots" and parent.parent.name.startswith(("models--", "datasets--", "spaces--")):
            blobs = (parent.parent / "blobs").resolve()
            target = path.resolve()
            return target.is_file() and target.is_relative_to(blobs)
    return False
