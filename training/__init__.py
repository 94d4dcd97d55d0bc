"""wsdeploy.training: losses, and the trainer (AMP, DDP via torchrun, checkpoints, resume).

    from wsdeploy.training import TrainConfig, train
    path = train(TrainConfig(data="data/shapes", losses="pce,crf", steps=2000))

`import wsdeploy.training` is light: the trainer (and albumentations, tqdm) load on first use
of `train`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wsdeploy.training.config import TrainConfig, load_config

__all__ = ["TrainConfig", "load_config", "train"]

if TYPE_CHECKING:  # pragma: no cover
    from wsdeploy.training.trainer import train


def __getattr__(name: str) -> Any:
    if name == "train":
        from wsdeploy.training.trainer import train

        return train
    raise AttributeError(f"module 'wsdeploy.training' has no attribute {name!r}")
