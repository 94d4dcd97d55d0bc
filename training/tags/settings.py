"""Settings of the tags pipeline's training options, one small dataclass each (like the losses').

`TrainConfig` holds one of each: `config.affinity` (method "affinity": the affinity net on a
frozen classifier), `config.contrast` (regional contrast added to classifier training) and
`config.relabel` (how `--rounds N` self-training re-labels the train split between rounds).
The CLI's flags are the flat names (`--affinity-radius 5`, `--contrast-weight 0.1`,
`--relabel-crf`). Each field's `metadata["help"]` is its documentation.
"""
from __future__ import annotations

import dataclasses
import math

from wsdeploy.settings import setting
__all__ = ["MAX_MOSAIC", "TAGS_SETTINGS_GROUPS", "AffinitySettings", "ContrastSettings", "RelabelSettings"]

MAX_MOSAIC = 4  # `TrainConfig.mosaic`: k x k tiles at most (`wsdeploy.training.tags.mosaic`)


@dataclasses.dataclass(frozen=True)
class AffinitySettings:
    """The affinity net of method 'affinity' (`wsdeploy.training.tags.affinity`)."""

    classifier: str | None = setting(None, "method affinity: the CAM classifier's model.pt (frozen; its features feed the head)")
    radius: int = setting(5, "affinity pairs within this radius on the grid (dy^2 + dx^2 < r^2; 5 = PSA's 34 pairs)")
    stride: int = setting(4, "affinity grid stride: 4 (layer1 resolution) or 8")
    dim: int = setting(32, "channels of each feature level's projection in the head")
    background: str = setting("", "comma list of class names whose same-class pairs are background pairs "
                         "(default: the dataset's background class; stuff classes without one)")

    def check(self) -> None:
        if not self.classifier:
            raise ValueError("method 'affinity' needs affinity_classifier=PATH (the CAM classifier's model.pt)")
        if self.radius < 2 or self.stride not in (4, 8) or self.dim < 1:
            raise ValueError(f"need affinity_radius >= 2, affinity_stride 4 or 8, affinity_dim >= 1; got "
                             f"{self.radius}, {self.stride}, {self.dim}")

    @property
    def background_names(self) -> list[str]:
        return [n.strip() for n in self.background.split(",") if n.strip()]


@dataclasses.dataclass(frozen=True)
class ContrastSettings:
    """Regional semantic contrast for classifier training (`wsdeploy.training.tags.contrast`)."""

    weight: float = setting(0.0, "weight of the regional contrast loss in classifier training (0 = off)")
    temperature: float = setting(0.1, "temperature of the contrast loss")
    dim: int = setting(64, "width of the region embeddings' projection")
    bank_size: int = setting(64, "region embeddings kept per class in the memory bank")

    def check(self) -> None:
        if not (math.isfinite(self.weight) and self.weight >= 0) or not self.temperature > 0:
            raise ValueError(f"need contrast_weight >= 0 and contrast_temperature > 0, got {self.weight}, {self.temperature}")
        if self.dim < 1 or self.bank_size < 1:
            raise ValueError(f"need contrast_dim and contrast_bank_size >= 1, got {self.dim}, {self.bank_size}")


@dataclasses.dataclass(frozen=True)
class RelabelSettings:
    """How `--rounds N` re-labels the train split with each round's segmenter."""

    crf: bool = setting(False, "refine the re-labelled probabilities with the dense CRF")
    confidence: float = setting(0.0, "leave pixels whose top probability is below this unlabelled (255)")

    def check(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"relabel_confidence must be in [0, 1], got {self.confidence!r}")


TAGS_SETTINGS_GROUPS: dict[str, type] = {
    "affinity": AffinitySettings, "contrast": ContrastSettings, "relabel": RelabelSettings,
}
