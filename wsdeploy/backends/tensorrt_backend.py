"""TensorRT backend for `.engine` files built by `wsdeploy.export.to_tensorrt` (CUDA only).

Written against TensorRT 10's Python API (`Runtime.deserialize_cuda_engine`, named I/O tensors,
`IExecutionContext.set_input_shape` / `set_tensor_address` / `execute_async_v3`), with torch
CUDA tensors as the buffers. An engine is specific to the GPU model and TensorRT version that
built it; both are recorded in the side file.

The card lives in a side file next to the engine, `NAME.engine.json`:
`{"wsdeploy.card": {...}, "wsdeploy.runtime": {...}}` (see `wsdeploy.backends.metadata`).

NOT verified on a machine with TensorRT (none was available when this was written); the side-file
reading and the missing-TensorRT error are tested.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from wsdeploy.backends.metadata import ExportInfo, parse_metadata
from wsdeploy.backends.torch_backend import resolve_device

__all__ = ["TensorRTBackend", "import_tensorrt", "read_engine_info", "side_file"]

INPUT_NAME, OUTPUT_NAME = "image", "logits"


def import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as exc:
        raise ImportError(
            'TensorRT is not installed: pip install "wsdeploy[gpu]" (tensorrt>=10) on a machine with an '
            "NVIDIA GPU, or use the onnxruntime backend with the .onnx file instead"
        ) from exc
    return tensorrt


def side_file(engine_path: str | os.PathLike) -> Path:
    """Where an engine's card lives: `model.engine` -> `model.engine.json`."""
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def read_engine_info(engine_path: str | os.PathLike) -> ExportInfo:
    """Read the card and runtime facts of an engine from its side file (no TensorRT needed)."""
    meta = side_file(engine_path)
    if not meta.is_file():
        raise ValueError(
            f"{engine_path}: no model card side file {meta.name!r} next to the engine; engines built "
            "by wsdeploy.export.to_tensorrt write one (a foreign engine cannot be used)"
        )
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{meta}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{meta}: expected a JSON object, got {type(data).__name__}")
    return parse_metadata({k: json.dumps(v) for k, v in data.items()}, source=str(meta))


class TensorRTBackend:
    """A deserialised TensorRT engine behind the backend interface.

    Args:
        path: the `.engine` (or `.plan`) file, with its `.engine.json` side file.
        device: 'auto' or 'cuda[:N]' (TensorRT runs on NVIDIA GPUs only).

    Raises:
        ImportError: TensorRT is not installed (names the extra).
        ValueError: no CUDA device, missing side file, or an engine TensorRT cannot read.
    """

    def __init__(self, path: str | os.PathLike, *, device: str = "auto") -> None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"TensorRT engine not found: {str(path)!r}")
        self.info: ExportInfo = read_engine_info(path)
        trt = import_tensorrt()
        self.device = resolve_device(device)
        if self.device.type != "cuda":
            raise ValueError(f"TensorRT engines run on CUDA devices only, got device {device!r}")
        self.input_multiple = self.info.input_multiple
        self.logit_stride = self.info.logit_stride
        self._logger = trt.Logger(trt.Logger.WARNING)
        with torch.cuda.device(self.device):
            self._runtime = trt.Runtime(self._logger)
            self.engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
            if self.engine is None:
                raise ValueError(
                    f"{path}: TensorRT could not deserialise the engine (built by another TensorRT "
                    f"version or for another GPU? side file says {self.info.card.versions.get('tensorrt')})"
                )
            self.context = self.engine.create_execution_context()
        self.min_shape, self.opt_shape, self.max_shape = (
            tuple(s) for s in self.engine.get_tensor_profile_shape(INPUT_NAME, 0)
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) float32 normalised -> logits (B, K, H/s, W/s) float32 on the GPU."""
        shape = tuple(x.shape)
        if len(shape) != 4 or any(not lo <= d <= hi for d, lo, hi in zip(shape, self.min_shape, self.max_shape)):
            raise ValueError(
                f"input {shape} is outside the engine's optimisation profile {self.min_shape}..{self.max_shape}; "
                "rebuild the engine with wider min/max shapes"
            )
        x = x.to(self.device, torch.float32).contiguous()
        self.context.set_input_shape(INPUT_NAME, shape)
        out = torch.empty(tuple(self.context.get_tensor_shape(OUTPUT_NAME)), device=self.device, dtype=torch.float32)
        self.context.set_tensor_address(INPUT_NAME, x.data_ptr())
        self.context.set_tensor_address(OUTPUT_NAME, out.data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log above)")
        return out
