"""Class colour map for drawing label maps: the PASCAL VOC bit-interleaving palette.

Index ``i`` gets the colour whose red, green and blue bits are read from the bits of ``i``
(bit 0 -> red, bit 1 -> green, bit 2 -> blue, three bits per round, most significant first),
so the first 21 colours are exactly VOC's and any number of classes gets distinct colours.
The ignore index 255 is drawn with :data:`IGNORE_COLOUR` by :func:`colourise`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["IGNORE_COLOUR", "palette", "colourise"]

IGNORE_COLOUR = (224, 224, 192)  # VOC's colour for the 255 "void" label


def palette(num_classes: int) -> np.ndarray:
    """Return the VOC colour map for ``num_classes`` classes.

    Args:
        num_classes: number of classes K, 1 <= K <= 256.

    Returns:
        (K, 3) uint8 RGB; row ``i`` is the colour of class ``i`` (row 0 is black).
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__}")
    if not 1 <= num_classes <= 256:
        raise ValueError(f"num_classes must be in [1, 256], got {num_classes}")
    index = np.arange(num_classes)
    colours = np.zeros((num_classes, 3), dtype=np.int64)
    for shift in range(7, -1, -1):  # 8 rounds of 3 bits fill bits 7..0 of each channel
        for channel in range(3):
            colours[:, channel] |= ((index >> channel) & 1) << shift
        index = index >> 3
    return colours.astype(np.uint8)


def colourise(labels: np.ndarray, *, num_classes: int = 256) -> np.ndarray:
    """Map a label image to RGB colours.

    Args:
        labels: (H, W) integer class indices in [0, num_classes) or 255 (= ignore).
        num_classes: palette length; indices outside it (other than 255) raise.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a (H, W) integer array, got {labels.shape} {labels.dtype}")
    colours = palette(num_classes)
    valid = labels != 255
    if np.any(valid) and (labels[valid].min() < 0 or labels[valid].max() >= num_classes):
        bad = int(labels[valid].max() if labels[valid].max() >= num_classes else labels[valid].min())
        raise ValueError(f"labels must be in [0, {num_classes}) or 255, got {bad}")
    out = np.empty(labels.shape + (3,), dtype=np.uint8)
    out[valid] = colours[labels[valid]]
    out[~valid] = IGNORE_COLOUR
    return out
