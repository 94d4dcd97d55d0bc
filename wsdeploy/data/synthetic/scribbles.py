"""Simulated human scribbles (ScribbleSup-style) from a dense label map.

An annotator draws a few thin, smooth strokes well inside each region they see and never
traces boundaries. We mimic that per connected region: strokes are smooth random walks that
start near the region's medial axis and stay at least ``margin`` x (the region's inscribed
radius) away from its border, including the image border. Strokes are added until about
``coverage`` of the region's pixels are labelled or ``max_strokes`` is reached. Regions too thin
to hold a stroke get none, as small or thin things are missed in real scribble sets.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from wsdeploy.data.labels import IGNORE_LABEL

__all__ = ["scribbles_from_mask"]

_STEP = 1.5  # random-walk step, pixels
_SHIFT = 3
_ONE = 1 << _SHIFT


def scribbles_from_mask(
    mask: np.ndarray,
    *,
    rng: np.random.Generator,
    instances: np.ndarray | None = None,
    width: int = 3,
    coverage: float = 0.03,
    margin: float = 0.3,
    max_strokes: int = 3,
) -> np.ndarray:
    """Draw simulated scribbles inside every region of a label map.

    Args:
        mask: (H, W) uint8 class indices, 255 = ignore (never scribbled).
        rng: source of randomness; the result is a deterministic function of its state.
        instances: optional (H, W) integer instance ids; regions are then the connected parts
            of each instance instead of each class, so touching objects of one class each get
            their own strokes.
        width: stroke thickness in pixels, >= 1.
        coverage: target fraction of each region's pixels to label, in (0, 0.5].
        margin: strokes keep at least ``margin`` x the region's inscribed radius (and at least
            one pixel) between their edge and the region's border, in [0, 0.95].
        max_strokes: strokes per region at most, >= 1.

    Returns:
        (H, W) uint8: the class index on scribbled pixels, 255 elsewhere. Every scribbled
        pixel carries the class that ``mask`` has there.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"mask must be (H, W) uint8, got {mask.shape} {mask.dtype}")
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width must be an int >= 1, got {width!r}")
    if not 0 < coverage <= 0.5:
        raise ValueError(f"coverage must be in (0, 0.5], got {coverage!r}")
    if not 0 <= margin <= 0.95:
        raise ValueError(f"margin must be in [0, 0.95], got {margin!r}")
    if isinstance(max_strokes, bool) or not isinstance(max_strokes, (int, np.integer)) or max_strokes < 1:
        raise ValueError(f"max_strokes must be an int >= 1, got {max_strokes!r}")
    if instances is not None and np.shape(instances) != mask.shape:
        raise ValueError(f"instances must have the mask's shape {mask.shape}, got {np.shape(instances)}")

    regions = mask.astype(np.int64) if instances is None else np.asarray(instances, dtype=np.int64)
    out = np.full(mask.shape, IGNORE_LABEL, dtype=np.uint8)
    for region_id in np.unique(regions[mask != IGNORE_LABEL]):
        binary = ((regions == region_id) & (mask != IGNORE_LABEL)).astype(np.uint8)
        count, parts, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=4)
        for part in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[part])
            local = np.zeros((h + 2, w + 2), np.uint8)  # zero frame: the image border is a border too
            local[1:-1, 1:-1] = parts[y : y + h, x : x + w] == part
            drawn = _scribble_region(local, rng, width=width, coverage=coverage, margin=margin, max_strokes=max_strokes)
            if drawn is None:
                continue
            ys, xs = np.nonzero(drawn[1:-1, 1:-1])
            out[ys + y, xs + x] = mask[ys + y, xs + x]
    return out


def _scribble_region(
    region: np.ndarray, rng: np.random.Generator, *, width: int, coverage: float, margin: float, max_strokes: int
) -> np.ndarray | None:
    """Strokes for one connected (h, w) 0/1 region; returns a 0/1 map or None if it is too thin."""
    dist = cv2.distanceTransform(region, cv2.DIST_L2, 5)
    inscribed = float(dist.max())
    keep_out = max(margin * inscribed, 1.0)  # pixels between a stroke's edge and the border
    centre_min = keep_out + width / 2.0  # least distance of a stroke's centre line to the border
    safe = dist >= centre_min
    if not safe.any():
        return None
    budget = coverage * float(region.sum())  # pixels to label
    canvas = np.zeros_like(region)
    ys, xs = np.nonzero(safe)
    weight = dist[ys, xs].astype(np.float64) ** 2  # start near the medial axis
    weight /= weight.sum()
    pen = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width))  # a round pen `width` across
    labelled = 0
    for _ in range(max_strokes):
        length = max((budget - labelled) / width, 2.0 * width)
        start = int(rng.choice(len(ys), p=weight))
        points = _walk(dist, centre_min, (float(xs[start]), float(ys[start])), length, rng)
        line = np.zeros_like(region)
        pts = np.round(np.asarray(points) * _ONE).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(line, [pts], False, 1, 1, cv2.LINE_8, _SHIFT)  # 1-pixel centre line
        canvas |= cv2.dilate(line, pen)
        canvas[dist < keep_out] = 0  # guarantee: never closer than keep_out to the border
        labelled = int(canvas.sum())
        if labelled >= 0.9 * budget:
            break
    return canvas


def _walk(
    dist: np.ndarray, centre_min: float, start: tuple[float, float], length: float, rng: np.random.Generator
) -> list[tuple[float, float]]:
    """A smooth random walk of about ``length`` pixels through ``dist >= centre_min``, grown
    both ways from ``start``. Returns the (x, y) points in order."""
    heading = rng.uniform(0, 2 * math.pi)
    halves = []
    for direction in (heading, heading + math.pi):
        halves.append(_walk_one(dist, centre_min, start, direction, length / 2, rng))
    return halves[1][::-1] + [start] + halves[0]


def _walk_one(
    dist: np.ndarray, centre_min: float, start: tuple[float, float], heading: float, length: float,
    rng: np.random.Generator,
) -> list[tuple[float, float]]:
    h, w = dist.shape
    x, y = start
    turn = 0.0
    points: list[tuple[float, float]] = []
    for _ in range(int(length / _STEP)):
        turn = min(max(0.9 * turn + rng.normal(0.0, 0.015), -0.12), 0.12)  # smooth change of curvature
        heading += turn
        for k in range(13):  # bend away from the border if needed, prefer small bends
            trial = heading + (k + 1) // 2 * 0.25 * (1 if k % 2 else -1)
            nx, ny = x + _STEP * math.cos(trial), y + _STEP * math.sin(trial)
            ix, iy = int(round(nx)), int(round(ny))
            if 0 <= ix < w and 0 <= iy < h and dist[iy, ix] >= centre_min:
                heading, x, y = trial, nx, ny
                break
        else:
            break
        points.append((x, y))
    return points
