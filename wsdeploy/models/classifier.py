"""Image-level classifier whose weights give class activation maps (CAMs).

Provenance: Zhou et al., "Learning Deep Features for Discriminative Localization" (CVPR 2016,
arXiv:1512.04150): global average pooling then a linear classifier, whose weights applied at
every position give the CAM. As in IRN/PSA (Ahn et al.), the classifier is a 1x1 conv without
bias on a stride-16 ResNet, and the order is swapped: the 1x1 conv runs before the pooling.
Both are linear, so the logits are the same, and ``forward(x) == cam(x).mean((2, 3))`` holds
exactly because ``forward`` is computed that way.

Shapes (``s`` = output stride, default 16)::

    x        (B, 3, H, W) float32 normalised, H and W multiples of s
    cam(x)   (B, K, H/s, W/s) float32, class scores per position (unnormalised, may be < 0)
    forward  (B, K) float32 class logits (for multi-label BCE over image-level tags)
"""

from __future__ import annotations

from torch import Tensor, nn

from wsdeploy.models.base import check_input_shape, check_num_classes
from wsdeploy.models.resnet import ResNet, load_torchvision_weights, resnet18, resnet50, resnet101

__all__ = [
    "CAMClassifier",
    "classifier_resnet18",
    "classifier_resnet50",
    "classifier_resnet101",
]


class CAMClassifier(nn.Module):
    """Backbone + 1x1 conv classifier (no bias) + global average pooling.

    Args:
        backbone: a ``ResNet`` at output stride 8, 16 or 32.
        num_classes: K >= 1 (foreground classes, usually without background).

    Attributes:
        input_multiple: H and W of the input must be multiples of it (the output stride).
        cam_stride: stride of ``cam(x)`` relative to the input (the output stride).
        num_classes: K.
    """

    def __init__(self, backbone: ResNet, *, num_classes: int) -> None:
        super().__init__()
        check_num_classes(num_classes)
        self.backbone = backbone
        self.classifier = nn.Conv2d(backbone.feature_channels["layer4"], num_classes, 1, bias=False)
        nn.init.xavier_uniform_(self.classifier.weight)
        self.num_classes = num_classes
        self.input_multiple = backbone.output_stride
        self.cam_stride = backbone.output_stride

    def cam(self, x: Tensor) -> Tensor:
        """x: (B, 3, H, W) float32 normalised -> CAMs (B, K, H/s, W/s), before pooling."""
        check_input_shape(x, multiple=self.input_multiple)
        return self.classifier(self.backbone.forward_features(x)["layer4"])

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, 3, H, W) float32 normalised -> class logits (B, K) = cam(x).mean((2, 3))."""
        return self.cam(x).mean(dim=(2, 3))


def _build(backbone: ResNet, num_classes: int, backbone_weights: str | None) -> CAMClassifier:
    if backbone_weights is not None:
        load_torchvision_weights(backbone, backbone_weights)
    return CAMClassifier(backbone, num_classes=num_classes)


def classifier_resnet18(
    *, num_classes: int, output_stride: int = 16, width: int = 64, backbone_weights: str | None = None
) -> CAMClassifier:
    """CAM classifier on ResNet-18; ``backbone_weights``: torchvision ImageNet .pth (width 64)."""
    return _build(resnet18(output_stride=output_stride, width=width), num_classes, backbone_weights)


def classifier_resnet50(
    *, num_classes: int, output_stride: int = 16, width: int = 64, backbone_weights: str | None = None
) -> CAMClassifier:
    """CAM classifier on ResNet-50; ``backbone_weights``: torchvision ImageNet .pth (width 64)."""
    return _build(resnet50(output_stride=output_stride, width=width), num_classes, backbone_weights)


def classifier_resnet101(
    *, num_classes: int, output_stride: int = 16, width: int = 64, backbone_weights: str | None = None
) -> CAMClassifier:
    """CAM classifier on ResNet-101; ``backbone_weights``: torchvision ImageNet .pth (width 64)."""
    return _build(resnet101(output_stride=output_stride, width=width), num_classes, backbone_weights)
