"""`to_tensorrt`: a wsdeploy ONNX export to a TensorRT engine, checked for parity before it is written.

One strongly typed build for TensorRT 10.13+ and 11.x. TensorRT 11 removed weak typing (no
`BuilderFlag.FP16` / `INT8`, no implicit INT8 calibrator); the network is created with
`NetworkDefinitionCreationFlag.STRONGLY_TYPED`, which TensorRT 10 needs for the same behaviour
and TensorRT 11 accepts and ignores (strong typing is always on there). The precision therefore
comes from the ONNX graph itself:

    fp32 ONNX  (to_onnx)                                  -> fp32 engine (TF32 convolutions, TensorRT's default)
    fp16 ONNX  (to_onnx(fp16=True))                       -> fp16 engine
    INT8 QDQ   (to_onnx(int8=True, int8_symmetric=True,   -> INT8 engine (explicit quantisation)
                calibration=images))

The INT8 scales are the QDQ ONNX's, calibrated on real images through the runtime's
pre-processing (`wsdeploy.export.onnx_precision.quantize_int8`). TensorRT accepts only symmetric
int8 (zero point 0), so an ONNX with onnxruntime's default asymmetric uint8 activations is refused
with the fix in the message.

Builder settings: one optimisation profile for the dynamic (B, 3, H, W) input, the workspace pool
limit, a timing cache file read and updated across builds. Before anything is written the
serialised engine is deserialised and compared with a reference (default: the source ONNX on
onnxruntime, CPU) on the check images (`wsdeploy.export.images.default_check_images` unless given)
with `parity.ENGINE_TOLERANCES` for its precision; a failed check raises `ParityError` and writes
nothing.

Verified here without TensorRT: profiles, the INT8-scheme check, argument checks, the missing-
TensorRT error; every TensorRT name used exists in the 11.4 bindings and the module type-checks
against TensorRT 10.13's stubs (`tests/export/test_tensorrt_api.py`). NOT run: building or
running an engine; no machine with TensorRT was available.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from wsdeploy.atomic import atomic_write_bytes, atomic_write_text
from wsdeploy.backends.metadata import CARD_KEY, RUNTIME_KEY, runtime_info
from wsdeploy.backends.tensorrt_backend import INPUT_NAME, TensorRTBackend, import_tensorrt, side_file
from wsdeploy.backends.torch_backend import resolve_device

from wsdeploy.export.images import load_images
from wsdeploy.export.onnx_export import read_onnx_info
from wsdeploy.export.parity import ENGINE_TOLERANCES, ParityReport, Tolerance, check_parity, resolve_tolerance

__all__ = ["TensorRTExport", "int8_scheme", "optimization_profile", "to_tensorrt"]

logger = logging.getLogger(__name__)

Shape = tuple[int, int, int, int]


@dataclasses.dataclass(frozen=True)
class TensorRTExport:
    """What `to_tensorrt` wrote and measured."""

    path: Path
    side_file: Path
    precision: str  # from the ONNX: 'fp32' | 'fp16' | 'int8'
    profile: tuple[Shape, Shape, Shape]
    parity: ParityReport | None  # None when check=False
    seconds: float


def optimization_profile(
    min_shape: Sequence[int], opt_shape: Sequence[int], max_shape: Sequence[int], *, input_multiple: int
) -> tuple[Shape, Shape, Shape]:
    """Validate an optimisation profile for the (B, 3, H, W) input.

    H and W are rounded up to multiples of `input_multiple` (the runtime pads inputs to them).

    Returns:
        (min, opt, max) shapes, each (B, 3, H, W).

    Raises:
        ValueError: not 4 dims, channels other than 3, non-positive sizes, or min <= opt <= max
            failing in some dimension.
    """
    shapes = []
    for name, shape in (("min_shape", min_shape), ("opt_shape", opt_shape), ("max_shape", max_shape)):
        s = tuple(int(d) for d in shape)
        if len(s) != 4 or s[1] != 3 or min(s) < 1:
            raise ValueError(f"{name} must be (B, 3, H, W) with positive sizes, got {tuple(shape)}")
        m = input_multiple
        shapes.append((s[0], 3, -(-s[2] // m) * m, -(-s[3] // m) * m))
    lo, opt, hi = shapes
    if any(not a <= b <= c for a, b, c in zip(lo, opt, hi)):
        raise ValueError(f"need min_shape <= opt_shape <= max_shape in every dim, got {lo}, {opt}, {hi}")
    return lo, opt, hi


def int8_scheme(onnx_path: str | os.PathLike) -> str | None:
    """'symmetric' (every QuantizeLinear int8 with zero point 0), 'asymmetric', or None (no
    QuantizeLinear in the graph)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    constants = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute:
            constants[node.output[0]] = node.attribute[0].t
    found = False
    for node in graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        found = True
        if len(node.input) < 3 or node.input[2] not in constants:
            return "asymmetric"  # no zero point means uint8 in ONNX
        zero = numpy_helper.to_array(constants[node.input[2]])
        if zero.dtype != np.int8 or np.any(zero != 0):
            return "asymmetric"
    return "symmetric" if found else None


