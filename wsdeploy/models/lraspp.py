"""LR-ASPP: a light segmentation head for deployment, on a ResNet backbone.

Provenance: Howard et al., "Searching for MobileNetV3" (ICCV 2019, arXiv:1905.02244), section
6.4 "Lite R-ASPP"; the layer layout follows ``torchvision/models/segmentation/lraspp.py``
(``LRASPPHead``, BSD-3-Clause).

Why this head: it is two 1x1 convs on the final features (one gated by a sigmoid of their global
average, a cheap stand-in for ASPP's image pooling) plus a 1x1 classifier on low-level features,
so its cost is a small fraction of the backbone's, it exports to plain ONNX ops (GlobalAveragePool,
Sigmoid, Mul, Resize) and runs well under TensorRT. Difference from the paper: the low-level
branch reads ``layer1`` (stride 4) rather than stride 8, so logits have the same stride as
DeepLabV3+ and the two models are interchangeable for the runtime and the losses; it costs a
1x1 conv at stride 4.

Shapes (``s`` = output stride, ``w`` = width, ``e`` = block expansion, ``c = 2 * w``)::

    x          (B, 3, H, W) float32 normalised, H and W multiples of s
    layer4     (B, 8we, H/s, W/s) -> relu(bn(1x1)) * sigmoid(1x1(avgpool)) -> (B, c, H/s, W/s)
               -> upsample to H/4 -> 1x1 -> (B, K, H/4, W/4)
    layer1     (B, we, H/4, W/4) -> 1x1 -> (B, K, H/4, W/4)
    logits     sum of the two, (B, K, H/4, W/4)
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from wsdeploy.models.base import SegmentationModel, check_num_classes
from wsdeploy.models.resnet import ResNet, load_torchvision_weights, resnet18, resnet50

__all__ = ["LRASPP", "LRASPPHead", "lraspp_resnet18", "lraspp_resnet50"]


class LRASPPHead(nn.Module):
    """Lite R-ASPP head.

    Args:
        high_ch: channels of ``layer4``.
        low_ch: channels of ``layer1``.
        num_classes: K.
        inter_ch: channels of the gated high-level branch (128 in the paper).

    Shape: {"layer1": (B, low_ch, h1, w1), "layer4": (B, high_ch, h4, w4), ...}
        -> (B, K, h1, w1).
    """

    def __init__(self, *, high_ch: int, low_ch: int, num_classes: int, inter_ch: int) -> None:
        super().__init__()
        self.cbr = nn.Sequential(
            nn.Conv2d(high_ch, inter_ch, 1, bias=False), nn.BatchNorm2d(inter_ch), nn.ReLU(inplace=True)
        )
        self.scale = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(high_ch, inter_ch, 1, bias=False), nn.Sigmoid()
        )
        self.low_classifier = nn.Conv2d(low_ch, num_classes, 1)
        self.high_classifier = nn.Conv2d(inter_ch, num_classes, 1)

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        low, high = features["layer1"], features["layer4"]
        x = self.cbr(high) * self.scale(high)  # (B, c, h4, w4) * (B, c, 1, 1)
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.low_classifier(low) + self.high_classifier(x)  # (B, K, h1, w1)


class LRASPP(SegmentationModel):
    """LR-ASPP segmenter: ``forward(x) -> (B, K, H/4, W/4)`` logits (module docstring).

    Args:
        backbone: a ``ResNet`` at output stride 8, 16 or 32.
        num_classes: K >= 1.
    """

    def __init__(self, backbone: ResNet, *, num_classes: int) -> None:
        check_num_classes(num_classes)
        head = LRASPPHead(
            high_ch=backbone.feature_channels["layer4"],
            low_ch=backbone.feature_channels["layer1"],
            num_classes=num_classes,
            inter_ch=2 * backbone.width,
        )
        super().__init__(backbone=backbone, head=head, num_classes=num_classes, logit_stride=4)


def _build(backbone: ResNet, num_classes: int, backbone_weights: str | None) -> LRASPP:
    if backbone_weights is not None:
        load_torchvision_weights(backbone, backbone_weights)
    return LRASPP(backbone, num_classes=num_classes)


def lraspp_resnet18(
    *, num_classes: int, output_stride: int = 16, width: int = 64, backbone_weights: str | None = None
) -> LRASPP:
    """LR-ASPP on ResNet-18; ``backbone_weights``: path to torchvision ImageNet .pth (width 64)."""
    return _build(resnet18(output_stride=output_stride, width=width), num_classes, backbone_weights)


def lraspp_resnet50(
    *, num_classes: int, output_stride: int = 16, width: int = 64, backbone_weights: str | None = None
) -> LRASPP:
    """LR-ASPP on ResNet-50; ``backbone_weights``: path to torchvision ImageNet .pth (width 64)."""
    return _build(resnet50(output_stride=output_stride, width=width), num_classes, backbone_weights)
