"""Helpers shared by every settings dataclass (`CRFParams`, `AnnotateConfig`, `TrainConfig` and
its per-loss and tags settings) and by the errors that quote other libraries: a documented
dataclass field, a real number that is not a bool, a dataclass built from a mapping whose unknown
keys are named with the valid ones, and the first line of a foreign exception. One place, so the
messages read the same everywhere.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import field, fields
from typing import Any, TypeVar

__all__ = ["first_line", "real_number", "setting", "settings_from_mapping"]

T = TypeVar("T")


def real_number(name: str, value: Any, *, finite: bool = True) -> float:
    """`value` as a float.

    Raises:
        TypeError: not a real number (bools are refused: `True` is not a weight).
        ValueError: `finite` and the value is NaN or infinite.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if finite and not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def settings_from_mapping(cls: type[T], values: Mapping[str, Any], *, what: str) -> T:
    """`cls(**values)` for a dataclass `cls`, `what` naming its settings in messages
    (e.g. "CRF parameter").

    Raises:
        TypeError: `values` is not a mapping.
        ValueError: unknown names (listing the valid ones), or whatever `cls` rejects.
    """
    if not isinstance(values, Mapping):
        raise TypeError(f"{what}s must be a mapping, got {type(values).__name__}")
    valid = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; valid names are {valid}")
    return cls(**dict(values))


def setting(default: Any, help: str) -> Any:  # noqa: A002 - the metadata key argparse shows
    """A dataclass field with a default and its documentation (`metadata["help"]`, which the CLI
    shows as the flag's help)."""
    return field(default=default, metadata={"help": help})


def first_line(exc: BaseException, *, limit: int = 300) -> str:
    """The first line of an exception's message, cut to `limit` characters, or its type name
    when the message is empty (for one-line errors that quote another library)."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__
