"""Named starting points for `wsdeploy train --preset NAME` (and `load_config(base=preset(NAME))`).

A preset is a plain mapping of `TrainConfig` fields. Precedence, lowest first: the defaults <
the preset < a `--config` YAML < flags, so any field of a preset can still be changed.

- `cpu-small`: the recipe of the synthetic benchmark's tables, measured on a 2-core CPU
  (README, "The scribble table"): DeepLabV3+ on a width-16 ResNet-18, 128-px crops, AdamW 3e-3,
  batch 8, 3000 steps, pCE + dense-CRF loss (weight 1.0, sigma_rgb 30, sigma_xy 25 for 128-px
  images, on from step 1000): the table's best row, 47.6 +- 1.6 val mIoU over 3 seeds (entropy
  on top gave 47.4, so it is left out). About 0.17 s per step at one thread, quiet.
- `voc-deeplabv3plus-r101`: the published rloss recipe for PASCAL VOC + ScribbleSup (Tang et al.,
  ECCV 2018; github.com/meng-tang/rloss, pytorch-deeplab_v3_plus): DeepLabV3+ ResNet-101 at
  output stride 16, SGD lr 0.007 with poly decay, momentum 0.9, weight decay 5e-4, the backbone at
  a tenth of the head's learning rate, batch 12, 30k steps, random scale 0.5-2 + flip, pCE + the
  dense-CRF loss at rloss's sigma_rgb 15, sigma_xy 100, scale 0.5. rloss's weight 2e-9 is
  unnormalised; ours is divided by the kernel mass, so it converts to 2e-9 x the mean
  `kernel_mass()` of a 513x513 crop: 0.239 over the 13 GrabCut photographs
  (`scripts/rloss_weight.py`, benchmarks/results/rloss_weight.json; per image 0.08-0.69; no VOC
  image reaches our machines). Two deviations, both forced: crops of 512, not 513 (our models
  take multiples of the output stride; 513 = 32 x 16 + 1 is DeepLab-TF's convention), and
  rloss starts from ImageNet weights, which you pass with `--backbone-weights FILE.pth` (nothing
  is downloaded). Not run here: it needs a GPU and VOC.
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["PRESETS", "preset"]

# rloss 2e-9 x the mean kernel mass of 513x513 crops (benchmarks/results/rloss_weight.json)
RLOSS_VOC_CRF_WEIGHT = 0.239

PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "cpu-small": MappingProxyType({
        "model": "deeplabv3plus_resnet18", "width": 16, "output_stride": 16,
        "crop_size": 128, "scale_min": 1.0, "scale_max": 1.0,
        "optimizer": "adamw", "lr": 3e-3, "weight_decay": 1e-4, "steps": 3000, "batch_size": 8,
        "workers": 0, "log_every": 50,
        "losses": "pce,crf", "crf_weight": 1.0, "crf_sigma_rgb": 30.0, "crf_sigma_xy": 25.0,
        "regularizers_from_step": 1000,
    }),
    "voc-deeplabv3plus-r101": MappingProxyType({
        "model": "deeplabv3plus_resnet101", "width": 64, "output_stride": 16,
        "crop_size": 512, "scale_min": 0.5, "scale_max": 2.0, "hflip": 0.5,
        "optimizer": "sgd", "lr": 0.007, "momentum": 0.9, "weight_decay": 5e-4, "backbone_lr_scale": 0.1,
        "poly_power": 0.9, "steps": 30000, "batch_size": 12,
        "losses": "pce,crf", "crf_weight": RLOSS_VOC_CRF_WEIGHT, "crf_sigma_rgb": 15.0, "crf_sigma_xy": 100.0,
        "crf_scale": 0.5,
    }),
})


def preset(name: str | None) -> dict[str, Any]:
    """The fields of preset `name` (a new dict); {} for None.

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    if name is None:
        return {}
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return dict(PRESETS[name])
