"""wsdeploy.training: losses, single-image `annotate`, and the trainer (AMP, DDP via
torchrun, checkpoints, resume).

    from wsdeploy.training import TrainConfig, train
    path = train(TrainConfig(data="data/synthetic", losses="pce,crf", steps=2000))

    from wsdeploy.training import annotate
    mask = annotate("photo.jpg", "photo_scribbles.png").labels   # (H, W) uint8

`import wsdeploy.training` is light: the trainer (and albumentations, tqdm) load on first use
of `train`, the annotator (and torch, OpenCV) on first use of `annotate` / `AnnotateResult`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wsdeploy.training import annotate
from wsdeploy.training.annotate.config import AnnotateConfig
from wsdeploy.training.config import TrainConfig, load_config

__all__ = ["AnnotateConfig", "AnnotateResult", "TrainConfig", "annotate", "load_config", "train"]

if TYPE_CHECKING:  # pragma: no cover
    from wsdeploy.training.annotate.image import AnnotateResult
    from wsdeploy.training.trainer import train


def __getattr__(name: str) -> Any:
    if name == "train":
        from wsdeploy.training.trainer import train

        return train
    if name == "AnnotateResult":
        from wsdeploy.training.annotate.image import AnnotateResult

        return AnnotateResult
    raise AttributeError(f"module 'wsdeploy.training' has no attribute {name!r}")
