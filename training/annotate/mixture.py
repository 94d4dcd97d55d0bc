"""Per-class RGB Gaussian mixtures for the graph cut: fitted on labelled pixels by EM, refitted
from a warm start, and evaluated on every pixel with one matrix product.

`colour` holds the network method's colour model (k-means++ start, 10 EM iterations, per-pixel
loops); this is the same model (full 3x3 covariances, `COV_FLOOR` on the diagonal) made cheap
enough to refit at every graph-cut iteration: log(w N(x | mu, S)) is a quadratic in x, so all
K*M components are one (K*M, 9) @ (9, N) product over the pixels' (x x^T, x) features, and
the M-step's moments one (M, P) @ (P, 9) product over the same features (computed once per EM
run; `Colours` keeps those of an image's distinct colours). Arrays are component-major,
(components, pixels), so every reduction over the components runs along contiguous rows.

    mix = fit_mixtures(image, labels, num_classes=2, components=5, iterations=8)
    ll = log_likelihood(mix, image)          # (K, H, W) float64, log p(colour | class)
    mix = fit_mixtures(image, new_labels, ..., init=mix)   # EM from the previous mixtures
    colours = distinct_colours(image)        # once per image: a photo has far fewer colours than pixels
    ll = log_likelihood(mix, image, colours=colours)   # the same, evaluated once per colour
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["COV_FLOOR", "Colours", "Mixtures", "distinct_colours", "fit_mixtures", "log_likelihood"]

COV_FLOOR = 9.0  # added to covariance diagonals, (0-255 units)^2: a 3-level std floor
_PIXELS_PER_COMPONENT = 30  # a short stroke gets fewer Gaussians, not degenerate ones
_FLAT_STD = 128.0  # a class without pixels: one Gaussian this wide around mid-grey
_IU = np.triu_indices(3)
_FLOOR = np.eye(3) * COV_FLOOR


@dataclass(frozen=True)
class Mixtures:
    """K mixtures of M Gaussians in RGB (0-255).

    Attributes:
        weights: (K, M) float64, rows sum to 1; unused components weigh 0.
        means: (K, M, 3) float64.
        covs: (K, M, 3, 3) float64, symmetric positive definite.
    """

    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray


@dataclass(frozen=True)
class Colours:
    """The distinct colours of one image.

    Attributes:
        values: (U, 3) float64, each distinct RGB colour once.
        index: (H, W) int64, the row of `values` holding each pixel's colour.
        features: (U, 9) float64, `values`' quadratic features (`_features`), computed once
            for every evaluation of the mixtures; None computes them at each evaluation.
    """

    values: np.ndarray
    index: np.ndarray
    features: np.ndarray | None = None


def distinct_colours(image: np.ndarray) -> Colours:
    """(H, W, 3) uint8 -> its `Colours` (a JPEG photo of 0.3 Mpx has 6-40% as many colours as
    pixels, so a per-colour function evaluated on `values` and gathered by `index` is cheaper)."""
    h, w, _ = image.shape
    rgb = image.reshape(-1, 3).astype(np.int32)
    packed = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]  # (H*W,) one int per colour
    unique, index = np.unique(packed, return_inverse=True)
    values = np.stack([unique >> 16, (unique >> 8) & 255, unique & 255], 1).astype(np.float64)
    return Colours(values=values, index=index.reshape(h, w), features=_features(values))


def _features(x: np.ndarray) -> np.ndarray:
    """(N, 3) -> (N, 9): the upper triangle of x x^T, then x."""
    return np.concatenate([x[:, _IU[0]] * x[:, _IU[1]], x], 1)


def _component_log_density(weights: np.ndarray, means: np.ndarray, covs: np.ndarray,
                           x: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
    """log(w_c N(x | mu_c, S_c)) of C = weights.size components (any leading shape, flattened)
    at x (N, 3): (C, N) float64 (component-major, so the reductions over C run along
    contiguous rows), -inf for components of weight 0. features: `_features(x)` if already
    computed (the same numbers), else None."""
    w = weights.reshape(-1)
    mu = means.reshape(-1, 3)
    cov = covs.reshape(-1, 3, 3)
    prec = np.linalg.inv(cov)  # (C, 3, 3)
    _, logdet = np.linalg.slogdet(cov)
    off = np.where(_IU[0] == _IU[1], 1.0, 2.0)
    quad = -0.5 * prec[:, _IU[0], _IU[1]] * off  # (C, 6)
    lin = np.einsum("cij,cj->ci", prec, mu)  # (C, 3)
    with np.errstate(divide="ignore"):
        const = np.log(w) - 0.5 * np.einsum("ci,ci->c", lin, mu) - 0.5 * logdet - 1.5 * np.log(2 * np.pi)
    feats = _features(x) if features is None else features  # (N, 9)
    return np.concatenate([quad, lin], 1) @ feats.T + const[:, None]  # (C, N)


def log_likelihood(mix: Mixtures, image: np.ndarray, *, colours: Colours | None = None) -> np.ndarray:
    """log p(colour | class) of every pixel: (H, W, 3) uint8 -> (K, H, W) float64.

    colours: `distinct_colours(image)`, to evaluate the mixtures once per distinct colour
    (the same values up to rounding); None evaluates them at every pixel."""
    h, w, _ = image.shape
    k, m = mix.weights.shape
    x = image.reshape(-1, 3).astype(np.float64) if colours is None else colours.values  # (N, 3)
    feats = None if colours is None else colours.features
    per = _component_log_density(mix.weights, mix.means, mix.covs, x, feats).reshape(k, m, len(x))
    top = per.max(1, keepdims=True)  # (K, 1, N)
    per -= top  # in place: the same numbers as exp(per - top), without the temporaries
    np.exp(per, out=per)
    ll = np.log(per.sum(1))  # (K, N)
    ll += top[:, 0]
    return ll.reshape(k, h, w) if colours is None else ll[:, colours.index]


def fit_mixtures(
    image: np.ndarray, labels: np.ndarray, *, num_classes: int, components: int, iterations: int,
    init: Mixtures | None = None, max_pixels: int = 8000,
) -> Mixtures:
    """EM per class on the pixels labelled with it.

    Args:
        image: (H, W, 3) uint8 RGB.
        labels: (H, W) integer class indices; other values (e.g. 255) are used by no class.
        num_classes: K.
        components: M >= 1; a class with fewer than 30 M pixels starts with one Gaussian per
            30 pixels (the rest weigh 0), so a short stroke does not give needle-thin ones.
        iterations: EM iterations, >= 0.
        init: start EM from these mixtures (warm start); without it, from GrabCut's
            deterministic principal-axis splits. A class without pixels keeps its mixture from
            `init`, or gets a flat one.
        max_pixels: at most this many pixels per class, an evenly strided subset.

    Deterministic: the same inputs give the same mixtures.

    Returns:
        Mixtures of shape (K, M).
    """
    weights = np.zeros((num_classes, components))
    means = np.full((num_classes, components, 3), 128.0)
    covs = np.tile(np.eye(3) * _FLAT_STD**2, (num_classes, components, 1, 1))
    for c in range(num_classes):
        x = image[labels == c].astype(np.float64)  # (P, 3)
        if len(x) > max_pixels:
            x = x[:: -(-len(x) // max_pixels)]
        if len(x) == 0:
            if init is not None:
                weights[c], means[c], covs[c] = init.weights[c], init.means[c], init.covs[c]
            else:
                weights[c, 0] = 1.0
            continue
        if init is not None:
            start = init.weights[c], init.means[c], init.covs[c]
        else:
            start = _split_start(x, components, min(components, max(1, len(x) // _PIXELS_PER_COMPONENT)))
        weights[c], means[c], covs[c] = _em(x, *start, iterations)
    return Mixtures(weights=weights, means=means, covs=covs)


def _m_step(x: np.ndarray, resp: np.ndarray, means: np.ndarray, covs: np.ndarray,
            features: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Weights, means, covariances from responsibilities resp (M, P); empty components stay
    as they were with weight 0. The covariances are the weighted second moments minus
    mu mu^T, from `_features(x)` (P, 9) (given, or computed here): one (M, P) @ (P, 9)
    product (float64: the cancellation costs ~1e-12 of a covariance >= COV_FLOOR)."""
    nk = resp.sum(1)  # (M,)
    used = nk > 1e-6
    weights = np.where(used, nk / nk.sum(), 0.0)
    means, covs = means.copy(), covs.copy()
    feats = _features(x) if features is None else features
    moments = resp[used] @ feats / nk[used, None]  # (M', 9): E[x_i x_j] (upper triangle), E[x]
    mu = moments[:, 6:]
    second = np.empty((len(mu), 3, 3))
    second[:, _IU[0], _IU[1]] = moments[:, :6]
    second[:, _IU[1], _IU[0]] = moments[:, :6]
    means[used] = mu
    covs[used] = second - mu[:, :, None] * mu[:, None, :] + _FLOOR
    return weights, means, covs


