"""Eager PyTorch backend."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["TorchBackend", "resolve_device"]


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything else is checked and returned."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"invalid device {device!r}; expected 'auto', 'cpu' or 'cuda[:N]'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    return dev


class TorchBackend:
    """Runs an eval-mode `nn.Module` under `torch.inference_mode` on one device.

    Args:
        model: a segmentation model with `input_multiple` and `logit_stride` attributes.
        device: 'auto', 'cpu', 'cuda', ...
    """

    def __init__(self, model: nn.Module, *, device: str | torch.device = "auto") -> None:
        self.device = resolve_device(device)
        self.model = model.eval().to(self.device)
        self.input_multiple = int(model.input_multiple)
        self.logit_stride = int(model.logit_stride)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) float32 normalised -> logits (B, K, H/s, W/s) float32."""
        with torch.inference_mode():
            return self.model(x.to(self.device, non_blocking=True)).float()
