"""Inference backends: each maps a normalised batch to logits at 1/logit_stride resolution.

The interface every backend implements (the export issue adds onnxruntime, TensorRT and .pt2)::

    backend.input_multiple: int   # H and W of the input must be multiples of this
    backend.logit_stride: int     # logits are (B, K, H / logit_stride, W / logit_stride)
    backend.device: torch.device  # where inputs should live and logits come back
    backend(x: (B, 3, H, W) float32) -> (B, K, H / logit_stride, W / logit_stride) float32
"""
from wsdeploy.backends.torch_backend import TorchBackend

__all__ = ["TorchBackend"]
