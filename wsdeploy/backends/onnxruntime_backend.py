"""ONNX Runtime backend for `.onnx` files written by `wsdeploy.export.to_onnx`.

Execution providers: CPU always; on `device='cuda'` the CUDA provider (needs `onnxruntime-gpu`,
the `gpu` extra), optionally TensorRT's (`providers=("tensorrt",)`). On CUDA the input and the
logits stay on the GPU through IO binding (torch tensors in, torch tensors out), so the CRF that
follows runs there too.

The file must carry the wsdeploy metadata (see `wsdeploy.backends.metadata`); a foreign or corrupt
file raises ValueError when the backend is built.

Thread safety: no lock. onnxruntime guarantees that `InferenceSession.run` may be called from
several threads at once on one session, and each call here builds its own IO binding and output
tensor, so concurrent calls share nothing mutable.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from wsdeploy.backends.metadata import ExportInfo, parse_metadata
from wsdeploy.backends.torch_backend import resolve_device

__all__ = ["OnnxRuntimeBackend", "import_onnxruntime", "ort_errors"]

logger = logging.getLogger(__name__)

_PROVIDER_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError(
            "the onnxruntime backend needs onnxruntime: pip install onnxruntime (CPU) or "
            'pip install "wsdeploy[gpu]" (onnxruntime-gpu, CUDA and TensorRT providers)'
        ) from exc
    return onnxruntime


def ort_errors() -> tuple[type[BaseException], ...]:
    """The exception types onnxruntime raises on unreadable or invalid models."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoSuchFile", "NotImplemented",
             "RuntimeException")
    return tuple(getattr(state, n) for n in names if hasattr(state, n))


class OnnxRuntimeBackend:
    """An onnxruntime `InferenceSession` behind the backend interface; safe to call from several
    threads at once (see the module docstring).

    Args:
        path: a `.onnx` file exported by wsdeploy (card in its metadata).
        device: 'auto' (CUDA when both torch and onnxruntime-gpu see it), 'cpu', 'cuda[:N]'.
        providers: on CUDA, which accelerated providers to try in order, from 'tensorrt',
            'cuda' (default: ('cuda',)); the CPU provider is always last.
        threads: intra-op threads (default: onnxruntime's, one per physical core).

    Attributes:
        info: the `ExportInfo` read from the file (card, strides, precision, fixed shape).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        device: str = "auto",
        providers: Sequence[str] = ("cuda",),
        threads: int | None = None,
    ) -> None:
        ort = import_onnxruntime()
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"ONNX model not found: {str(path)!r}")
        self.device = _ort_device(ort, device)
        names = _provider_list(ort, self.device, providers)
        options = ort.SessionOptions()
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=names)
        except ort_errors() as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(f"{path}: not a readable ONNX model (corrupt or truncated?): {first}") from None
        self.info: ExportInfo = parse_metadata(self.session.get_modelmeta().custom_metadata_map, source=str(path))
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"{path}: expected one input (image) and one output (logits), got "
                f"{[i.name for i in inputs]} -> {[o.name for o in outputs]}"
            )
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.input_multiple = self.info.input_multiple
        self.logit_stride = self.info.logit_stride
        self.num_classes = self.info.card.num_classes
        self.providers = self.session.get_providers()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) float32 normalised -> logits (B, K, H/s, W/s) float32 on `device`."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected input (B, 3, H, W), got {tuple(x.shape)}")
        shape = self.info.input_shape
        if shape is None:
            return self._run(x)
        return self._run_fixed(x, shape)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, torch.float32).contiguous()
        if self.device.type == "cpu":
            (logits,) = self.session.run([self.output_name], {self.input_name: x.numpy()})
            return torch.from_numpy(logits).float()
        b, _, h, w = x.shape
        s = self.logit_stride
        out = torch.empty((b, self.num_classes, h // s, w // s), device=self.device, dtype=torch.float32)
        index = self.device.index or 0
        binding = self.session.io_binding()
        binding.bind_input(self.input_name, "cuda", index, np.float32, list(x.shape), x.data_ptr())
        binding.bind_output(self.output_name, "cuda", index, np.float32, list(out.shape), out.data_ptr())
        torch.cuda.current_stream(self.device).synchronize()  # x is written before onnxruntime reads it
        self.session.run_with_iobinding(binding)
        return out

    def _run_fixed(self, x: torch.Tensor, shape: tuple[int, int, int, int]) -> torch.Tensor:
        """A fixed-shape export: pad up to its (H, W), run in chunks of its batch, crop."""
        fb, _, fh, fw = shape
        b, _, h, w = x.shape
        if h > fh or w > fw:
            raise ValueError(
                f"this ONNX model was exported for a fixed input of {fh}x{fw} (H x W), got {h}x{w}; "
                "resize the image or export with dynamic=True"
            )
        x = F.pad(x, (0, fw - w, 0, fh - h))
        chunks = []
        for start in range(0, b, fb):
            part = x[start : start + fb]
            n = part.shape[0]
            if n < fb:  # pad the batch with copies of the last image, dropped below
                part = torch.cat([part, part[-1:].expand(fb - n, -1, -1, -1)])
            chunks.append(self._run(part)[:n])
        s = self.logit_stride
        return torch.cat(chunks)[:, :, : h // s, : w // s].contiguous()


def _ort_device(ort: Any, device: str) -> torch.device:
    available = ort.get_available_providers()
    if device == "auto":
        if torch.cuda.is_available() and "CUDAExecutionProvider" in available:
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")
    dev = resolve_device(device)
    if dev.type == "cuda" and "CUDAExecutionProvider" not in available:
        raise ValueError(
            f"device {device!r}: this onnxruntime has no CUDA provider (available: {available}); "
            'pip install "wsdeploy[gpu]" (onnxruntime-gpu) or use device="cpu"'
        )
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def _provider_list(ort: Any, device: torch.device, providers: Sequence[str]) -> list[Any]:
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    unknown = [p for p in providers if p not in ("cuda", "tensorrt")]
    if unknown:
        raise ValueError(f"providers must be taken from ('tensorrt', 'cuda'), got {list(providers)}")
    available = ort.get_available_providers()
    chosen: list[Any] = []
    for p in providers:
        name = _PROVIDER_NAMES[p]
        if name not in available:
            raise ValueError(f"execution provider {name} is not in this onnxruntime (available: {available})")
        chosen.append((name, {"device_id": device.index or 0}))
    chosen.append("CPUExecutionProvider")
    return chosen
