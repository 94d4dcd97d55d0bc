"""Inference backends: each maps a normalised batch to logits at 1/logit_stride resolution.

The interface every backend implements::

    backend.input_multiple: int   # H and W of the input must be multiples of this
    backend.logit_stride: int     # logits are (B, K, H / logit_stride, W / logit_stride)
    backend.device: torch.device  # where inputs should live and logits come back
    backend(x: (B, 3, H, W) float32) -> (B, K, H / logit_stride, W / logit_stride) float32

Backends: `TorchBackend` (eager, with fast-path options), `OnnxRuntimeBackend` (`.onnx`),
`Pt2Backend` (`.pt2`: torch.export / AOTInductor), `TensorRTBackend` (`.engine`). The optional
ones import their dependency (onnxruntime, tensorrt) only when built. `open_backend` picks one
for a file.

Every backend may be called from several threads at once: torch eager and onnxruntime run
concurrently (no shared mutable state), torch.compile'd and `.pt2` calls take a lock, TensorRT
keeps one execution context per thread. Each module's docstring says why.
"""
from wsdeploy.backends.dispatch import BACKEND_NAMES, SUFFIX_BACKENDS, open_backend
from wsdeploy.backends.onnxruntime_backend import OnnxRuntimeBackend
from wsdeploy.backends.pt2_backend import Pt2Backend
from wsdeploy.backends.tensorrt_backend import TensorRTBackend
from wsdeploy.backends.torch_backend import TorchBackend

__all__ = [
    "BACKEND_NAMES", "OnnxRuntimeBackend", "Pt2Backend", "SUFFIX_BACKENDS", "TensorRTBackend", "TorchBackend",
    "open_backend",
]