def _em(x: np.ndarray, weights: np.ndarray, means: np.ndarray, covs: np.ndarray,
        iterations: int) -> tuple[np.ndarray, ...]:
    feats = _features(x) if iterations else None  # (P, 9), the same for every iteration
    for _ in range(iterations):
        log_p = _component_log_density(weights, means, covs, x, feats)  # (M, P)
        log_p -= log_p.max(0, keepdims=True)
        resp = np.exp(log_p)
        resp /= resp.sum(0, keepdims=True)
        weights, means, covs = _m_step(x, resp, means, covs, feats)
    return weights, means, covs


def _split_start(x: np.ndarray, m: int, used: int) -> tuple[np.ndarray, ...]:
    """Deterministic start (Orchard & Bouman, IEEE TSP 1991, as in GrabCut): from one cluster,
    split the cluster of largest variance along its principal axis at its mean, used - 1
    times; then one M-step on that hard assignment (components beyond `used` weigh 0)."""
    assign = np.zeros(len(x), np.int64)
    for j in range(1, used):
        spread, best = -1.0, None
        for c in range(j):
            members = x[assign == c]
            if len(members) < 2:
                continue
            vals, vecs = np.linalg.eigh(np.cov(members.T))
            if vals[-1] > spread:
                spread, best = vals[-1], (c, vecs[:, -1], members.mean(0))
        if best is None or spread <= 1e-9:
            break
        c, axis, centre = best
        assign[(assign == c) & ((x - centre) @ axis > 0)] = j
    resp = np.zeros((m, len(x)))  # (M, P) one-hot
    resp[assign, np.arange(len(x))] = 1.0
    means = np.full((m, 3), 128.0)
    covs = np.tile(np.eye(3) * _FLAT_STD**2, (m, 1, 1))
    return _m_step(x, resp, means, covs)
