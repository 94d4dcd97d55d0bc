"""DeepLabV3+ on a ResNet backbone: ASPP on the final features, decoder fusing stride-4 features.

Provenance: Chen et al., "Encoder-Decoder with Atrous Separable Convolution for Semantic Image
Segmentation" (ECCV 2018, arXiv:1802.02611); the layer layout follows
``torchvision/models/segmentation/deeplabv3.py`` (ASPP, BSD-3-Clause) and
``segmentation_models_pytorch/decoders/deeplabv3/decoder.py`` (DeepLabV3+ decoder, MIT), with
plain (not separable) 3x3 convs. Differences, on purpose:

- ASPP rates scale with the output stride: (6, 12, 18) at OS16, (12, 24, 36) at OS8 (the
  paper's pair), (3, 6, 9) at OS32.
- The image-pooling branch is conv(bias) + ReLU without BatchNorm: BatchNorm on a 1x1 map fails
  in training with batch size 1 (single-image ``annotate``), and is not needed there.
- Channel counts scale with the backbone width: 256 ASPP/decoder channels and the 48-channel
  low-level projection at width 64; 64 and 12 at width 16.

Shapes (``s`` = output stride, ``w`` = width, ``e`` = block expansion, ``c = 4 * w``)::

    x              (B, 3, H, W) float32 normalised, H and W multiples of s
    layer4         (B, 8we, H/s, W/s)  -> ASPP -> (B, c, H/s, W/s)
    layer1         (B, we, H/4, W/4)   -> 1x1  -> (B, 3w/4, H/4, W/4)
    upsample ASPP to H/4, concat, two 3x3 convs -> (B, c, H/4, W/4)
    logits         (B, K, H/4, W/4)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsdeploy.models.base import SegmentationModel, check_num_classes
from wsdeploy.models.resnet import ResNet, load_torchvision_weights, resnet18, resnet50, resnet101

__all__ = [
    "ASPP",
    "DeepLabV3Plus",
    "DeepLabV3PlusHead",
    "deeplabv3plus_resnet18",
    "deeplabv3plus_resnet50",
    "deeplabv3plus_resnet101",
]


def conv_bn_relu(in_ch: int, out_ch: int, *, kernel_size: int = 1, dilation: int = 1) -> nn.Sequential:
    """Conv (no bias, 'same' padding) + BatchNorm + ReLU: (B, in_ch, h, w) -> (B, out_ch, h, w)."""
    padding = dilation * (kernel_size - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, three dilated 3x3 and an image-pooling branch.

    Args:
        in_ch: channels of the input features.
        out_ch: channels of every branch and of the output.
        rates: dilation rates of the three 3x3 branches.
        dropout: dropout after the projection (training only).

    Shape: (B, in_ch, h, w) -> (B, out_ch, h, w).
    """

    def __init__(self, in_ch: int, out_ch: int, *, rates: Sequence[int], dropout: float) -> None:
        super().__init__()
        branches = [conv_bn_relu(in_ch, out_ch)]
        branches += [conv_bn_relu(in_ch, out_ch, kernel_size=3, dilation=r) for r in rates]
        self.branches = nn.ModuleList(branches)
        self.pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_ch, out_ch, 1), nn.ReLU(inplace=True)
        )
        self.project = nn.Sequential(
            conv_bn_relu(out_ch * (len(branches) + 1), out_ch), nn.Dropout(dropout)
        )

    def forward(self, x: Tensor) -> Tensor:
        outs = [branch(x) for branch in self.branches]
        pooled = self.pool(x)  # (B, out_ch, 1, 1)
        outs.append(pooled.expand(-1, -1, x.shape[2], x.shape[3]))  # sizes from the tensor
        return self.project(torch.cat(outs, dim=1))  # (B, 5 * out_ch, h, w) -> (B, out_ch, h, w)


