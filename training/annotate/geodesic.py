"""Geodesic distance from each class's strokes, as a location prior for the graph cut.

The path cost of one step between 8-neighbours p, q is |p - q| (in full-resolution pixels) plus
`colour_weight` * |I_p - I_q| (RGB, 0-255), so a pixel reached from a stroke without crossing an
edge of the image is near it however far away it lies (Bai & Sapiro, IJCV 2009; Price et al.,
"Geodesic graph cut", CVPR 2010). Distances are computed on a coarse grid (long side
`size`) by Dijkstra from every stroke pixel of the class at once (scipy.sparse.csgraph) and
upsampled bilinearly; the prior is smooth, the cut supplies the boundary detail.

`likelihood_weight` > 0 adds to each step `likelihood_weight` * the total-variation distance
between the two pixels' class posteriors under colour models fitted on the strokes alone
(`stroke_posterior`; Bai & Sapiro's metric, the gradient of the likelihood): inside a textured
region whose colours one class's strokes explain (grass), the posterior is flat where the RGB
differences are not, so the path no longer pays for the texture at every step (issue 15).

    d = geodesic_distances(image, scribbles, num_classes=2)    # (K, H, W) float64
    prior = geodesic_prior(d, weight=5.0)                      # (K, H, W), added to the unary
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from wsdeploy.training.annotate.mixture import fit_mixtures, log_likelihood

__all__ = ["Coarse", "coarse_distances", "geodesic_distances", "geodesic_prior", "stroke_pixels", "stroke_posterior",
           "upsample"]

UNLABELLED = 255


def stroke_pixels(scribbles: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The scribbles on a grid of `shape` (h, w) <= theirs: every stroke pixel lands on the
    coarse pixel that holds it (later classes win ties), so no stroke is lost to resizing.

    Returns:
        (h, w) uint8, 255 where no stroke lands.
    """
    height, width = scribbles.shape
    h, w = shape
    out = np.full((h, w), UNLABELLED, np.uint8)
    ys, xs = np.nonzero(scribbles != UNLABELLED)
    out[(ys * h) // height, (xs * w) // width] = scribbles[ys, xs]
    return out


@dataclass
class Coarse:
    """Geodesic distances on the coarse grid, kept for an incremental update.

    Attributes:
        graph: the grid's (h*w, h*w) sparse path costs.
        seeds: (h, w) uint8, the strokes on the grid (`stroke_pixels`).
        distances: (K, h, w) float64, +inf for a class without strokes.
    """

    graph: Any
    seeds: np.ndarray
    distances: np.ndarray


def geodesic_distances(image: np.ndarray, scribbles: np.ndarray, *, num_classes: int,
                       size: int = 160, colour_weight: float = 1.0) -> np.ndarray:
    """(K, H, W) float64 shortest-path lengths from each class's strokes; +inf for a class
    without strokes.

    Args:
        image: (H, W, 3) uint8 RGB.
        scribbles: (H, W) integer class indices, 255 unlabelled.
        num_classes: K.
        size: long side of the grid the paths run on.
        colour_weight: cost per unit of RGB difference, >= 0 (0: Euclidean distance).
    """
    coarse = coarse_distances(image, scribbles, num_classes=num_classes, size=size, colour_weight=colour_weight)
    return upsample(coarse, scribbles.shape)


def coarse_distances(image: np.ndarray, scribbles: np.ndarray, *, num_classes: int, size: int = 160,
                     colour_weight: float = 1.0, likelihood_weight: float = 0.0, components: int = 5,
                     previous: Coarse | None = None) -> Coarse:
    """`geodesic_distances` on the coarse grid. With `previous` (the same image, size and
    colour_weight, fewer strokes), a class whose grid strokes did not change keeps its
    distances and a class that only gained strokes takes min(previous, distance from the new
    ones) (exact: a multi-source distance is the minimum over its sources); others are
    recomputed. The graph is reused. likelihood_weight > 0 (path cost per unit of posterior
    change, `stroke_posterior` with `components` Gaussians per class) makes the graph depend
    on every stroke, so `previous` is then ignored and everything recomputed."""
    try:
        from scipy.sparse.csgraph import dijkstra
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("annotate's geodesic prior needs scipy: pip install 'wsdeploy[train]' "
                          "(or AnnotateConfig(cut_geodesic_weight=0))") from exc

    height, width = scribbles.shape
    scale = min(1.0, size / max(height, width))
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    seeds = stroke_pixels(scribbles, (h, w))
    if (previous is not None and likelihood_weight == 0 and previous.seeds.shape == (h, w)
            and previous.distances.shape[0] == num_classes):
        graph = previous.graph
    else:
        small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        posterior = (stroke_posterior(small, seeds, num_classes=num_classes, components=components)
                     if likelihood_weight > 0 else None)
        graph, previous = _graph(small, (height, width), colour_weight, posterior, likelihood_weight), None
    out = np.full((num_classes, h, w), np.inf)
    for c in range(num_classes):
        now = seeds == c
        if previous is not None:
            before = previous.seeds == c
            if np.array_equal(now, before):
                out[c] = previous.distances[c]
                continue
            if not (before & ~now).any():  # only gained strokes
                d = dijkstra(graph, directed=False, indices=np.flatnonzero(now & ~before), min_only=True)
                out[c] = np.minimum(previous.distances[c], d.reshape(h, w))
                continue
        if now.any():
            out[c] = dijkstra(graph, directed=False, indices=np.flatnonzero(now), min_only=True).reshape(h, w)
    return Coarse(graph=graph, seeds=seeds, distances=out)


def upsample(coarse: Coarse, shape: tuple[int, int]) -> np.ndarray:
    """(K, H, W) float64: the coarse distances resized bilinearly to `shape` (+inf stays)."""
    height, width = shape
    out = np.full((coarse.distances.shape[0], height, width), np.inf)
    for c, d in enumerate(coarse.distances):
        if np.isfinite(d).all():
            out[c] = cv2.resize(d.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return out


def stroke_posterior(small: np.ndarray, seeds: np.ndarray, *, num_classes: int, components: int) -> np.ndarray:
    """p(class | colour) under one RGB mixture per class fitted on its strokes alone (equal
    class priors; a class without strokes gets the flat mixture).

    Args:
        small: (h, w, 3) uint8 RGB.
        seeds: (h, w) uint8 class indices on the same grid, 255 unlabelled.

    Returns:
        (K, h, w) float64, summing to 1 over K.
    """
    mix = fit_mixtures(small, seeds, num_classes=num_classes, components=components, iterations=8)
    ll = log_likelihood(mix, small)
    p = np.exp(ll - ll.max(0, keepdims=True))
    return p / p.sum(0, keepdims=True)


def _graph(small: np.ndarray, full_shape: tuple[int, int], colour_weight: float,
           posterior: np.ndarray | None = None, likelihood_weight: float = 0.0) -> Any:
    """The coarse grid's 8-neighbour path costs as a sparse (h*w, h*w) matrix: small (h, w, 3)
    the area-resized image of a photo of `full_shape`, posterior (K, h, w) or None."""
    from scipy.sparse import coo_matrix

    height, width = full_shape
    h, w = small.shape[:2]
    small = small.astype(np.float32)
    step = (height / h + width / w) / 2  # one coarse pixel in full-resolution pixels
    index = np.arange(h * w).reshape(h, w)
    src, dst, cost = [], [], []
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        x0, x1 = max(0, -dx), w - max(0, dx)
        p, q = (slice(0, h - dy), slice(x0, x1)), (slice(dy, h), slice(x0 + dx, x1 + dx))
        colour = np.sqrt(((small[p] - small[q]) ** 2).sum(-1))
        step_cost = np.hypot(dy, dx) * step + colour_weight * colour  # (h', w')
        if posterior is not None:  # total-variation distance of the two class posteriors, in [0, 1]
            step_cost = step_cost + likelihood_weight * 0.5 * np.abs(
                posterior[:, p[0], p[1]] - posterior[:, q[0], q[1]]).sum(0)
        src.append(index[p].ravel())
        dst.append(index[q].ravel())
        cost.append(step_cost.ravel() + 1e-6)
    return coo_matrix((np.concatenate(cost), (np.concatenate(src), np.concatenate(dst))),
                      shape=(h * w, h * w)).tocsr()


def geodesic_prior(distances: np.ndarray, *, weight: float) -> np.ndarray:
    """weight * d_c / sum_c' d_c' per pixel: 0 on a class's own strokes, `weight` on another
    class's, scale-free (the same in a small and a large photo). A class without strokes gets
    `weight` everywhere.

    Args:
        distances: (K, H, W) from `geodesic_distances`.

    Returns:
        (K, H, W) float64.
    """
    d = np.where(np.isfinite(distances), distances, np.nan)
    total = np.nansum(d, 0, keepdims=True)
    ratio = np.where(np.isnan(d), 1.0, d / np.maximum(total, 1e-9))
    return weight * ratio
