"""Shared base for segmentation models: input check and the backbone -> head forward.

Provenance: ``segmentation_models_pytorch/base/model.py`` (MIT): one small base class owns the
shared forward, and ``check_input_shape`` names the padded size in its message. Unlike smp, the
check runs only in eager mode, so ``torch.jit.trace``, ``torch.onnx.export`` (TorchScript and
dynamo exporters), ``torch.export`` and ``torch.compile`` with dynamic H/W see no Python branch
on the input's size.

Contract of every segmentation model::

    x       (B, 3, H, W) float32, normalised; H and W multiples of ``input_multiple``
    logits  (B, K, H / logit_stride, W / logit_stride) float32, unnormalised class scores

Logits stay at ``logit_stride``; the runtime upsamples them to the image size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from wsdeploy.models.resnet import ResNet

__all__ = ["SegmentationModel", "check_input_shape", "check_num_classes", "is_exporting"]


def check_num_classes(num_classes: int) -> None:
    """Raise ``ValueError`` unless ``num_classes`` is an int >= 1 (bools rejected)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")


def is_exporting() -> bool:
    """True while the model is being traced, scripted, exported or compiled (not eager)."""
    return (
        torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.compiler.is_compiling()
        # torch.compiler.is_exporting appeared after torch 2.3 (our floor); in 2.13 non-strict
        # torch.export also sets is_compiling, so this is belt and braces
        or getattr(torch.compiler, "is_exporting", lambda: False)()
        or torch.onnx.is_in_onnx_export()
    )


def check_input_shape(x: Tensor, *, multiple: int) -> None:
    """Raise if ``x`` is not (B, 3, H, W) floating with H, W multiples of ``multiple``.

    A no-op while tracing/exporting/compiling (see ``is_exporting``), so exported graphs keep
    symbolic H and W.

    Args:
        x: (B, 3, H, W) float input.
        multiple: H and W must be multiples of it.

    Raises:
        ValueError: wrong rank, channel count or size; the message names the padded size.
        TypeError: ``x`` is not floating point (e.g. a uint8 image that was not normalised).
    """
    if is_exporting():
        return
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected input (B, 3, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"expected a float input normalised with mean/std, got dtype {x.dtype}")
    h, w = int(x.shape[2]), int(x.shape[3])
    if h % multiple or w % multiple:
        ph, pw = -(-h // multiple) * multiple, -(-w // multiple) * multiple
        raise ValueError(
            f"input H and W must be multiples of {multiple}, got (H, W) = ({h}, {w}); "
            f"pad the image to ({ph}, {pw}) or resize it"
        )


class SegmentationModel(nn.Module):
    """A ``ResNet`` backbone followed by a head that maps its feature dict to logits.

    Args:
        backbone: feature extractor with ``forward_features(x) -> dict[str, Tensor]``.
        head: module called with that dict, returning (B, K, H/logit_stride, W/logit_stride).
        num_classes: K.
        logit_stride: stride of the logits relative to the input.

    Attributes:
        input_multiple: H and W of the input must be multiples of it (the backbone's output
            stride, so every feature map divides exactly and the decoder's upsampling aligns).
        logit_stride: as above.
        num_classes: K.
    """

    def __init__(
        self, *, backbone: ResNet, head: nn.Module, num_classes: int, logit_stride: int
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.num_classes = num_classes
        self.logit_stride = logit_stride
        self.input_multiple = backbone.output_stride

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, 3, H, W) float32 normalised -> logits (B, K, H/logit_stride, W/logit_stride)."""
        check_input_shape(x, multiple=self.input_multiple)
        return self.head(self.backbone.forward_features(x))