class DeepLabV3PlusHead(nn.Module):
    """ASPP on ``layer4`` + decoder fusing ``layer1``; returns stride-4 logits.

    Args:
        high_ch: channels of ``layer4``.
        low_ch: channels of ``layer1``.
        num_classes: K.
        channels: ASPP and decoder channels (256 in the paper).
        low_proj_ch: channels of the low-level projection (48 in the paper).
        rates: ASPP dilation rates.
        dropout: ASPP dropout.

    Shape: {"layer1": (B, low_ch, h1, w1), "layer4": (B, high_ch, h4, w4), ...}
        -> (B, K, h1, w1).
    """

    def __init__(
        self, *, high_ch: int, low_ch: int, num_classes: int, channels: int, low_proj_ch: int,
        rates: Sequence[int], dropout: float,
    ) -> None:
        super().__init__()
        self.aspp = ASPP(high_ch, channels, rates=rates, dropout=dropout)
        self.low_proj = conv_bn_relu(low_ch, low_proj_ch)
        self.fuse = nn.Sequential(
            conv_bn_relu(channels + low_proj_ch, channels, kernel_size=3),
            conv_bn_relu(channels, channels, kernel_size=3),
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        low = self.low_proj(features["layer1"])  # (B, low_proj_ch, H/4, W/4)
        high = self.aspp(features["layer4"])  # (B, channels, H/s, W/s)
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
        x = self.fuse(torch.cat([high, low], dim=1))  # (B, channels, H/4, W/4)
        return self.classifier(x)  # (B, K, H/4, W/4)


class DeepLabV3Plus(SegmentationModel):
    """DeepLabV3+ segmenter: ``forward(x) -> (B, K, H/4, W/4)`` logits (module docstring).

    Args:
        backbone: a ``ResNet`` at output stride 8, 16 or 32.
        num_classes: K >= 1.
        dropout: ASPP dropout in training.
    """

    def __init__(self, backbone: ResNet, *, num_classes: int, dropout: float = 0.1) -> None:
        check_num_classes(num_classes)
        rates = tuple(r * 16 // backbone.output_stride for r in (6, 12, 18))
        head = DeepLabV3PlusHead(
            high_ch=backbone.feature_channels["layer4"],
            low_ch=backbone.feature_channels["layer1"],
            num_classes=num_classes,
            channels=4 * backbone.width,
            low_proj_ch=3 * backbone.width // 4,
            rates=rates,
            dropout=dropout,
        )
        super().__init__(backbone=backbone, head=head, num_classes=num_classes, logit_stride=4)
        self.rates = rates


def _build(backbone: ResNet, num_classes: int, backbone_weights: str | None) -> DeepLabV3Plus:
    if backbone_weights is not None:
        load_torchvision_weights(backbone, backbone_weights)
    return DeepLabV3Plus(backbone, num_classes=num_classes)


def deeplabv3plus_resnet18(
    *, num_classes: int, output_stride: int = 16, width: int = 64, backbone_weights: str | None = None
) -> DeepLabV3Plus:
    """DeepLabV3+ on ResNet-18; ``backbone_weights``: path to torchvision ImageNet .pth (width 64)."""
    return _build(resnet18(output_stride=output_stride, width=width), num_classes, backbone_weights)


def deeplabv3plus_resnet50(
    *, num_classes: int, output_stride: int = 16, width: int = 64, backbone_weights: str | None = None
) -> DeepLabV3Plus:
    """DeepLabV3+ on ResNet-50; ``backbone_weights``: path to torchvision ImageNet .pth (width 64)."""
    return _build(resnet50(output_stride=output_stride, width=width), num_classes, backbone_weights)


def deeplabv3plus_resnet101(
    *, num_classes: int, output_stride: int = 16, width: int = 64, backbone_weights: str | None = None
) -> DeepLabV3Plus:
    """DeepLabV3+ on ResNet-101; ``backbone_weights``: path to torchvision ImageNet .pth (width 64)."""
    return _build(resnet101(output_stride=output_stride, width=width), num_classes, backbone_weights)
