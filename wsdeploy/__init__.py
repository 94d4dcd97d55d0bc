"""wsdeploy: weakly-supervised semantic segmentation, from scribbles or tags to deployment.

    import wsdeploy
    seg = wsdeploy.segment("photo.jpg")          # bundled default model
    model = wsdeploy.load("model.pt", crf=True)  # your own checkpoint
    segs = model.segment([img1, img2])

`import wsdeploy` is light: torch and the runtime load on first use of these names.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wsdeploy.version import __version__

__all__ = ["Segmentation", "Segmenter", "__version__", "load", "segment"]

if TYPE_CHECKING:  # pragma: no cover
    from wsdeploy.runtime import Segmentation, Segmenter, load, segment


def __getattr__(name: str) -> Any:
    if name in ("Segmentation", "Segmenter", "load", "segment"):
        from wsdeploy import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'wsdeploy' has no attribute {name!r}")
