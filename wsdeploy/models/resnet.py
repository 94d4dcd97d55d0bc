"""ResNet-18/50/101 backbones with torchvision-compatible state-dict keys.

Provenance: the blocks and the layer builder follow ``torchvision/models/resnet.py``
(pytorch/vision, BSD-3-Clause; ResNet V1.5, stride on the 3x3 conv of the bottleneck) so that
attribute names and shapes match and torchvision ImageNet weights load ``strict=True``; the
backbone without ``fc``/``avgpool`` returning named multi-stride features follows
``segmentation_models_pytorch/encoders/resnet.py`` and timm's ``forward_features``; the
key-by-key weight check follows nanoGPT's ``GPT.from_pretrained``. Unlike torchvision, the
``BasicBlock`` accepts dilation (needed for ResNet-18 at output stride 8 or 16; the keys are
unchanged) and a ``width`` argument scales every channel count for slim CPU models.

Shapes contract (``s`` = ``output_stride`` in {8, 16, 32}, ``w`` = ``width``, ``e`` = block
expansion: 1 for ResNet-18, 4 for ResNet-50/101)::

    x                          (B, 3, H, W) float32, normalised with ImageNet mean/std
    forward_features(x) -> dict[str, Tensor], every entry (B, C, ceil(H/stride), ceil(W/stride)):
        "layer1"  C = w * e       stride 4            (low-level features)
        "layer2"  C = 2 * w * e   stride min(8, s)
        "layer3"  C = 4 * w * e   stride min(16, s)
        "layer4"  C = 8 * w * e   stride s            (final features)

With H and W multiples of ``s`` every stride divides exactly. ``feature_channels`` and
``feature_strides`` hold these numbers per instance.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "dilation_for_output_stride",
    "load_torchvision_weights",
    "resnet18",
    "resnet50",
    "resnet101",
]

logger = logging.getLogger(__name__)

_OUTPUT_STRIDES = {
    8: (False, True, True),
    16: (False, False, True),
    32: (False, False, False),
}


def _conv3x3(in_ch: int, out_ch: int, *, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(
        in_ch, out_ch, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
    )


def _conv1x1(in_ch: int, out_ch: int, *, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (ResNet-18/34).

    Args:
        in_ch: input channels.
        planes: output channels (``expansion`` = 1).
        stride: stride of the first conv and of ``downsample``.
        downsample: projection of the identity when shape changes, else None.
        dilation: dilation of both convs (torchvision allows only 1 here).
        norm_layer: normalisation class, called with the channel count.

    Shape: (B, in_ch, H, W) -> (B, planes, ceil(H/stride), ceil(W/stride)).
    """

    expansion: int = 1

    def __init__(
        self,
        in_ch: int,
        planes: int,
        *,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_ch, planes, stride=stride, dilation=dilation)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, dilation=dilation)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, dilated), 1x1 expand, residual (ResNet-50/101, V1.5).

    Args:
        in_ch: input channels.
        planes: inner channels; the output has ``planes * expansion`` (= 4 * planes).
        stride: stride of the 3x3 conv and of ``downsample``.
        downsample: projection of the identity when shape changes, else None.
        dilation: dilation of the 3x3 conv.
        norm_layer: normalisation class, called with the channel count.

    Shape: (B, in_ch, H, W) -> (B, 4 * planes, ceil(H/stride), ceil(W/stride)).
    """

    expansion: int = 4

    def __init__(
        self,
        in_ch: int,
        planes: int,
        *,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(in_ch, planes)
        self.bn1 = norm_layer(planes)
        self.conv2 = _conv3x3(planes, planes, stride=stride, dilation=dilation)
        self.bn2 = norm_layer(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet backbone without ``avgpool``/``fc``, returning named multi-stride features.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: number of blocks in layer1..layer4, e.g. (2, 2, 2, 2) for ResNet-18.
        width: base channel width; 64 is torchvision's ResNet (and the only width its ImageNet
            weights fit); 16 or 32 give slim backbones for CPU training and small bundles.
        replace_stride_with_dilation: three bools for layer2..layer4, as in torchvision: True
            replaces that layer's stride 2 by dilation, keeping resolution.
        norm_layer: normalisation class, called with the channel count.

    Shapes: see the module docstring.
    """

    def __init__(
        self,
        *,
        block: type[BasicBlock | Bottleneck],
        layers: Sequence[int],
        width: int = 64,
        replace_stride_with_dilation: Sequence[bool] = (False, False, False),
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if block not in (BasicBlock, Bottleneck):
            raise TypeError(f"block must be BasicBlock or Bottleneck, got {block!r}")
        if len(layers) != 4 or not all(isinstance(n, int) and n >= 1 for n in layers):
            raise ValueError(f"layers must be 4 positive ints, got {layers!r}")
        if isinstance(width, bool) or not isinstance(width, int) or width < 8 or width % 8:
            raise ValueError(
                f"width must be a positive multiple of 8 (64 = torchvision), got {width!r}"
            )
        rswd = replace_stride_with_dilation
        rswd = tuple(rswd) if isinstance(rswd, (list, tuple)) else ()
        if len(rswd) != 3 or not all(isinstance(flag, bool) for flag in rswd):
            raise ValueError(
                "replace_stride_with_dilation should be a 3-element tuple of bools, "
                f"got {replace_stride_with_dilation!r}"
            )
        self.width = width
        self.replace_stride_with_dilation = rswd
        self._norm_layer = norm_layer
        self._in_ch = width
        self._dilation = 1

        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, 2 * width, layers[1], stride=2, dilate=rswd[0])
        self.layer3 = self._make_layer(block, 4 * width, layers[2], stride=2, dilate=rswd[1])
        self.layer4 = self._make_layer(block, 8 * width, layers[3], stride=2, dilate=rswd[2])

        e = block.expansion
        self.feature_channels = {"layer1": width * e, "layer2": 2 * width * e,
                                 "layer3": 4 * width * e, "layer4": 8 * width * e}
        strides, stride = {"layer1": 4}, 4
        for name, dilate in zip(("layer2", "layer3", "layer4"), rswd):
            stride = stride if dilate else stride * 2
            strides[name] = stride
        self.feature_strides = strides
        self.output_stride = stride

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(
        self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int, *,
        stride: int = 1, dilate: bool = False,
    ) -> nn.Sequential:
        # Same bookkeeping as torchvision: the first block keeps the previous dilation.
        previous_dilation = self._dilation
        if dilate:
            self._dilation *= stride
            stride = 1
        out_ch = planes * block.expansion
        downsample = None
        if stride != 1 or self._in_ch != out_ch:
            downsample = nn.Sequential(
                _conv1x1(self._in_ch, out_ch, stride=stride), self._norm_layer(out_ch)
            )
        layers = [block(self._in_ch, planes, stride=stride, downsample=downsample,
                        dilation=previous_dilation, norm_layer=self._norm_layer)]
        self._in_ch = out_ch
        layers += [block(out_ch, planes, dilation=self._dilation, norm_layer=self._norm_layer)
                   for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        """x: (B, 3, H, W) float32 normalised -> {"layer1": ..., "layer4": ...} (module docstring)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, w, H/4, W/4)
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return {"layer1": f1, "layer2": f2, "layer3": f3, "layer4": f4}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Same as ``forward_features``."""
        return self.forward_features(x)


def dilation_for_output_stride(output_stride: int) -> tuple[bool, bool, bool]:
    """Map an output stride (8, 16 or 32) to torchvision's ``replace_stride_with_dilation``."""
    if isinstance(output_stride, bool) or output_stride not in _OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {sorted(_OUTPUT_STRIDES)}, got {output_stride!r}")
    return _OUTPUT_STRIDES[output_stride]


def _resnet(block: type[BasicBlock | Bottleneck], layers: Sequence[int], *,
            output_stride: int, width: int) -> ResNet:
    return ResNet(block=block, layers=layers, width=width,
                  replace_stride_with_dilation=dilation_for_output_stride(output_stride))


def resnet18(*, output_stride: int = 32, width: int = 64) -> ResNet:
    """ResNet-18 backbone (BasicBlock, 2-2-2-2); output_stride in {8, 16, 32}."""
    return _resnet(BasicBlock, (2, 2, 2, 2), output_stride=output_stride, width=width)


def resnet50(*, output_stride: int = 32, width: int = 64) -> ResNet:
    """ResNet-50 backbone (Bottleneck, 3-4-6-3); output_stride in {8, 16, 32}."""
    return _resnet(Bottleneck, (3, 4, 6, 3), output_stride=output_stride, width=width)


def resnet101(*, output_stride: int = 32, width: int = 64) -> ResNet:
    """ResNet-101 backbone (Bottleneck, 3-4-23-3); output_stride in {8, 16, 32}."""
    return _resnet(Bottleneck, (3, 4, 23, 3), output_stride=output_stride, width=width)


def _fmt(items: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def load_torchvision_weights(backbone: ResNet, path: str | os.PathLike[str]) -> None:
    """Load a torchvision ImageNet ResNet state dict (e.g. ``resnet50-11ad3fa6.pth``) in place.

    Never downloads: ``path`` is a file the user fetched from torchvision. The file is read with
    ``torch.load(weights_only=True)``; ``fc.*`` is dropped; every other key is checked against
    the backbone (presence and shape, with counts) before ``load_state_dict(strict=True)``.
    Missing ``*.num_batches_tracked`` counters (absent from the 2017 torchvision files) keep
    the backbone's value. Dilation does not change shapes, so any output stride works.

    Args:
        backbone: a ``ResNet`` with ``width == 64`` of the same depth as the file.
        path: the ``.pth`` file.

    Raises:
        ValueError: width is not 64, the file is not a state dict, or keys/shapes differ
            (the message lists the missing, unexpected and mis-shaped keys).
    """
    if backbone.width != 64:
        raise ValueError(
            f"torchvision ImageNet weights need width=64, got width={backbone.width}; "
            "slim backbones train from scratch"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, UnicodeDecodeError) as err:
        # the chained error has torch's details; its advice to pass weights_only=False is not ours
        raise ValueError(
            f"cannot read {os.fspath(path)!r} as a torch state dict ({type(err).__name__}); "
            "expected a torchvision ResNet .pth such as resnet50-11ad3fa6.pth"
        ) from err
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(
            f"{os.fspath(path)!r} is not a flat state dict of tensors (got {type(state).__name__}); "
            "expected a torchvision ResNet .pth such as resnet50-11ad3fa6.pth"
        )
    own = backbone.state_dict()
    dropped = [k for k in state if k.startswith("fc.")]
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    filled = [k for k in own if k not in state and k.endswith(".num_batches_tracked")]
    for k in filled:
        state[k] = own[k]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mis_shaped = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or mis_shaped:
        raise ValueError(
            f"{os.fspath(path)!r} does not match this ResNet ({len(own)} keys): "
            f"{len(missing)} missing [{_fmt(missing)}]; {len(unexpected)} unexpected "
            f"[{_fmt(unexpected)}]; {len(mis_shaped)} with wrong shape [{_fmt(mis_shaped)}]. "
            "Is it a torchvision ResNet of the same depth?"
        )
    backbone.load_state_dict(state, strict=True)
    logger.info(
        "loaded %d tensors from %s (dropped %d fc.* keys, kept %d num_batches_tracked counters)",
        len(own) - len(filled), os.fspath(path), len(dropped), len(filled),
    )
