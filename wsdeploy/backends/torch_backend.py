"""Eager PyTorch backend, with the fast paths as options: autocast precision, channels_last,
`torch.compile` (mode "reduce-overhead" captures CUDA graphs on GPU).

Only `precision="fp32"` without compile is bit-for-bit the plain model; the others trade exactness
for speed and are measured by `wsdeploy bench`.

Thread safety: eager calls run concurrently without a lock (an eval-mode forward under
`inference_mode` mutates no module state; autocast and inference mode are thread-local). A
`torch.compile`d forward is serialised by a lock: compiling on a first shape, guard checks and
CUDA-graph replay ("reduce-overhead") are not safe from several threads at once.
"""
from __future__ import annotations

import contextlib
import threading

import torch
from torch import nn

__all__ = ["COMPILE_MODES", "PRECISIONS", "TorchBackend", "resolve_device"]

PRECISIONS = ("fp32", "fp16", "bf16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


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
    """Runs an eval-mode `nn.Module` under `torch.inference_mode` on one device; safe to call from
    several threads (eager: concurrently; compiled: one call at a time, see the module docstring).

    Args:
        model: a segmentation model with `input_multiple` and `logit_stride` attributes.
        device: 'auto', 'cpu', 'cuda', ...
        precision: 'fp32' (default), or 'fp16' / 'bf16' autocast (weights stay fp32; on CPU
            bf16 is the useful one, fp16 autocast there is slow).
        channels_last: run in the NHWC memory format (faster convolutions on recent GPUs and
            with oneDNN on CPU).
        compile: None (eager), or a `torch.compile` mode: 'default', 'reduce-overhead' (CUDA
            graphs on GPU) or 'max-autotune'. Compiles on first call per input shape (dynamic
            shapes after the second); needs a C++ compiler on CPU.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device = "auto",
        precision: str = "fp32",
        channels_last: bool = False,
        compile: str | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if compile is not None and compile not in COMPILE_MODES:
            raise ValueError(f"compile must be None or one of {COMPILE_MODES}, got {compile!r}")
        self.device = resolve_device(device)
        self.precision = precision
        self.channels_last = bool(channels_last)
        self.input_multiple = int(model.input_multiple)
        self.logit_stride = int(model.logit_stride)
        self.model = model.eval().to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._forward = torch.compile(self.model, mode=compile) if compile else self.model
        self._lock: contextlib.AbstractContextManager = threading.Lock() if compile else contextlib.nullcontext()

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_AUTOCAST_DTYPES[self.precision])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) float32 normalised -> logits (B, K, H/s, W/s) float32."""
        x = x.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._lock, torch.inference_mode(), self._autocast():
            return self._forward(x).float().contiguous()
