"""Class colour map for drawing label maps: the PASCAL VOC bit-interleaving palette.

Index ``i`` gets the colour whose red, green and blue bits are read from the bits of ``i``
(bit 0 -> red, bit 1 -> green, bit 2 -> blue, three bits per round, most significant first),
so the first 21 colours are exactly VOC's and any number of classes gets distinct colours.
The ignore index 255 is drawn with :data:`IGNORE_COLOUR` by :func:`colourise`; :func:`class_palette`
gives black to a background class only.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BACKGROUND_NAMES", "IGNORE_COLOUR", "class_palette", "colourise", "palette"]

IGNORE_COLOUR = (224, 224, 192)  # VOC's colour for the 255 "void" label
BACKGROUND_NAMES = ("background", "_background_", "bg", "__background__")


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


def class_palette(classes: list[str] | tuple[str, ...]) -> np.ndarray:
    """Drawing colours for named classes: the VOC map, with black only for a background class.

    VOC draws its class 0 (background) black. A dataset whose class 0 is a real class (the
    synthetic benchmark's sky, CamVid's first class) would have that class drawn black, which
    reads as "nothing", so then the colours start at VOC's index 1.

    Returns:
        (K, 3) uint8 RGB, K = len(classes).
    """
    k = len(classes)
    if k and str(classes[0]).lower() in BACKGROUND_NAMES:
        return palette(k)
    return palette(k + 1)[1:]


def colourise(labels: np.ndarray, colours: np.ndarray | int) -> np.ndarray:
    """Map a label image to RGB colours; 255 (ignore) gets `IGNORE_COLOUR`.

    The one colouring function of the library (overlays, legends, figures).

    Args:
        labels: (H, W) integer class indices in [0, K) or 255 (= ignore).
        colours: (K, 3) uint8 RGB palette (e.g. a model card's, or `class_palette(classes)`),
            or K for the VOC map `palette(K)`.

    Returns:
        (H, W, 3) uint8 RGB.

    Raises:
        ValueError: labels not (H, W) integers, or values outside [0, K) other than 255.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a (H, W) integer array, got {labels.shape} {labels.dtype}")
    table = palette(colours) if isinstance(colours, (int, np.integer)) else np.asarray(colours, dtype=np.uint8)
    if table.ndim != 2 or table.shape[1] != 3 or not len(table):
        raise ValueError(f"colours must be a (K, 3) palette or a class count, got shape {table.shape}")
    num_classes = len(table)
    valid = labels != 255
    if np.any(valid) and (labels[valid].min() < 0 or labels[valid].max() >= num_classes):
        bad = int(labels[valid].max() if labels[valid].max() >= num_classes else labels[valid].min())
        raise ValueError(f"labels must be in [0, {num_classes}) or 255, got {bad}")
    out = np.empty(labels.shape + (3,), dtype=np.uint8)
    out[valid] = table[labels[valid]]
    out[~valid] = IGNORE_COLOUR
    return out
