"""Model architectures and their registry: ``build_model(name, num_classes, **kwargs)``.

Provenance: ``create_model`` in ``segmentation_models_pytorch/__init__.py`` (MIT): a plain dict
built from an explicit list, unknown names listing the valid ones; no decorators, nothing
registered at import time elsewhere.

Every builder takes keyword-only ``num_classes``, ``output_stride: int = 16`` (8, 16 or 32),
``width: int = 64`` (base channel width; 64 = torchvision, 16/32 = slim CPU models) and
``backbone_weights: str | None = None`` (path to a torchvision ImageNet ``.pth``, width 64 only,
never downloaded). All arguments are JSON-plain values, so a checkpoint can store
``{"name": ..., "kwargs": {...}}`` and rebuild with ``build_model(name, num_classes, **kwargs)``.

Segmentation models (``deeplabv3plus_*``, ``lraspp_*``): ``forward(x: (B, 3, H, W)) -> (B, K,
H/logit_stride, W/logit_stride)``, attributes ``input_multiple`` and ``logit_stride``.
Classifiers (``classifier_*``): ``forward(x) -> (B, K)``, ``cam(x) -> (B, K, H/s, W/s)``,
attributes ``input_multiple`` and ``cam_stride``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from wsdeploy.models.base import SegmentationModel
from wsdeploy.models.classifier import (
    CAMClassifier,
    classifier_resnet18,
    classifier_resnet50,
    classifier_resnet101,
)
from wsdeploy.models.deeplabv3plus import (
    DeepLabV3Plus,
    deeplabv3plus_resnet18,
    deeplabv3plus_resnet50,
    deeplabv3plus_resnet101,
)
from wsdeploy.models.lraspp import LRASPP, lraspp_resnet18, lraspp_resnet50
from wsdeploy.models.resnet import ResNet, load_torchvision_weights

__all__ = [
    "CAMClassifier",
    "DeepLabV3Plus",
    "LRASPP",
    "ResNet",
    "SegmentationModel",
    "build_model",
    "list_models",
    "load_torchvision_weights",
]

_BUILDERS: list[Callable[..., nn.Module]] = [
    deeplabv3plus_resnet18,
    deeplabv3plus_resnet50,
    deeplabv3plus_resnet101,
    lraspp_resnet18,
    lraspp_resnet50,
    classifier_resnet18,
    classifier_resnet50,
    classifier_resnet101,
]
_MODELS: dict[str, Callable[..., nn.Module]] = {fn.__name__: fn for fn in _BUILDERS}


def list_models() -> list[str]:
    """Names accepted by ``build_model``, sorted."""
    return sorted(_MODELS)


def build_model(name: str, num_classes: int, **kwargs: object) -> nn.Module:
    """Build a registered model by name.

    Args:
        name: one of ``list_models()``, e.g. ``"deeplabv3plus_resnet50"``.
        num_classes: K, the number of output classes.
        **kwargs: the builder's options (``output_stride``, ``width``, ``backbone_weights``);
            each must be a JSON-plain value (None, bool, int, float, str).

    Returns:
        The model, in training mode, on CPU.

    Raises:
        ValueError: unknown ``name`` (the message lists the valid ones) or a bad option value.
        TypeError: unknown option name, or an option value that is not JSON-plain.
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")
    builder = _MODELS[name]
    valid = [p for p in inspect.signature(builder).parameters if p != "num_classes"]
    unknown = sorted(k for k in kwargs if k not in valid)
    if unknown:
        raise TypeError(f"unknown argument(s) {unknown} for {name!r}; valid: {valid}")
    for key, value in kwargs.items():
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise TypeError(
                f"argument {key!r} must be a JSON-plain value (None, bool, int, float, str) so "
                f"checkpoints can store it, got {type(value).__name__}: {value!r}"
            )
    return builder(num_classes=num_classes, **kwargs)
