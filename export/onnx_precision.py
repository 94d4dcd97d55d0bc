"""ONNX precision conversions: fp16 weights and activations, INT8 static quantisation (QDQ).

fp16: `onnxruntime.transformers.float16.convert_float_to_float16` (ships with onnxruntime) with
float32 inputs and outputs kept, so the runtime feeds every precision the same way. On a CPU,
onnxruntime has few fp16 kernels and casts around the rest: fp16 is for GPUs, and on the CPU only
its accuracy is meaningful.

INT8: `onnxruntime.quantization.quantize_static` in QDQ format (QuantizeLinear/DequantizeLinear
pairs, which onnxruntime fuses into integer kernels and TensorRT reads as explicit quantisation),
per-channel int8 weights, uint8 activations, calibrated on real images fed through the runtime's
pre-processing. `quant_pre_process` runs first without symbolic shape inference, which stops on
the dynamic Resize of these models. `symmetric=True` makes the activations signed int8 with zero
point 0 (weights are symmetric either way): the only INT8 scheme TensorRT's explicit quantisation
accepts, so the INT8 ONNX behind a TensorRT engine is made that way (onnxruntime runs it too).
"""
from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wsdeploy.checkpoint import ModelCard

from wsdeploy.export.images import network_inputs

__all__ = ["CALIBRATION_METHODS", "quantize_int8", "to_fp16"]

logger = logging.getLogger(__name__)

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


def to_fp16(model: Any) -> Any:
    """An fp16 copy of an fp32 `onnx.ModelProto`, float32 input and output kept."""
    import onnx_ir as ir  # comes with onnxscript, the exporter's dependency
    from onnxruntime.transformers.float16 import convert_float_to_float16

    converted = ir.from_proto(convert_float_to_float16(model, keep_io_types=True))
    converted.graph.sort()  # the converter appends its input casts after their users
    return ir.to_proto(converted)


def quantize_int8(
    fp32_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    *,
    images: Sequence[np.ndarray],
    card: ModelCard,
    input_multiple: int,
    method: str = "minmax",
    symmetric: bool = False,
    input_name: str = "image",
) -> None:
    """Quantise an fp32 ONNX file to INT8 QDQ, calibrated on `images`.

    Args:
        fp32_path: the fp32 model. int8_path: where to write the quantised one.
        images: calibration images, (H, W, 3) uint8 RGB (a few dozen real images suffice).
        card: the model card (normalisation). input_multiple: the model's padding multiple.
        method: activation range calibration: 'minmax' (default; fast), 'entropy' or
            'percentile' (histograms; slower, more memory, sometimes more accurate).
        symmetric: signed int8 activations with zero point 0 (TensorRT's scheme) instead of
            onnxruntime's default asymmetric uint8 ones.
    """
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
    if not images:
        raise ValueError("INT8 calibration needs at least one image")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {
        "minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._inputs = network_inputs(images, card, multiple=input_multiple)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._inputs, None)
            return None if x is None else {input_name: x.numpy()}

    with tempfile.TemporaryDirectory(prefix="wsdeploy-int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre), str(int8_path), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=methods[method],
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True} if symmetric else None,
        )
    logger.info("INT8 QDQ model calibrated on %d images (%s%s)", len(images), method, ", symmetric" if symmetric else "")
