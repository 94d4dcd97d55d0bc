"""Atomic file writes: write a temporary file beside the target, fsync, then rename.

A crash, `kill -9` or Ctrl-C mid-write leaves the previous file (or none), never a truncated one;
after the rename the folder is fsynced too, so the new name survives a power cut.

The temporary file is created with `os.open(..., 0o666)`, so the kernel applies the process
umask exactly as it does for a plain `open()`; the umask is never read or changed (changing it,
even briefly, races with every other thread creating files). Overwriting an existing file keeps
that file's permission bits, as `open(path, "w")` would.

A write that cannot finish (disk full, read-only or missing permission on the folder, file-size
limit) raises `OSError` (or its subclass for the errno, e.g. `PermissionError`) with the target as
its `filename` and a message that gives the likely cause and says the previous file is unchanged.
"""
from __future__ import annotations

import contextlib
import errno as _errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]

_NEW_FILE_MODE = 0o666  # the kernel subtracts the umask, as for open(path, "w")


def _create_temp(target: Path) -> Path:
    """An empty, new file `.<name>.<random>.tmp` beside `target` (mode 0o666 minus the umask)."""
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), _NEW_FILE_MODE)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(_errno.EEXIST, f"could not create a unique temporary file beside {target}")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # e.g. Windows cannot open folders; the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the data itself is synced
    finally:
        os.close(fd)


def _write_error(exc: OSError, target: Path) -> OSError:
    """The same errno (so `except PermissionError` still works), with a message naming the target."""
    reason = exc.strerror or str(exc)
    if exc.errno in (_errno.ENOSPC, getattr(_errno, "EDQUOT", -1)):
        reason += " (the disk or quota is full)"
    elif exc.errno == _errno.EFBIG:
        reason += " (a file-size limit was hit)"
    elif exc.errno in (_errno.EROFS, _errno.EACCES, _errno.EPERM):
        reason += f" (is {str(target.parent)!r} read-only or not writable by this user?)"
    return OSError(exc.errno, f"{reason}; the previous file, if any, is unchanged", str(target))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto `path`.

    The caller writes the whole file to the yielded path. On an exception the temporary file is
    removed and the target is left as it was.

    Raises:
        OSError: the folder cannot be created or written, the disk is full (message names `path`).
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_temp(target)
    except OSError as exc:
        raise _write_error(exc, target) from exc
    try:
        try:
            yield tmp
        except OSError as exc:
            if exc.errno in (_errno.ENOSPC, _errno.EFBIG, _errno.EROFS, getattr(_errno, "EDQUOT", -1)):
                raise _write_error(exc, target) from exc
            raise
        try:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            with contextlib.suppress(FileNotFoundError):
                os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))  # overwrite: keep the mode
            os.replace(tmp, target)
        except OSError as exc:
            raise _write_error(exc, target) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