def to_tensorrt(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    *,
    min_shape: Sequence[int] = (1, 3, 256, 256),
    opt_shape: Sequence[int] = (1, 3, 512, 512),
    max_shape: Sequence[int] = (8, 3, 1024, 1024),
    timing_cache: str | os.PathLike | None = None,
    workspace_gib: float = 4.0,
    device: str = "cuda",
    check: bool = True,
    check_images: str | os.PathLike | Sequence[Any] | None = None,
    reference: str | os.PathLike | None = None,
    tolerance: Tolerance | None = None,
) -> TensorRTExport:
    """Build a TensorRT engine from a wsdeploy ONNX export; check it; write it and its side file.

    Args:
        onnx_path: an fp32, fp16 or symmetric INT8 QDQ export of `wsdeploy.export.to_onnx`; the
            engine's precision is the ONNX's.
        engine_path: where to write the engine (atomically); the card goes to
            `engine_path + ".json"`.
        min_shape, opt_shape, max_shape: the optimisation profile, (B, 3, H, W) each.
        timing_cache: read / update this kernel timing cache file (faster rebuilds).
        workspace_gib: builder workspace memory limit.
        device: the CUDA device to build for and check on.
        check: compare the built engine with `reference` before writing (strongly advised).
        check_images: images for it (folder or list); default: the package's default check images.
            Images whose padded size falls outside the profile are resized to opt_shape's H, W.
        reference: the model to compare with: a `.onnx` (onnxruntime, CPU) or `.pt` checkpoint
            (torch, CPU); default: `onnx_path` itself.
        tolerance: override `parity.ENGINE_TOLERANCES[precision]`.

    Raises:
        ImportError: TensorRT is not installed (names the extra).
        ValueError: bad arguments, a foreign ONNX, an asymmetric INT8 ONNX, a failed parse or
            build; `ParityError` (a ValueError) if the engine fails the check (nothing written).
    """
    t0 = time.perf_counter()
    info = read_onnx_info(onnx_path)
    if info.input_shape is not None:
        raise ValueError(f"{onnx_path}: a fixed-shape ONNX; build engines from a dynamic export (the default)")
    if info.precision == "int8" and int8_scheme(onnx_path) != "symmetric":
        raise ValueError(
            f"{onnx_path}: INT8 ONNX with asymmetric uint8 activations (onnxruntime's default); TensorRT "
            "accepts only symmetric int8: export with to_onnx(int8=True, int8_symmetric=True, ...) or "
            "`wsdeploy export CKPT --format tensorrt --int8 --calibration DIR`"
        )
    if workspace_gib <= 0:
        raise ValueError(f"workspace_gib must be > 0, got {workspace_gib}")
    profile = optimization_profile(min_shape, opt_shape, max_shape, input_multiple=info.input_multiple)
    limits = resolve_tolerance(tolerance or info.precision, table=ENGINE_TOLERANCES)
    import_tensorrt()  # the ImportError that names the extra
    import tensorrt as trt

    gpu = resolve_device(device)
    if gpu.type != "cuda":
        raise ValueError(f"TensorRT builds engines on a CUDA device, got device {device!r}")
    with torch.cuda.device(gpu):
        serialized, cache_bytes = _build(Path(onnx_path), profile, timing_cache, workspace_gib)
    runtime = runtime_info(input_multiple=info.input_multiple, logit_stride=info.logit_stride, precision=info.precision)
    runtime["tensorrt"] = {
        "version": trt.__version__, "gpu": torch.cuda.get_device_name(gpu),
        "profile": [list(s) for s in profile], "strongly_typed": True,
    }
    report = None
    if check:
        engine = TensorRTBackend.from_bytes(serialized, info, device=str(gpu), source=str(engine_path))
        images = _fit_profile(load_images(check_images), profile, info.input_multiple)
        report = check_parity(
            _reference_backend(reference or onnx_path), engine, images, card=info.card, tolerance=limits,
            name=Path(engine_path).name,
        )
        runtime["tensorrt"]["parity"] = report.to_dict()
    if timing_cache and cache_bytes:
        atomic_write_bytes(timing_cache, cache_bytes)
    atomic_write_bytes(engine_path, serialized)
    meta = side_file(engine_path)
    atomic_write_text(meta, json.dumps({CARD_KEY: info.card.to_dict(), RUNTIME_KEY: runtime}, indent=1))
    seconds = time.perf_counter() - t0
    logger.info("wrote %s (%s, profile %s, %.0f s)", engine_path, info.precision, profile, seconds)
    return TensorRTExport(
        path=Path(engine_path), side_file=meta, precision=info.precision, profile=profile, parity=report,
        seconds=seconds,
    )


