"""One-line messages for every failure of a `wsdeploy` command (never a traceback).

Exit codes: 2 = bad input or usage (ValueError, TypeError, a missing file or extra: fix the
command), 1 = the run itself failed (out of memory, disk full, permission denied, a CUDA or
other runtime error, a bug). `-v` adds the traceback as a debug log line.
"""
from __future__ import annotations

import errno

__all__ = ["describe", "one_line"]

_HINT = "run with -v for the traceback"


def one_line(text: str, limit: int = 400) -> str:
    """Collapse whitespace (newlines included) and cut to `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _where(exc: OSError) -> str:
    name = exc.filename if exc.filename is not None else None
    return f": {name!r}" if name else ""


def describe(exc: BaseException) -> tuple[int, str]:
    """(exit code, one-line message) for an exception that reached the CLI."""
    if isinstance(exc, (ValueError, TypeError, ImportError, FloatingPointError)):
        return 2, one_line(exc)
    if isinstance(exc, FileNotFoundError):
        return 2, one_line(f"no such file or folder{_where(exc)}" if exc.filename else exc)
    if isinstance(exc, PermissionError):
        return 1, one_line(f"permission denied{_where(exc)}; choose a folder you can write to or fix its permissions")
    if isinstance(exc, IsADirectoryError):
        return 2, one_line(f"expected a file, got a folder{_where(exc)}")
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC:
            return 1, one_line(f"no space left on the device{_where(exc)}; free some space or write elsewhere")
        reason = exc.strerror or str(exc)
        return 1, one_line(f"{reason}{_where(exc)}")
    if isinstance(exc, MemoryError):
        return 1, "out of memory; try smaller images, a smaller --batch-size or --crop-size"
    if isinstance(exc, RuntimeError):
        text = str(exc)
        if "out of memory" in text.lower():
            first = one_line(text.split(". ")[0], 200)
            return 1, f"{first}; try a smaller --batch-size or --crop-size, or --amp bf16"
        return 1, one_line(f"{text} ({_HINT})")
    return 1, one_line(f"internal error {type(exc).__name__}: {exc} (please report it; {_HINT})")
