"""Checks shared by every settings dataclass (`CRFParams`, `AnnotateConfig`, the losses'
arguments): a real number that is not a bool, and a dataclass built from a mapping whose unknown
keys are named with the valid ones. One place, so the messages read the same everywhere.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

__all__ = ["real_number", "settings_from_mapping"]

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