def _build(
    onnx_path: Path, profile: tuple[Shape, Shape, Shape], timing_cache: str | os.PathLike | None, workspace_gib: float
) -> tuple[bytes, bytes]:
    """(serialised engine, updated timing cache) for a strongly typed network parsed from ONNX."""
    import tensorrt as trt

    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ValueError(f"{onnx_path}: TensorRT could not parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    trt_profile = builder.create_optimization_profile()
    trt_profile.set_shape(INPUT_NAME, *(trt.Dims(list(s)) for s in profile))
    config.add_optimization_profile(trt_profile)
    cached = Path(timing_cache).read_bytes() if timing_cache and Path(timing_cache).is_file() else b""
    config.set_timing_cache(config.create_timing_cache(cached), False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ValueError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log)")
    cache = config.get_timing_cache()
    return bytes(serialized), bytes(cache.serialize()) if cache is not None else b""


def _reference_backend(reference: str | os.PathLike) -> Any:
    """The backend the engine is compared with: onnxruntime or torch, on the CPU."""
    from wsdeploy.backends.dispatch import open_backend

    backend, _ = open_backend(reference, device="cpu")
    return backend


def _fit_profile(images: list[np.ndarray], profile: tuple[Shape, Shape, Shape], multiple: int) -> list[np.ndarray]:
    """Images whose padded (H, W) lies outside the profile, resized to the profile's opt H, W."""
    (_, _, h_lo, w_lo), (_, _, h_opt, w_opt), (_, _, h_hi, w_hi) = profile
    out = []
    for image in images:
        h, w = (-(-d // multiple) * multiple for d in image.shape[:2])
        if not (h_lo <= h <= h_hi and w_lo <= w <= w_hi):
            image = cv2.resize(image, (w_opt, h_opt), interpolation=cv2.INTER_AREA)
        out.append(image)
    return out
