"""Pick and build the backend for a model file: by suffix, or by name with `backend=`.

    .pt / .pth      torch        (a wsdeploy checkpoint; builds the model from the card)
    .onnx           onnxruntime  (card in the ONNX metadata)
    .pt2            pt2          (torch.export program or AOTInductor package; card inside)
    .engine / .plan tensorrt     (card in the NAME.engine.json side file)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from wsdeploy.checkpoint import ModelCard

__all__ = ["BACKEND_NAMES", "SUFFIX_BACKENDS", "open_backend"]

SUFFIX_BACKENDS = {
    ".pt": "torch", ".pth": "torch", ".onnx": "onnxruntime", ".pt2": "pt2", ".engine": "tensorrt", ".plan": "tensorrt",
}
# backend name -> file suffixes it reads; "onnxruntime-trt" is onnxruntime with TensorRT's provider
BACKEND_NAMES = {
    "torch": (".pt", ".pth"), "onnxruntime": (".onnx",), "onnxruntime-trt": (".onnx",), "pt2": (".pt2",),
    "tensorrt": (".engine", ".plan"),
}


def open_backend(
    path: str | os.PathLike,
    *,
    backend: str = "auto",
    device: str = "auto",
    precision: str = "fp32",
    channels_last: bool = False,
    compile: str | None = None,
) -> tuple[Any, ModelCard]:
    """Build the backend for `path` and return it with the model card.

    Args:
        path: a model file (see the module docstring for suffixes).
        backend: 'auto' (by suffix) or one of `BACKEND_NAMES`; must fit the suffix.
        device: 'auto', 'cpu', 'cuda[:N]'.
        precision, channels_last, compile: torch backend options (see `TorchBackend`); other
            backends take their precision from the file and refuse these.

    Raises:
        ValueError: unknown suffix or backend, a backend that cannot read the suffix, torch-only
            options for another backend, or any problem with the file.
        ImportError: the backend's optional dependency is missing (names the extra).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if backend == "auto":
        if suffix not in SUFFIX_BACKENDS:
            raise ValueError(
                f"unsupported model file {str(path)!r}: expected one of {sorted(SUFFIX_BACKENDS)}"
            )
        backend = SUFFIX_BACKENDS[suffix]
    if backend not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {backend!r}; expected 'auto' or one of {sorted(BACKEND_NAMES)}")
    if suffix not in BACKEND_NAMES[backend]:
        raise ValueError(
            f"backend {backend!r} reads {', '.join(BACKEND_NAMES[backend])} files, got {str(path)!r}"
        )
    if backend != "torch" and (precision != "fp32" or channels_last or compile is not None):
        raise ValueError(
            f"precision/channels_last/compile are torch backend options; the {backend} backend takes "
            f"its precision from the exported file (got precision={precision!r}, "
            f"channels_last={channels_last}, compile={compile!r})"
        )
    if backend == "torch":
        from wsdeploy.backends.torch_backend import TorchBackend
        from wsdeploy.checkpoint import load_checkpoint

        model, card = load_checkpoint(path)
        if not hasattr(model, "logit_stride"):  # a CAM classifier (--supervision tags)
            raise ValueError(
                f"{str(path)!r} is a {card.arch} image classifier, not a segmenter: use it with "
                "`wsdeploy cam --model` for CAMs and seeds, then train a segmenter on the seeds "
                "(`wsdeploy train --supervision tags --method seeds-rloss|sec --seeds DIR`)"
            )
        runner: Any = TorchBackend(
            model, device=device, precision=precision, channels_last=channels_last, compile=compile
        )
        return runner, card
    if backend in ("onnxruntime", "onnxruntime-trt"):
        from wsdeploy.backends.onnxruntime_backend import OnnxRuntimeBackend

        providers = ("tensorrt", "cuda") if backend == "onnxruntime-trt" else ("cuda",)
        runner = OnnxRuntimeBackend(path, device=device, providers=providers)
    elif backend == "pt2":
        from wsdeploy.backends.pt2_backend import Pt2Backend

        runner = Pt2Backend(path, device=device)
    else:
        from wsdeploy.backends.tensorrt_backend import TensorRTBackend

        runner = TensorRTBackend(path, device=device)
    return runner, runner.info.card
