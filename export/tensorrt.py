"""`to_tensorrt`: an ONNX export to a TensorRT engine (fp16, INT8) with an optimisation profile.

Written against TensorRT 10's documented Python API: `Builder`, `OnnxParser`,
`IBuilderConfig` (memory pool limit, `BuilderFlag.FP16` / `INT8`, timing cache),
`IOptimizationProfile.set_shape`, `build_serialized_network`, and for INT8 from an fp32 model an
`IInt8EntropyCalibrator2` fed by real images through the runtime's pre-processing, with a
calibration cache. (TensorRT 10 deprecates implicit INT8 calibration in favour of explicit
quantisation: an INT8 QDQ ONNX from `to_onnx(int8=True)` builds with the INT8 flag and no
calibrator, and that is the path to prefer.)

Verified here: the profile computation, the calibration batches and the missing-TensorRT error.
NOT verified: building or running an engine; no machine with TensorRT was available.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsdeploy.atomic import atomic_write_bytes, atomic_write_text
from wsdeploy.backends.metadata import CARD_KEY, RUNTIME_KEY, runtime_info
from wsdeploy.backends.tensorrt_backend import INPUT_NAME, import_tensorrt, side_file
from wsdeploy.checkpoint import ModelCard

from wsdeploy.export.images import load_images, network_inputs
from wsdeploy.export.onnx_export import read_onnx_info

__all__ = ["TensorRTExport", "calibration_batches", "optimization_profile", "to_tensorrt"]

logger = logging.getLogger(__name__)

Shape = tuple[int, int, int, int]


@dataclasses.dataclass(frozen=True)
class TensorRTExport:
    """What `to_tensorrt` wrote."""

    path: Path
    side_file: Path
    precision: str
    profile: tuple[Shape, Shape, Shape]
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


def calibration_batches(
    images: Sequence[np.ndarray], card: ModelCard, *, shape: Sequence[int], input_multiple: int
) -> Iterator[np.ndarray]:
    """INT8 calibration batches of exactly `shape` (B, 3, H, W): images resized to (H, W), then
    the runtime's normalisation; a last incomplete batch is dropped (TensorRT wants full ones).

    Yields:
        (B, 3, H, W) float32 C-contiguous arrays.
    """
    b, _, h, w = (int(d) for d in shape)
    if len(images) < b:
        raise ValueError(f"INT8 calibration needs at least one full batch of {b} images, got {len(images)}")
    batch: list[np.ndarray] = []
    for x in network_inputs(images, card, multiple=input_multiple, size=(h, w)):
        batch.append(x[0].numpy())
        if len(batch) == b:
            yield np.ascontiguousarray(np.stack(batch))
            batch = []


def to_tensorrt(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    *,
    fp16: bool = True,
    int8: bool = False,
    calibration_data: str | os.PathLike | Sequence[Any] | None = None,
    calibration_limit: int = 64,
    calibration_cache: str | os.PathLike | None = None,
    min_shape: Sequence[int] = (1, 3, 256, 256),
    opt_shape: Sequence[int] = (1, 3, 512, 512),
    max_shape: Sequence[int] = (8, 3, 1024, 1024),
    timing_cache: str | os.PathLike | None = None,
    workspace_gib: float = 4.0,
) -> TensorRTExport:
    """Build a TensorRT engine from a wsdeploy ONNX export, and its `.engine.json` side file.

    Args:
        onnx_path: an fp32 export (or an INT8 QDQ one: explicit quantisation, no calibrator).
        engine_path: where to write the engine (atomically); the card goes to
            `engine_path + ".json"`.
        fp16: allow fp16 kernels. int8: allow INT8 kernels; an fp32 ONNX then needs
            `calibration_data` (a folder or list of images) for the entropy calibrator.
        calibration_limit: at most this many calibration images.
        calibration_cache: read calibration scales from / write them to this file (a rebuild
            with the cache skips calibration).
        min_shape, opt_shape, max_shape: the optimisation profile, (B, 3, H, W) each.
        timing_cache: read / update this kernel timing cache file (faster rebuilds).
        workspace_gib: builder workspace memory limit.

    Raises:
        ImportError: TensorRT is not installed (names the extra).
        ValueError: bad arguments, a foreign ONNX, or a failed parse or build.
    """
    t0 = time.perf_counter()
    info = read_onnx_info(onnx_path)
    if info.precision == "fp16":
        raise ValueError(
            f"{onnx_path}: build engines from the fp32 export and pass fp16=True, not from an fp16 ONNX"
        )
    explicit_int8 = info.precision == "int8"
    if int8 and not explicit_int8 and calibration_data is None and calibration_cache is None:
        raise ValueError("int8=True on an fp32 ONNX needs calibration_data= (images) or a calibration_cache=")
    profile = optimization_profile(min_shape, opt_shape, max_shape, input_multiple=info.input_multiple)
    trt = import_tensorrt()
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ValueError(f"{onnx_path}: TensorRT could not parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    trt_profile = builder.create_optimization_profile()
    trt_profile.set_shape(INPUT_NAME, *profile)
    config.add_optimization_profile(trt_profile)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if int8 or explicit_int8:
        config.set_flag(trt.BuilderFlag.INT8)
    if int8 and not explicit_int8:
        images = load_images(calibration_data, limit=calibration_limit) if calibration_data is not None else []
        batches: Iterator[np.ndarray] = iter(())  # with only a cache, TensorRT asks for no batch
        if images:
            batches = calibration_batches(images, info.card, shape=profile[1], input_multiple=info.input_multiple)
        config.int8_calibrator = _entropy_calibrator(trt, batches, profile[1], calibration_cache)
        config.set_calibration_profile(trt_profile)
    cache_bytes = Path(timing_cache).read_bytes() if timing_cache and Path(timing_cache).is_file() else b""
    config.set_timing_cache(config.create_timing_cache(cache_bytes), ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ValueError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log)")
    if timing_cache:
        atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
    precision = "int8" if (int8 or explicit_int8) else "fp16" if fp16 else "fp32"
    runtime = runtime_info(input_multiple=info.input_multiple, logit_stride=info.logit_stride, precision=precision)
    runtime["tensorrt"] = {
        "version": trt.__version__, "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "profile": [list(s) for s in profile],
    }
    atomic_write_bytes(engine_path, bytes(serialized))
    meta = side_file(engine_path)
    atomic_write_text(meta, json.dumps({CARD_KEY: info.card.to_dict(), RUNTIME_KEY: runtime}, indent=1))
    seconds = time.perf_counter() - t0
    logger.info("wrote %s (%s, profile %s, %.0f s)", engine_path, precision, profile, seconds)
    return TensorRTExport(
        path=Path(engine_path), side_file=meta, precision=precision, profile=profile, seconds=seconds
    )


def _entropy_calibrator(
    trt: Any, batches: Iterator[np.ndarray], shape: Shape, cache: str | os.PathLike | None
) -> Any:
    """An `IInt8EntropyCalibrator2` over `batches`, staging each batch in one CUDA buffer."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.buffer = torch.empty(shape, dtype=torch.float32, device="cuda")

        def get_batch_size(self) -> int:
            return int(shape[0])

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(batches, None)
            if batch is None:
                return None
            self.buffer.copy_(torch.from_numpy(batch))
            return [int(self.buffer.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            if cache is not None and Path(cache).is_file():
                return Path(cache).read_bytes()
            return None

        def write_calibration_cache(self, data: Any) -> None:
            if cache is not None:
                atomic_write_bytes(cache, bytes(data))

    return EntropyCalibrator()
