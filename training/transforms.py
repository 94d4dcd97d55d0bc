"""Mask-aware augmentation for training and validation, built on albumentations (2.x).

Images and label maps move together: geometry is sampled once per item and applied to both;
images are resampled bilinearly, labels with nearest neighbour (`cv2.INTER_NEAREST_EXACT`, whose
pixel-centre convention matches the bilinear one), so a label value is always one of
the input's values (a scribble's 255 stays 255, never blends into a class). Pixels added by
padding get `PAD_LABEL` (254) in the label, so losses can tell padding from unlabelled (255).

Transforms here take and return the dataset's item dict (`image` (H, W, 3) uint8 RGB, `label`
(H, W) uint8 or None, other keys passed through), so they plug into `SegmentationDataset`.

Needs the `train` extra: `pip install "wsdeploy[train]"`.
"""
from __future__ import annotations

import os
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch.utils.data import get_worker_info

from wsdeploy.data.labels import PAD_LABEL

__all__ = [
    "MEAN_FILL",
    "PairTransform",
    "train_transform",
    "val_transform",
]

MEAN_FILL = (124, 116, 104)  # ImageNet mean colour (RGB, 0-255): padding that normalises to ~0


def _albumentations() -> Any:
    # albumentations asks PyPI for a newer version at import unless told not to; a library
    # import must not touch the network (DESIGN.md). A user's own setting is kept.
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    try:
        import albumentations
    except ImportError as exc:
        raise ImportError(
            'data augmentation needs albumentations: pip install "wsdeploy[train]"'
        ) from exc
    return albumentations


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair)
    if len(pair) != 2 or not ok:
        raise ValueError(f"{name} must be a positive int or (height, width), got {value!r}")
    return pair  # type: ignore[return-value]


def _fill(fill: int | Sequence[int]) -> tuple[int, int, int]:
    rgb = (fill,) * 3 if isinstance(fill, int) else tuple(fill)
    if len(rgb) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in rgb):
        raise ValueError(f"fill must be an int or (R, G, B) in 0..255, got {fill!r}")
    return rgb  # type: ignore[return-value]


class PairTransform:
    """Apply an albumentations pipeline to an item's `image` and `label` together.

    Random state: one numpy and one Python generator shared by every step, seeded from `seed`.
    Inside a DataLoader worker the generators are reseeded from the worker's torch seed (plus
    `seed`), so workers do not repeat each other and epochs differ; the run is still reproducible
    under `torch.manual_seed`.

    Args:
        compose: an `albumentations.Compose`.
        seed: seed of the random state, or None for a fresh one.
        record_size: add `orig_size` = (H, W) of the input image to the item.
    """

    def __init__(self, compose: Any, *, seed: int | None = None, record_size: bool = False) -> None:
        self.compose = compose
        self.seed = seed
        self.record_size = record_size
        self._worker_key: tuple[int, int] | None = None
        self._reseed(seed)

    def _reseed(self, seed: int | None) -> None:
        self.compose.set_random_state(np.random.default_rng(seed), random.Random(seed))

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        """item: {"image": (H, W, 3) uint8, "label": (H, W) uint8 | None, ...} -> same keys."""
        info = get_worker_info()
        if info is not None and self._worker_key != (info.id, info.seed):
            self._worker_key = (info.id, info.seed)
            self._reseed((info.seed + (self.seed or 0)) % 2**63)
        image = item["image"]
        label = item.get("label")
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
            got = getattr(image, "shape", type(image).__name__)
            raise ValueError(f"expected item['image'] as (H, W, 3) uint8 numpy, got {got}")
        if label is not None and label.shape != image.shape[:2]:
            raise ValueError(
                f"label shape {label.shape} differs from image shape {image.shape[:2]}"
            )
        out = dict(item)
        if label is None:
            out["image"] = self.compose(image=image)["image"]
        else:
            result = self.compose(image=image, mask=label)
            out["image"], out["label"] = result["image"], result["mask"]
        if self.record_size:
            out["orig_size"] = tuple(image.shape[:2])
        return out

    def __repr__(self) -> str:
        steps = ", ".join(type(t).__name__ for t in self.compose.transforms)
        return f"PairTransform([{steps}], seed={self.seed})"


