"""Parity of an exported model with its torch original, on real-looking images.

Both backends get the same network inputs (the runtime's pre-processing, each image at its own
size, so dynamic shapes are exercised), and their logits go through the runtime's one
post-processing path (`upsample_logits`, argmax) to labels at the image's resolution.

Reported: max absolute error of the logits, the same relative to the largest reference logit
(`max_rel_error`), mean absolute error, and label agreement (fraction of pixels with the same
class; also its minimum over images). Tolerances (`TOLERANCES`, chosen per precision):

    fp32  label agreement >= 0.999, max_rel_error <= 1e-3
    fp16  label agreement >= 0.995, max_rel_error <= 5e-2
    int8  label agreement >= 0.95   (logit error reported, not checked: quantisation moves it)

A TensorRT engine is checked against the ONNX it was built from (onnxruntime, CPU, fp32
arithmetic) with `ENGINE_TOLERANCES`: looser logits for fp32 because TensorRT runs fp32
convolutions in TF32 by default (10-bit mantissa), INT8 at the 98% the project targets:

    fp32  label agreement >= 0.999, max_rel_error <= 1e-2
    fp16  label agreement >= 0.995, max_rel_error <= 5e-2
    int8  label agreement >= 0.98   (logit error reported, not checked)

`check_parity` raises `ParityError` (a ValueError) past them; `check_files` opens two model
files (any backend `wsdeploy.load` reads) and checks one against the other, which is what
`wsdeploy export --check-only MODEL REFERENCE` runs.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsdeploy.checkpoint import ModelCard
from wsdeploy.runtime import class_argmax, upsample_logits

from wsdeploy.export.images import network_inputs

__all__ = [
    "ENGINE_TOLERANCES", "TOLERANCES", "ParityError", "ParityReport", "Tolerance", "check_files", "check_parity",
    "compare_backends", "resolve_tolerance",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Pass criteria: minimum label agreement, and optionally the largest relative logit error."""

    min_label_agreement: float
    max_rel_error: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_label_agreement <= 1.0:
            raise ValueError(f"min_label_agreement must be in [0, 1], got {self.min_label_agreement}")
        if self.max_rel_error is not None and self.max_rel_error < 0:
            raise ValueError(f"max_rel_error must be >= 0 or None, got {self.max_rel_error}")


TOLERANCES = {
    "fp32": Tolerance(min_label_agreement=0.999, max_rel_error=1e-3),
    "fp16": Tolerance(min_label_agreement=0.995, max_rel_error=5e-2),
    "int8": Tolerance(min_label_agreement=0.95, max_rel_error=None),
}
ENGINE_TOLERANCES = {  # a TensorRT engine against the ONNX it was built from
    "fp32": Tolerance(min_label_agreement=0.999, max_rel_error=1e-2),
    "fp16": Tolerance(min_label_agreement=0.995, max_rel_error=5e-2),
    "int8": Tolerance(min_label_agreement=0.98, max_rel_error=None),
}


class ParityError(ValueError):
    """An export disagrees with torch past its tolerance; `.report` holds the numbers."""

    def __init__(self, message: str, report: "ParityReport") -> None:
        super().__init__(message)
        self.report = report


@dataclasses.dataclass(frozen=True)
class ParityReport:
    """How closely a candidate backend follows the reference, over `images` images."""

    images: int
    pixels: int
    label_agreement: float  # over all pixels
    min_image_agreement: float  # the worst image
    max_abs_error: float  # logits
    max_rel_error: float  # max_abs_error / max |reference logit|
    mean_abs_error: float
    shapes: list[list[int]]  # network input (H, W) per image

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def failures(self, tolerance: Tolerance) -> list[str]:
        """What fails `tolerance` (empty if it passes)."""
        out = []
        if self.label_agreement < tolerance.min_label_agreement:
            out.append(f"label agreement {self.label_agreement:.5f} < {tolerance.min_label_agreement}")
        if tolerance.max_rel_error is not None and self.max_rel_error > tolerance.max_rel_error:
            out.append(f"max relative logit error {self.max_rel_error:.2e} > {tolerance.max_rel_error:.0e}")
        return out


