"""TensorRT backend for `.engine` files built by `wsdeploy.export.to_tensorrt` (CUDA only).

Written for TensorRT 10.13+ and 11.x through the API both share (`Runtime.deserialize_cuda_engine`,
named I/O tensors, `IExecutionContext.set_input_shape` / `set_tensor_address` /
`execute_async_v3`), with torch CUDA tensors as the buffers and torch's current stream. An engine
is specific to the GPU model and TensorRT version that built it; both are in the side file.

Thread safety: an `IExecutionContext` holds the input shape and tensor addresses of the call in
flight, so one context must not serve two threads at once. The backend keeps one context per
calling thread (`threading.local`, created on the thread's first call, freed with the thread);
the engine is shared. Each context holds its own activation memory (up to the profile's max
shape), so N threads cost N times that.

The card lives in a side file next to the engine, `NAME.engine.json`:
`{"wsdeploy.card": {...}, "wsdeploy.runtime": {...}}` (see `wsdeploy.backends.metadata`).

Checked here without TensorRT (see `tests/export/test_tensorrt_api.py`): every TensorRT name used
exists in the 11.4 bindings, and the module type-checks against TensorRT 10.13's stubs. NOT run:
no machine with TensorRT was available.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from wsdeploy.backends.metadata import ExportInfo, parse_metadata
from wsdeploy.backends.torch_backend import resolve_device

if TYPE_CHECKING:  # type-checked against the tensorrt stubs (tests/export/test_tensorrt_api.py)
    import tensorrt as trt

__all__ = ["TensorRTBackend", "import_tensorrt", "read_engine_info", "side_file"]

INPUT_NAME, OUTPUT_NAME = "image", "logits"
_TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float16): torch.float16}
_MISSING = (
    'TensorRT is not installed: pip install "wsdeploy[gpu]" (tensorrt 10.13+ or 11) on a machine with an '
    "NVIDIA GPU, or use the onnxruntime backend with the .onnx file instead"
)


def import_tensorrt() -> Any:
    """The `tensorrt` module; ImportError naming the extra when it is missing.

    A `tensorrt` folder holding only type stubs (the `tensorrt-stubs` package) imports as an
    empty namespace package; that counts as missing too.
    """
    try:
        import tensorrt
    except ImportError as exc:
        raise ImportError(_MISSING) from exc
    if not hasattr(tensorrt, "Builder"):
        raise ImportError(_MISSING + " (found only type stubs for tensorrt)")
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
    """A deserialised TensorRT engine behind the backend interface; one execution context per
    calling thread (see the module docstring).

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
        info = read_engine_info(path)
        self._setup(path.read_bytes(), info, device=device, source=str(path))

    @classmethod
    def from_bytes(
        cls, serialized: bytes, info: ExportInfo, *, device: str = "auto", source: str = "<engine in memory>"
    ) -> TensorRTBackend:
        """A backend for an engine not yet written to disk (what `to_tensorrt` checks first)."""
        backend = cls.__new__(cls)
        backend._setup(serialized, info, device=device, source=source)
        return backend

    def _setup(self, serialized: bytes, info: ExportInfo, *, device: str, source: str) -> None:
        self.info: ExportInfo = info
        import_tensorrt()  # the ImportError that names the extra
        import tensorrt as trt
        self.device = resolve_device(device)
        if self.device.type != "cuda":
            raise ValueError(f"TensorRT engines run on CUDA devices only, got device {device!r}")
        if self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.input_multiple = self.info.input_multiple
        self.logit_stride = self.info.logit_stride
        self._logger = trt.Logger(trt.Logger.WARNING)
        with torch.cuda.device(self.device):
            self._runtime = trt.Runtime(self._logger)
            self.engine = self._runtime.deserialize_cuda_engine(serialized)
        if self.engine is None:
            raise ValueError(
                f"{source}: TensorRT could not deserialise the engine (built by another TensorRT "
                f"version or for another GPU? this is TensorRT {trt.__version__})"
            )
        names = {self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)}
        if names != {INPUT_NAME, OUTPUT_NAME}:
            raise ValueError(f"{source}: expected I/O tensors {[INPUT_NAME, OUTPUT_NAME]}, got {sorted(names)}")
        in_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(INPUT_NAME)))
        out_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(OUTPUT_NAME)))
        if in_dtype != np.float32 or out_dtype not in _TORCH_DTYPES:
            raise ValueError(f"{source}: expected a float32 input and a float output, got {in_dtype} -> {out_dtype}")
        self._out_dtype = _TORCH_DTYPES[out_dtype]
        shapes = self.engine.get_tensor_profile_shape(INPUT_NAME, 0)
        self.min_shape, self.opt_shape, self.max_shape = (_dims(s) for s in shapes)
        self._local = threading.local()
        self._create_lock = threading.Lock()
        self._context()  # fail here, not on the first image, when the GPU has no room for one

    def _context(self) -> trt.IExecutionContext:
        """This thread's execution context (created on its first call)."""
        context = getattr(self._local, "context", None)
        if context is None:
            with self._create_lock, torch.cuda.device(self.device):
                context = self.engine.create_execution_context()
            if context is None:
                raise RuntimeError("TensorRT could not create an execution context (out of GPU memory?)")
            self._local.context = context
        return context

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) float32 normalised -> logits (B, K, H/s, W/s) float32 on the GPU."""
        shape = tuple(int(d) for d in x.shape)
        if len(shape) != 4 or any(not lo <= d <= hi for d, lo, hi in zip(shape, self.min_shape, self.max_shape)):
            raise ValueError(
                f"input {shape} is outside the engine's optimisation profile {self.min_shape}..{self.max_shape}; "
                "rebuild the engine with wider min/max shapes"
            )
        context = self._context()
        x = x.to(self.device, torch.float32).contiguous()
        if not context.set_input_shape(INPUT_NAME, shape):
            raise ValueError(f"TensorRT refused the input shape {shape}")
        out_shape = _dims(context.get_tensor_shape(OUTPUT_NAME))
        out = torch.empty(out_shape, device=self.device, dtype=self._out_dtype)
        context.set_tensor_address(INPUT_NAME, x.data_ptr())
        context.set_tensor_address(OUTPUT_NAME, out.data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log above)")
        return out.float()


def _dims(dims: trt.Dims) -> tuple[int, ...]:
    """A TensorRT `Dims` as a tuple of ints."""
    return tuple(int(dims[i]) for i in range(len(dims)))
