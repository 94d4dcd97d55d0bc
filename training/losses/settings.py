"""Per-loss settings of a training run, one small dataclass per loss, and the module each builds.

`TrainConfig` holds one of each (`config.crf.weight`, `config.potts.neighbours`, ...). YAML
configs give them nested (`crf: {weight: 1.0}`) or flat (`crf_weight: 1.0`); the CLI's flags are
the flat names (`--crf-weight 1.0`), so every flag of earlier versions still works. A
settings class's `build()` returns the weighted loss module, so adding a loss means adding a
class here and its name to `REGULARIZERS`, nothing else.

Each field's `metadata["help"]` is its documentation (the CLI shows it).
"""
from __future__ import annotations

import dataclasses

from torch import nn

from wsdeploy.settings import setting
__all__ = [
    "REGULARIZERS",
    "SETTINGS_GROUPS",
    "ADMSettings",
    "DenseCRFSettings",
    "EntropySettings",
    "GridPottsSettings",
    "NormalizedCutSettings",
    "SECSettings",
]


@dataclasses.dataclass(frozen=True)
class DenseCRFSettings:
    """The dense-CRF loss (`losses.dense.DenseCRFLoss`)."""

    weight: float = setting(
        1.0,
        "weight of the dense-CRF loss (normalised to [0, 1]; rloss's 2e-9 on VOC is ~0.24, "
        "--preset voc-deeplabv3plus-r101). 1.0 measured best: pce+crf 49.9 val mIoU vs 47.7 at 0.25 "
        "(benchmarks/results/scribble_sweep.json)",
    )
    sigma_rgb: float = setting(15.0, "dense-CRF loss colour bandwidth (0..255 RGB units)")
    sigma_xy: float = setting(100.0, "dense-CRF loss spatial bandwidth (pixels, full resolution)")
    scale: float = setting(0.5, "resolution factor at which the dense-CRF loss is computed")

    def build(self, *, relaxation: str) -> nn.Module:
        from wsdeploy.training.losses.dense import DenseCRFLoss

        return DenseCRFLoss(self.weight, sigma_rgb=self.sigma_rgb, sigma_xy=self.sigma_xy,
                            scale_factor=self.scale, relaxation=relaxation)


@dataclasses.dataclass(frozen=True)
class GridPottsSettings:
    """The grid Potts loss (`losses.grid.GridPottsLoss`)."""

    weight: float = setting(0.25, "weight of the grid Potts loss (normalised to [0, 1])")
    sigma_rgb: float = setting(15.0, "grid Potts loss colour bandwidth (0..255 RGB units)")
    neighbours: int = setting(4, "grid Potts neighbourhood: 4 or 8")

    def build(self, *, relaxation: str) -> nn.Module:
        from wsdeploy.training.losses.grid import GridPottsLoss

        return GridPottsLoss(self.weight, neighbours=self.neighbours, sigma_rgb=self.sigma_rgb,
                             relaxation=relaxation)


@dataclasses.dataclass(frozen=True)
class NormalizedCutSettings:
    """The normalized-cut loss (`losses.dense.NormalizedCutLoss`)."""

    weight: float = setting(0.1, "weight of the normalized-cut loss (0.05-0.1 suggested)")
    sigma_rgb: float = setting(15.0, "normalized-cut loss colour bandwidth (0..255 RGB units)")
    sigma_xy: float = setting(100.0, "normalized-cut loss spatial bandwidth (pixels)")
    scale: float = setting(0.5, "resolution factor at which the normalized-cut loss is computed")

    def build(self, *, relaxation: str) -> nn.Module:  # the normalized cut has one relaxation
        from wsdeploy.training.losses.dense import NormalizedCutLoss

        return NormalizedCutLoss(self.weight, sigma_rgb=self.sigma_rgb, sigma_xy=self.sigma_xy,
                                 scale_factor=self.scale)


@dataclasses.dataclass(frozen=True)
class EntropySettings:
    """The entropy loss (`losses.pointwise.EntropyLoss`)."""

    weight: float = setting(0.1, "weight of the entropy loss (0.1 or less suggested)")

    def build(self, *, relaxation: str) -> nn.Module:
        from wsdeploy.training.losses.pointwise import EntropyLoss

        return EntropyLoss(self.weight)


@dataclasses.dataclass(frozen=True)
class ADMSettings:
    """ADM proposals (`losses.proposals.ADMProposalLoss`; Marin et al., CVPR 2019): train on
    the labelling that minimises the network's fidelity + the dense-CRF loss, scribbles kept."""

    weight: float = setting(1.0, "ADM: weight of the cross-entropy to the proposals")
    crf_weight: float = setting(1.0, "ADM: dense-CRF weight (lambda) inside the proposal step")
    sigma_rgb: float = setting(15.0, "ADM: proposal kernel colour bandwidth (0..255 RGB units)")
    sigma_xy: float = setting(100.0, "ADM: proposal kernel spatial bandwidth (pixels, full resolution)")
    scale: float = setting(0.5, "ADM: resolution factor at which the proposals are computed")
    iterations: int = setting(10, "ADM: mean-field iterations per proposal step")

    def build(self, *, relaxation: str) -> nn.Module:  # the proposal's Potts term is bilinear
        from wsdeploy.training.losses.proposals import ADMProposalLoss

        return ADMProposalLoss(self.weight, crf_weight=self.crf_weight, sigma_rgb=self.sigma_rgb,
                               sigma_xy=self.sigma_xy, scale_factor=self.scale, iterations=self.iterations)


@dataclasses.dataclass(frozen=True)
class SECSettings:
    """SEC's seed / expand / constrain losses (`losses.sec.SECLoss`), for `method='sec'`."""

    seed_weight: float = setting(1.0, "SEC: weight of the seeding loss")
    expand_weight: float = setting(1.0, "SEC: weight of the expansion loss (global weighted rank pooling)")
    constrain_weight: float = setting(1.0, "SEC: weight of the constrain-to-boundary loss (KL to the dense CRF)")
    fg_decay: float = setting(0.996, "SEC: rank-pooling decay of foreground classes")
    bg_decay: float = setting(0.999, "SEC: rank-pooling decay of the background class")

    def build(self, *, num_classes: int, background_index: int | None) -> nn.Module:
        from wsdeploy.training.losses.sec import SECLoss

        return SECLoss(num_classes, background_index=background_index, seed_weight=self.seed_weight,
                       expand_weight=self.expand_weight, constrain_weight=self.constrain_weight,
                       fg_decay=self.fg_decay, bg_decay=self.bg_decay)


# the regularizer names of `--losses` and their settings classes (the TrainConfig field names)
REGULARIZERS: dict[str, type] = {
    "crf": DenseCRFSettings,
    "potts": GridPottsSettings,
    "ncut": NormalizedCutSettings,
    "entropy": EntropySettings,
    "adm": ADMSettings,
}
# every settings group of TrainConfig: field name -> class
SETTINGS_GROUPS: dict[str, type] = {**REGULARIZERS, "sec": SECSettings}
