"""The contract every fuzz target checks, and how one case runs under it.

A target is an entry point of wsdeploy fed untrusted input. For every input it must either
return a correct result (the target's `validate` checks it) or raise one of its documented
exception types (`allowed`) with a one-line message of bounded length. Anything else is a
failure: another exception, a message with a newline or over `MAX_MESSAGE` characters, a result
that `validate` rejects, a case slower than the time limit, or peak memory (RSS) above the bound.

`run_case` runs one input and returns None or a `Failure`; its `signature` (kind, exception type,
innermost wsdeploy frame) is what "distinct failures" counts. Used by the tests in this folder
(short budgets, fixed seeds) and by `benchmarks/fuzz.py` (the committed budgets).
"""
from __future__ import annotations

import contextlib
import dataclasses
import resource
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "MAX_MESSAGE", "CaseTimeout", "Failure", "Target", "current_rss_mb", "describe", "hard_time_limit", "peak_rss_mb",
    "reset_peak_rss", "run_case", "warm_up",
]

MAX_MESSAGE = 2000  # characters: an error message quotes values (and may list the valid ones), it does not dump them
ROOT = Path(__file__).resolve().parents[2]


class CaseTimeout(BaseException):
    """Raised inside a case that ran past its hard time limit (a hang)."""


@dataclasses.dataclass(frozen=True)
class Target:
    """One fuzzed entry point.

    Attributes:
        name: short name, the key in `benchmarks/results/fuzz.json`.
        call: input -> result; raises on refused input.
        allowed: the exception types its documentation names.
        validate: (input, result) -> None, raises AssertionError on a wrong result.
        kind: "bytes" (coverage-guided byte fuzzing) or "structured" (hypothesis strategies).
    """

    name: str
    call: Callable[[Any], Any]
    allowed: tuple[type[BaseException], ...]
    validate: Callable[[Any, Any], None] = lambda data, result: None
    kind: str = "bytes"


@dataclasses.dataclass(frozen=True)
class Failure:
    """One contract violation."""

    kind: str  # "exception" | "message" | "wrong_result" | "slow" | "memory"
    detail: str  # exception type and message, or what was wrong
    where: str  # innermost frame in the repository ("file:line in function")

    @property
    def signature(self) -> str:
        if self.kind in ("exception", "message"):
            head = self.detail.split(":", 1)[0].split(" ", 1)[0]  # the exception type
        elif self.kind == "wrong_result":
            head = self.detail.split(" ", 1)[0][:40]  # the checked field
        else:
            head = ""
        return f"{self.kind} | {head} | {self.where}"


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB) since the last `reset_peak_rss()`."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)


def current_rss_mb() -> float:
    """This process's resident memory now (MB; Linux, else the peak)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


def reset_peak_rss() -> None:
    """Start a new peak-RSS window (Linux >= 4.0: writing 5 to clear_refs resets VmHWM)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        pass


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if str(ROOT) in f.filename and "/tests/fuzz/" not in f.filename]
    frame = (ours or frames or [None])[-1]
    if frame is None:
        return "?"
    return f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"


@contextlib.contextmanager
def hard_time_limit(seconds: float | None) -> Iterator[None]:
    """Raise CaseTimeout in the block after `seconds` of CPU time, or 20x that of wall time.

    CPU time (ITIMER_PROF) is what a hang burns and is immune to a busy machine; the wall-clock
    backstop catches a case that blocks without computing. Main thread only; None = off. Python
    code is interrupted between bytecodes; a C call that never returns is not, which is why the
    byte fuzzer also runs under libFuzzer's own `-timeout`.
    """
    if not seconds:
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"the case ran past its {seconds} s limit")

    previous = {sig: signal.signal(sig, on_alarm) for sig in (signal.SIGPROF, signal.SIGALRM)}
    signal.setitimer(signal.ITIMER_PROF, seconds)
    signal.setitimer(signal.ITIMER_REAL, 20 * seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def warm_up(target: Target, inputs: list[Any]) -> None:
    """Run the first inputs once, outside any limit: first calls import torch, OpenCV codecs..."""
    for data in inputs[:3]:
        with contextlib.suppress(Exception):
            target.call(data)


def run_case(
    target: Target, data: Any, *, time_limit: float = 2.0, hard_limit: float | None = None,
    memory_limit_mb: float | None = None,
) -> Failure | None:
    """Run one input; None if the contract held, else the Failure.

    Args:
        time_limit: CPU seconds; a slower case is a failure ("slow"). CPU, not wall-clock, time:
            on a shared machine a case can wait seconds for a core without being slow.
        hard_limit: CPU seconds after which the case is interrupted (None: not interrupted here).
        memory_limit_mb: bound on how far this case may raise the process's RSS above what it
            was when the case started (MB; the peak is measured per case on Linux); above it,
            a failure ("memory").
    """
    if memory_limit_mb is not None:
        reset_peak_rss()
        rss0 = current_rss_mb()
    t0 = time.process_time()
    failure: Failure | None = None
    try:
        with hard_time_limit(hard_limit):
            result = target.call(data)
            target.validate(data, result)
    except CaseTimeout as exc:
        failure = Failure("slow", str(exc), _where(exc))
    except target.allowed as exc:
        message = str(exc)
        if not message.strip() or "\n" in message or len(message) > MAX_MESSAGE:
            shown = message[:200].replace("\n", "\\n")
            failure = Failure("message", f"{type(exc).__name__} message of {len(message)} chars: {shown}", _where(exc))
    except AssertionError as exc:
        failure = Failure("wrong_result", (str(exc).splitlines() or ["assertion"])[0][:300], _where(exc))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - anything undocumented is what we look for
        first = (str(exc).splitlines() or [""])[0][:300]
        failure = Failure("exception", f"{type(exc).__name__}: {first}", _where(exc))
    elapsed = time.process_time() - t0
    if failure is None and elapsed > time_limit:
        failure = Failure("slow", f"{elapsed:.2f} CPU s > {time_limit} s", target.name)
    if failure is None and memory_limit_mb is not None and peak_rss_mb() - rss0 > memory_limit_mb:
        failure = Failure("memory", f"the case raised RSS by {peak_rss_mb() - rss0:.0f} MB > {memory_limit_mb:.0f} MB",
                          target.name)
    return failure


def describe(data: Any, limit: int = 300) -> str:
    """A short printable form of an input for reports."""
    text = data.hex() if isinstance(data, (bytes, bytearray)) else repr(data)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"

