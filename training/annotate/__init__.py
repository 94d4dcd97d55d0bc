"""Scribbles on one photograph -> a full mask.

    from wsdeploy.training import annotate
    result = annotate("photo.jpg", "photo_scribbles.png")   # or arrays
    result.labels      # (H, W) uint8 class indices at the image's resolution

Rooms: ``config`` (`AnnotateConfig`), ``image`` (`annotate`, `AnnotateResult`, the input
checks, and the network method); the graph cut, the default: ``graphcut`` (the iterated
method and its warm start), ``grid`` (the contrast-sensitive Potts energy, max-flow and
alpha-expansion), ``mixture`` (per-class RGB Gaussian mixtures, refitted each iteration),
``geodesic`` (the location prior); the network method: ``colour`` (its colour model),
``model`` (the small per-image network and its input features).

This package is callable: ``wsdeploy.training.annotate(...)`` is
``wsdeploy.training.annotate.image.annotate(...)``. Python binds a sub-package to its parent's
attribute of the same name as soon as it is imported, so the public name
``from wsdeploy.training import annotate`` (DESIGN.md) can only stay a callable if the package
itself is one. The heavy modules (torch, OpenCV) load on the first call.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from wsdeploy.training.annotate.config import AnnotateConfig

__all__ = ["AnnotateConfig", "AnnotateResult", "annotate"]


def annotate(*args: Any, **kwargs: Any) -> Any:
    """See `wsdeploy.training.annotate.image.annotate`."""
    from wsdeploy.training.annotate.image import annotate as _annotate

    return _annotate(*args, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "AnnotateResult":
        from wsdeploy.training.annotate.image import AnnotateResult

        return AnnotateResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return annotate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
