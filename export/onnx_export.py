"""`to_onnx`: a checkpoint (or model + card) to a self-describing, parity-checked ONNX file.

Steps (timm's export check: run eager, export, validate, compare with onnxruntime):
1. export with `torch.onnx.export(dynamo=True)`, dynamic batch/H/W by default (or one fixed
   shape), weights inside the file;
2. `onnx.checker.check_model(full_check=True)`;
3. simplify with onnxslim when installed (`pip install onnxslim`), skipped otherwise;
4. fp16 conversion or INT8 static quantisation (see `onnx_precision`), optional;
5. the model card and runtime facts into `metadata_props` (see `wsdeploy.backends.metadata`);
6. parity with the torch model on real-looking images (see `parity`); the file is moved into
   place only if it passes, so a failed export never leaves a bad file behind.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from wsdeploy.atomic import atomic_path
from wsdeploy.backends.metadata import ExportInfo, metadata_strings, parse_metadata, runtime_info
from wsdeploy.backends.torch_backend import TorchBackend
from wsdeploy.checkpoint import ModelCard

from wsdeploy.export.images import load_images
from wsdeploy.export.onnx_precision import quantize_int8, to_fp16
from wsdeploy.export.parity import ParityReport, Tolerance, check_parity
from wsdeploy.export.source import ExportSource, resolve_source

__all__ = ["DEFAULT_OPSET", "OnnxExport", "read_onnx_info", "to_onnx"]

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 20
INPUT_NAME, OUTPUT_NAME = "image", "logits"


@dataclasses.dataclass(frozen=True)
class OnnxExport:
    """What `to_onnx` wrote and measured."""

    path: Path
    precision: str  # 'fp32' | 'fp16' | 'int8'
    simplified: bool  # onnxslim ran
    parity: ParityReport | None  # None when check=False
    seconds: float


def to_onnx(
    source: ExportSource,
    path: str | os.PathLike,
    *,
    card: ModelCard | None = None,
    opset: int = DEFAULT_OPSET,
    dynamic: bool = True,
    input_shape: tuple[int, int, int, int] | None = None,
    fp16: bool = False,
    int8: bool = False,
    calibration: str | os.PathLike | Sequence[Any] | None = None,
    calibration_limit: int = 32,
    calibration_method: str = "minmax",
    int8_symmetric: bool = False,
    simplify: bool = True,
    check: bool = True,
    check_images: str | os.PathLike | Sequence[Any] | None = None,
    tolerance: Tolerance | None = None,
) -> OnnxExport:
    """Export a segmentation model to ONNX with its card, checked against torch.

    Args:
        source: a checkpoint path (`.pt`), or an `nn.Module` together with `card=`.
        path: the `.onnx` file to write (atomically).
        card: the model card, only with a module `source`.
        opset: ONNX opset (the dynamo exporter supports 18 and above).
        dynamic: dynamic batch, height and width (input (batch, 3, height, width)); False
            exports one fixed `input_shape`.
        input_shape: (B, 3, H, W) for a fixed-shape export; H, W multiples of the model's
            `input_multiple`. The runtime pads smaller images up to it.
        fp16: fp16 weights and activations (float32 input/output kept).
        int8: INT8 QDQ static quantisation, calibrated on `calibration` (required).
        calibration: a folder of images, or a list of image inputs, for INT8.
        calibration_limit: use at most this many calibration images.
        calibration_method: 'minmax', 'entropy' or 'percentile' (see `quantize_int8`).
        int8_symmetric: signed int8 activations with zero point 0, the scheme TensorRT needs
            (`to_tensorrt` refuses the default asymmetric uint8 ones).
        simplify: run onnxslim when it is installed.
        check: the parity check with torch (strongly recommended).
        check_images: images for it (folder or list); default: the bundled demo images, or
            synthetic scenes when they are not installed.
        tolerance: override the precision's default `parity.TOLERANCES` entry.

    Returns:
        `OnnxExport` with the path and the parity report.

    Raises:
        ValueError: bad arguments or checkpoint; `ParityError` (a ValueError) if the export
            disagrees with torch past the tolerance (no file is written then).
        ImportError: onnxscript (needed by the exporter) is missing.
    """
    t0 = time.perf_counter()
    if fp16 and int8:
        raise ValueError("choose one of fp16=True or int8=True, not both")
    if int8 and calibration is None:
        raise ValueError("int8=True needs calibration= (a folder of representative images)")
    if opset < 18:
        raise ValueError(f"opset must be >= 18 for torch's dynamo ONNX exporter, got {opset}")
    model, card = resolve_source(source, card)
    m = int(model.input_multiple)
    example, shapes = _example_input(m, dynamic=dynamic, input_shape=input_shape)
    precision = "fp16" if fp16 else "int8" if int8 else "fp32"
    calib_images = load_images(calibration, limit=calibration_limit) if int8 else []
    check_arrays = load_images(check_images) if check else []
    import onnx

    with tempfile.TemporaryDirectory(prefix="wsdeploy-onnx-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        _torch_export(model, example, raw, opset=opset, dynamic_shapes=shapes)
        proto = onnx.load(str(raw))
        onnx.checker.check_model(proto, full_check=True)
        proto, simplified = _simplify(proto) if simplify else (proto, False)
        runtime = runtime_info(
            input_multiple=m, logit_stride=int(model.logit_stride), precision=precision,
            input_shape=None if dynamic else tuple(example.shape),
        )
        if fp16:
            proto = to_fp16(proto)
        elif int8:
            fp32 = Path(tmp) / "fp32.onnx"
            onnx.save(proto, str(fp32))
            quantized = Path(tmp) / "int8.onnx"
            quantize_int8(fp32, quantized, images=calib_images, card=card, input_multiple=m, method=calibration_method,
                          symmetric=int8_symmetric)
            proto = onnx.load(str(quantized))
        _set_metadata(proto, card, runtime)
        onnx.checker.check_model(proto)
        with atomic_path(path) as tmp_path:
            onnx.save(proto, str(tmp_path))
            report = None
            if check:
                report = _parity(model, tmp_path, card, check_arrays, tolerance or precision, Path(path).name)
    seconds = time.perf_counter() - t0
    logger.info("wrote %s (%s, %.1f s)", path, precision, seconds)
    return OnnxExport(path=Path(path), precision=precision, simplified=simplified, parity=report, seconds=seconds)


def read_onnx_info(path: str | os.PathLike) -> ExportInfo:
    """The card and runtime facts stored in an ONNX file (no onnxruntime session needed).

    Raises:
        ValueError: not an ONNX file, or one without wsdeploy metadata.
    """
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"ONNX model not found: {str(path)!r}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError) as exc:
        raise ValueError(f"{path}: not a readable ONNX model: {exc}") from None
    return parse_metadata({p.key: p.value for p in proto.metadata_props}, source=str(path))


def _example_input(
    multiple: int, *, dynamic: bool, input_shape: tuple[int, int, int, int] | None
) -> tuple[torch.Tensor, tuple[dict[int, str], ...] | None]:
    if dynamic:
        if input_shape is not None:
            raise ValueError("input_shape is for dynamic=False exports; a dynamic export takes any shape")
        # batch 2 and H != W: torch.export specialises dims whose example is 0 or 1
        return torch.randn(2, 3, 2 * multiple, 3 * multiple), ({0: "batch", 2: "height", 3: "width"},)
    if input_shape is None or len(input_shape) != 4 or input_shape[1] != 3:
        raise ValueError(f"dynamic=False needs input_shape=(B, 3, H, W), got {input_shape!r}")
    b, _, h, w = (int(d) for d in input_shape)
    if b < 1 or h < multiple or w < multiple or h % multiple or w % multiple:
        raise ValueError(
            f"input_shape {tuple(input_shape)}: need B >= 1 and H, W positive multiples of {multiple}"
        )
    return torch.randn(b, 3, h, w), None


def _torch_export(
    model: torch.nn.Module, example: torch.Tensor, path: Path, *, opset: int, dynamic_shapes: Any
) -> None:
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter's dependency)
    except ImportError as exc:
        raise ImportError('ONNX export needs onnxscript: pip install "wsdeploy[export]"') from exc
    # torch's exporter logs one warning per torchvision op it cannot register (nms, roi_align, ...)
    # when torchvision is absent; our models use none of them
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    with warnings.catch_warnings():  # torch's own exporter internals (pytree deprecations)
        warnings.simplefilter("ignore", FutureWarning)
        try:
            torch.onnx.export(
                model, (example,), str(path), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME], dynamic_shapes=dynamic_shapes, external_data=False, verbose=False,
            )
        finally:
            registration.setLevel(level)


def _simplify(proto: Any) -> tuple[Any, bool]:
    try:
        import onnxslim
    except ImportError:
        logger.info("onnxslim is not installed: graph simplification skipped (pip install \"wsdeploy[export]\")")
        return proto, False
    return onnxslim.slim(proto), True


def _set_metadata(proto: Any, card: ModelCard, runtime: dict[str, Any]) -> None:
    strings = metadata_strings(card, runtime)
    kept = [p for p in proto.metadata_props if p.key not in strings]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in strings.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "wsdeploy"
    proto.doc_string = f"wsdeploy export of {card.arch} ({len(card.classes)} classes, {runtime['precision']})"


def _parity(
    model: torch.nn.Module, onnx_path: Path, card: ModelCard, images: list[Any], tolerance: Any, name: str
) -> ParityReport:
    from wsdeploy.backends.onnxruntime_backend import OnnxRuntimeBackend

    reference = TorchBackend(model, device="cpu")
    candidate = OnnxRuntimeBackend(onnx_path, device="cpu", threads=torch.get_num_threads())  # as torch
    return check_parity(reference, candidate, images, card=card, tolerance=tolerance, name=name)