def train_transform(
    *,
    crop_size: int | Sequence[int] = 512,
    scale_range: tuple[float, float] = (0.5, 2.0),
    hflip: float = 0.5,
    vflip: float = 0.0,
    color_jitter: float = 0.0,
    fill: int | Sequence[int] = MEAN_FILL,
    seed: int | None = None,
) -> PairTransform:
    """Training augmentation: random scale, pad to the crop, random crop, horizontal (and
    optionally vertical) flip.

    Steps: scale by a factor drawn uniformly from `scale_range` (bilinear image, nearest label);
    pad to at least `crop_size` (image with `fill`, label with `PAD_LABEL`); crop `crop_size` at a
    random position; flip left-right with probability `hflip`, then upside down with probability
    `vflip`; optionally jitter colours.

    Args:
        crop_size: output size, an int or (height, width).
        scale_range: (low, high) scale factors, 0 < low <= high.
        hflip: probability of a horizontal flip, in [0, 1].
        vflip: probability of a vertical flip, in [0, 1]; 0 (the default) adds no step, so the
            random draws of the other steps are those of a transform without it.
        color_jitter: strength s of brightness/contrast/saturation jitter (factors in
            [1 - s, 1 + s], hue +-s/4, applied with probability 0.8); 0 turns it off.
        fill: padding colour of the image, an int or (R, G, B); default the ImageNet mean.
        seed: seed of the random state (see `PairTransform`), or None.

    Returns:
        a `PairTransform`; items come out with image (crop_h, crop_w, 3) uint8 and label
        (crop_h, crop_w) uint8 with 254 where padded.
    """
    A = _albumentations()
    import cv2

    crop_h, crop_w = _pair(crop_size, "crop_size")
    low, high = scale_range
    if not 0 < low <= high:
        raise ValueError(
            f"scale_range must be (low, high) with 0 < low <= high, got {scale_range!r}"
        )
    if not 0.0 <= hflip <= 1.0:
        raise ValueError(f"hflip must be a probability in [0, 1], got {hflip!r}")
    if not 0.0 <= vflip <= 1.0:
        raise ValueError(f"vflip must be a probability in [0, 1], got {vflip!r}")
    if not 0.0 <= color_jitter < 1.0:
        raise ValueError(f"color_jitter must be in [0, 1), got {color_jitter!r}")
    steps = [
        A.RandomScale(
            scale_limit=(low - 1.0, high - 1.0),  # albumentations samples 1 + U(low, high)
            interpolation=cv2.INTER_LINEAR,
            # nearest with pixel-centre alignment, matching the bilinear image resampling;
            # plain INTER_NEAREST is offset by half a source pixel (4x more misaligned pixels)
            mask_interpolation=cv2.INTER_NEAREST_EXACT,
            p=1.0,
        ),
        A.PadIfNeeded(
            min_height=crop_h,
            min_width=crop_w,
            position="center",
            border_mode=cv2.BORDER_CONSTANT,
            fill=_fill(fill),
            fill_mask=PAD_LABEL,
        ),
        A.RandomCrop(height=crop_h, width=crop_w),
        A.HorizontalFlip(p=hflip),
    ]
    if vflip > 0:
        steps.append(A.VerticalFlip(p=vflip))
    if color_jitter > 0:
        s = color_jitter
        steps.append(
            A.ColorJitter(brightness=s, contrast=s, saturation=s, hue=s / 4, p=0.8)
        )
    return PairTransform(A.Compose(steps), seed=seed)


def val_transform(
    *, pad_multiple: int = 32, fill: int | Sequence[int] = MEAN_FILL
) -> PairTransform:
    """Validation transform: pad bottom and right so H and W are multiples of `pad_multiple`.

    The image keeps its top-left corner, so a prediction is cropped back with
    `pred[:h, :w]` where `(h, w) = item["orig_size"]` (added to the item). Padded label pixels
    are `PAD_LABEL` (254). For no transform at all, pass `transform=None` to the dataset.

    Args:
        pad_multiple: the network's output stride or a multiple of it (e.g. 32).
        fill: padding colour of the image, an int or (R, G, B); default the ImageNet mean.
    """
    A = _albumentations()
    import cv2

    if isinstance(pad_multiple, bool) or not isinstance(pad_multiple, int) or pad_multiple < 1:
        raise ValueError(f"pad_multiple must be a positive int, got {pad_multiple!r}")
    pad = A.PadIfNeeded(
        min_height=None,
        min_width=None,
        pad_height_divisor=pad_multiple,
        pad_width_divisor=pad_multiple,
        position="top_left",
        border_mode=cv2.BORDER_CONSTANT,
        fill=_fill(fill),
        fill_mask=PAD_LABEL,
    )
    return PairTransform(A.Compose([pad]), seed=0, record_size=True)
