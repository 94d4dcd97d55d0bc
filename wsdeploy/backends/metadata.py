"""What every exported file carries so `wsdeploy.load` can use it without the checkpoint.

Two JSON documents, stored wherever the format allows (ONNX `metadata_props`, `.pt2` extra files,
the `.engine.json` side file of a TensorRT engine):

    "wsdeploy.card"     the model card, `ModelCard.to_dict()`
    "wsdeploy.runtime"  {"format_version": 1, "input_multiple": 32, "logit_stride": 4,
                         "precision": "fp32" | "fp16" | "int8", "dynamic": true,
                         "input_shape": null | [B, 3, H, W]}

The export side (`wsdeploy.export`) writes them with `runtime_info`; the backends read them with
`parse_metadata`, which refuses files without them (a foreign model) with a ValueError.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from wsdeploy.checkpoint import ModelCard

__all__ = [
    "CARD_KEY", "RUNTIME_KEY", "ExportInfo", "PRECISIONS", "metadata_strings", "parse_metadata", "runtime_info",
]

CARD_KEY = "wsdeploy.card"
RUNTIME_KEY = "wsdeploy.runtime"
PRECISIONS = ("fp32", "fp16", "int8")
_RUNTIME_VERSION = 1


@dataclasses.dataclass(frozen=True)
class ExportInfo:
    """The card and the runtime facts of an exported model file."""

    card: ModelCard
    input_multiple: int
    logit_stride: int
    precision: str = "fp32"
    input_shape: tuple[int, int, int, int] | None = None  # None: dynamic batch, H and W


def runtime_info(
    *, input_multiple: int, logit_stride: int, precision: str, input_shape: tuple[int, ...] | None = None
) -> dict[str, Any]:
    """The "wsdeploy.runtime" document for an export (plain JSON values)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return {
        "format_version": _RUNTIME_VERSION,
        "input_multiple": int(input_multiple),
        "logit_stride": int(logit_stride),
        "precision": precision,
        "dynamic": input_shape is None,
        "input_shape": None if input_shape is None else [int(d) for d in input_shape],
    }


def metadata_strings(card: ModelCard, runtime: dict[str, Any]) -> dict[str, str]:
    """{CARD_KEY: json, RUNTIME_KEY: json}: what an export stores."""
    return {CARD_KEY: json.dumps(card.to_dict(), sort_keys=True), RUNTIME_KEY: json.dumps(runtime, sort_keys=True)}


def parse_metadata(metadata: Mapping[str, str], *, source: str) -> ExportInfo:
    """Read the card and runtime facts back from an export's key -> JSON string mapping.

    Args:
        metadata: e.g. an ONNX session's `custom_metadata_map`.
        source: the file name, quoted in errors.

    Raises:
        ValueError: no wsdeploy metadata (a model exported by something else), or invalid JSON
            or values in it.
    """
    if CARD_KEY not in metadata or RUNTIME_KEY not in metadata:
        raise ValueError(
            f"{source}: no wsdeploy model card in this file (expected metadata keys {CARD_KEY!r} and "
            f"{RUNTIME_KEY!r}, found {sorted(metadata)[:8]}); export it with wsdeploy.export so it "
            "carries the card, or load the checkpoint it came from"
        )
    try:
        card_data = json.loads(metadata[CARD_KEY])
        runtime = json.loads(metadata[RUNTIME_KEY])
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: wsdeploy metadata is not valid JSON: {exc}") from None
    card = ModelCard.from_dict(card_data)
    if not isinstance(runtime, dict):
        raise ValueError(f"{source}: {RUNTIME_KEY} must be a JSON object, got {runtime!r}")
    version = runtime.get("format_version")
    if not isinstance(version, int) or version > _RUNTIME_VERSION:
        raise ValueError(
            f"{source}: {RUNTIME_KEY} format_version {version!r} is not supported (expected <= "
            f"{_RUNTIME_VERSION}); upgrade wsdeploy"
        )
    multiple, stride = runtime.get("input_multiple"), runtime.get("logit_stride")
    if not (isinstance(multiple, int) and isinstance(stride, int) and multiple >= 1 and stride >= 1):
        raise ValueError(
            f"{source}: {RUNTIME_KEY} needs positive integer input_multiple and logit_stride, got "
            f"{multiple!r} and {stride!r}"
        )
    precision = runtime.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise ValueError(f"{source}: precision must be one of {PRECISIONS}, got {precision!r}")
    shape = runtime.get("input_shape")
    if shape is not None and (not isinstance(shape, list) or len(shape) != 4):
        raise ValueError(f"{source}: input_shape must be null or [B, 3, H, W], got {shape!r}")
    return ExportInfo(
        card=card, input_multiple=multiple, logit_stride=stride, precision=precision,
        input_shape=None if shape is None else tuple(int(d) for d in shape),  # type: ignore[arg-type]
    )
