"""The small network `annotate` fits to one image from random initialisation, and its input.

Input features per pixel (`input_features`): the RGB colour standardised over the image (zero
mean, unit variance per channel), the position (x, y) scaled to [-coord_scale, coord_scale],
and optionally a user's own feature maps (e.g. a trained segmenter's), standardised the same
way. The network (`AnnotateNet`) is a stack of 3x3 convolutions with dilations 1, 2, 4, ...
(a receptive field of about 2^(depth+1) px at the working resolution, so texture and shape
count, not only colour), batch norm and ReLU, then a 1x1 classifier. About 10k parameters at
the default width 16 and depth 5.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["AnnotateNet", "input_features"]


def _standardise(x: torch.Tensor) -> torch.Tensor:
    """(C, H, W) -> zero mean, unit variance per channel (constant channels become 0)."""
    mean = x.mean((1, 2), keepdim=True)
    std = x.std((1, 2), keepdim=True)
    return (x - mean) / std.clamp_min(1e-6)


def input_features(
    image: torch.Tensor, *, coord_scale: float, extra: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-pixel network input.

    Args:
        image: (H, W, 3) uint8 or float RGB, 0-255.
        coord_scale: (x, y) span [-coord_scale, coord_scale]; 0 leaves them out.
        extra: (C, H, W) float feature maps at the same resolution, or None.

    Returns:
        (1, 3 [+ 2] [+ C], H, W) float32 on the image's device.
    """
    h, w, _ = image.shape
    parts = [_standardise(image.permute(2, 0, 1).float())]  # (3, H, W)
    if coord_scale > 0:
        span = coord_scale / max(h, w) * torch.tensor([w, h], dtype=torch.float32)  # aspect kept
        ys = torch.linspace(-1.0, 1.0, h, device=image.device) * float(span[1])
        xs = torch.linspace(-1.0, 1.0, w, device=image.device) * float(span[0])
        parts.append(torch.stack(torch.meshgrid(xs, ys, indexing="xy"), 0))  # (2, H, W)
    if extra is not None:
        parts.append(_standardise(extra.float()))
    return torch.cat(parts, 0)[None]


class AnnotateNet(nn.Module):
    """Dilated convolution stack -> per-pixel class logits at the input's resolution.

    Args:
        in_channels: channels of `input_features`' output.
        num_classes: K >= 2.
        width: hidden channels.
        depth: 3x3 convolutions, dilations 1, 2, 4, ... capped at 16.

    Shape:
        - Input: (B, in_channels, H, W) float32.
        - Output: (B, K, H, W) float32 logits.
    """

    def __init__(self, in_channels: int, num_classes: int, *, width: int, depth: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(depth):
            dilation = min(2**i, 16)
            layers += [
                nn.Conv2d(channels, width, 3, padding=dilation, dilation=dilation, bias=False),
                nn.BatchNorm2d(width, track_running_stats=False),  # one image: batch statistics always
                nn.ReLU(inplace=True),
            ]
            channels = width
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(width + in_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the input skips to the classifier: colour and position stay directly available
        return self.classifier(torch.cat([self.body(x), x], 1))  # (B, K, H, W)