def compare_backends(
    reference: Any, candidate: Any, images: Sequence[np.ndarray], *, card: ModelCard
) -> ParityReport:
    """Run both backends on each image and measure their difference (never raises on a mismatch).

    Args:
        reference, candidate: backends (see `wsdeploy.backends`), same `input_multiple` and
            `logit_stride`.
        images: (H, W, 3) uint8 RGB arrays, any sizes.
        card: the model card (normalisation).
    """
    if not images:
        raise ValueError("a parity check needs at least one image")
    if (reference.input_multiple, reference.logit_stride) != (candidate.input_multiple, candidate.logit_stride):
        ref = (reference.input_multiple, reference.logit_stride)
        raise ValueError(
            f"backends disagree on (input_multiple, logit_stride): reference {ref}, "
            f"candidate {(candidate.input_multiple, candidate.logit_stride)}"
        )
    agree = pixels = 0
    worst, max_abs, max_ref, abs_sum, count = 1.0, 0.0, 0.0, 0.0, 0
    shapes = []
    for image, x in zip(images, network_inputs(images, card, multiple=reference.input_multiple)):
        ref = reference(x.to(reference.device)).float().cpu()[0]  # (K, h, w)
        got = candidate(x.to(candidate.device)).float().cpu()[0]
        if ref.shape != got.shape:
            raise ValueError(f"logit shapes differ: reference {tuple(ref.shape)}, candidate {tuple(got.shape)}")
        diff = (ref - got).abs()
        max_abs = max(max_abs, float(diff.max()))
        max_ref = max(max_ref, float(ref.abs().max()))
        abs_sum += float(diff.sum())
        count += diff.numel()
        h, w = image.shape[:2]
        stride = reference.logit_stride
        a = class_argmax(upsample_logits(ref, stride=stride, height=h, width=w))
        b = class_argmax(upsample_logits(got, stride=stride, height=h, width=w))
        same = int((a == b).sum())
        agree += same
        pixels += h * w
        worst = min(worst, same / (h * w))
        shapes.append([int(x.shape[2]), int(x.shape[3])])
    return ParityReport(
        images=len(shapes), pixels=pixels, label_agreement=agree / pixels, min_image_agreement=worst,
        max_abs_error=max_abs, max_rel_error=max_abs / max(max_ref, 1e-12), mean_abs_error=abs_sum / count,
        shapes=shapes,
    )


def check_parity(
    reference: Any,
    candidate: Any,
    images: Sequence[np.ndarray],
    *,
    card: ModelCard,
    tolerance: Tolerance | str = "fp32",
    name: str = "export",
) -> ParityReport:
    """`compare_backends`, then raise `ParityError` if the report fails `tolerance`.

    Args:
        tolerance: a `Tolerance`, or a precision name from `TOLERANCES`.
        name: what is being checked, for the messages (e.g. the file name).
    """
    tolerance = resolve_tolerance(tolerance)
    with torch.inference_mode():
        report = compare_backends(reference, candidate, images, card=card)
    failures = report.failures(tolerance)
    summary = (
        f"{name}: label agreement {report.label_agreement:.5f} (worst image {report.min_image_agreement:.5f}), "
        f"max abs logit error {report.max_abs_error:.2e} (relative {report.max_rel_error:.2e}) "
        f"on {report.images} images"
    )
    if failures:
        raise ParityError(f"parity check failed: {'; '.join(failures)}. {summary}", report)
    logger.info("parity ok: %s", summary)
    return report


def resolve_tolerance(tolerance: Tolerance | str, *, table: dict[str, Tolerance] | None = None) -> Tolerance:
    """A `Tolerance` as is, or a precision name looked up in `table` (default `TOLERANCES`)."""
    table = TOLERANCES if table is None else table
    if isinstance(tolerance, Tolerance):
        return tolerance
    if tolerance not in table:
        raise ValueError(f"tolerance must be a Tolerance or one of {sorted(table)}, got {tolerance!r}")
    return table[tolerance]


def check_files(
    model: str | os.PathLike,
    reference: str | os.PathLike,
    *,
    images: str | os.PathLike | Sequence[Any] | None = None,
    device: str = "auto",
    reference_device: str = "cpu",
    tolerance: Tolerance | str | None = None,
) -> ParityReport:
    """Check the model file `model` against `reference` (each a `.pt`, `.onnx`, `.pt2` or
    `.engine` that `wsdeploy.load` reads) on real images.

    Args:
        images: a folder or list of images; None: `wsdeploy.export.images.default_check_images`.
        device: where `model` runs ('auto': CUDA when present); `reference_device`: where the
            reference runs (default CPU, the exact arithmetic).
        tolerance: a `Tolerance` or precision name; None: the model's own precision in
            `ENGINE_TOLERANCES` for an engine, else in `TOLERANCES`.

    Raises:
        ValueError: unreadable files, models with different classes or strides;
            `ParityError` past the tolerance.
    """
    from wsdeploy.backends.dispatch import SUFFIX_BACKENDS, open_backend
    from wsdeploy.export.images import load_images

    candidate, card = open_backend(model, device=device)
    ref, ref_card = open_backend(reference, device=reference_device)
    if list(card.classes) != list(ref_card.classes):
        raise ValueError(
            f"{Path(model).name} and {Path(reference).name} have different classes: "
            f"{list(card.classes)[:6]} vs {list(ref_card.classes)[:6]}"
        )
    if tolerance is None:
        precision = getattr(getattr(candidate, "info", None), "precision", "fp32")
        engine = SUFFIX_BACKENDS.get(Path(model).suffix.lower()) == "tensorrt"
        tolerance = resolve_tolerance(precision, table=ENGINE_TOLERANCES if engine else TOLERANCES)
    return check_parity(
        ref, candidate, load_images(images), card=card, tolerance=tolerance,
        name=f"{Path(model).name} vs {Path(reference).name}",
    )
