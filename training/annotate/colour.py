"""Per-class colour model of one image, fitted on its scribbled pixels: a Gaussian mixture in RGB
per class (GrabCut's colour model, Rother et al. 2004), and its per-pixel class log-posterior.

`annotate` fits the network to this posterior on every pixel with a small weight (next to
the partial cross-entropy on the strokes), so no pixel far from the strokes is left to the
network's arbitrary extrapolation (see `AnnotateConfig` for the measurements). The mixture is fitted with a few EM iterations from a k-means++ start; full 3x3
covariances, with `_COV_FLOOR` added to the diagonal so a stroke over a flat region (one
colour) still gives a proper density.

    model = fit_colour_model(image, scribbles, num_classes=2)     # numpy, RGB 0-255
    log_post = colour_log_posterior(model, image)                 # (K, H, W) float32, <= 0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ColourModel", "colour_log_likelihood", "colour_log_posterior", "fit_colour_model"]

_COV_FLOOR = 9.0  # added to covariance diagonals, (0-255 units)^2: a 3-level std floor
_MAX_PIXELS = 20000  # scribbled pixels per class used for fitting (a seeded random subset beyond)


@dataclass(frozen=True)
class ColourModel:
    """One Gaussian mixture per class in RGB (0-255).

    Attributes:
        weights: (K, M) float64 mixing weights, each row sums to 1 (unused components weigh 0).
        means: (K, M, 3) float64.
        precision_chol: (K, M, 3, 3) float64, L with L L^T = inverse covariance.
        log_norm: (K, M) float64, log weight + log det L - 1.5 log(2 pi).
    """

    weights: np.ndarray
    means: np.ndarray
    precision_chol: np.ndarray
    log_norm: np.ndarray


def fit_colour_model(
    image: np.ndarray, scribbles: np.ndarray, *, num_classes: int, components: int = 5,
    iterations: int = 10, seed: int = 0,
) -> ColourModel:
    """Fit one RGB Gaussian mixture per class on the pixels scribbled with that class.

    Args:
        image: (H, W, 3) uint8 RGB.
        scribbles: (H, W) integer class indices, 255 unlabelled.
        num_classes: K; a class without a scribbled pixel gets a flat density (a single
            Gaussian of std 128 around mid-grey), so it is never favoured by colour.
        components: M, Gaussians per class, >= 1 (fewer are used when a class has fewer
            distinct pixels).
        iterations: EM iterations after the k-means++ start, >= 0.
        seed: seeds the k-means++ start and the subsampling.

    Returns:
        ColourModel with K mixtures of M components.

    Raises:
        ValueError: shapes that do not match, components < 1 or iterations < 0.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != scribbles.shape:
        raise ValueError(f"expected image (H, W, 3) and scribbles (H, W), got {image.shape} and {scribbles.shape}")
    if components < 1 or iterations < 0:
        raise ValueError(f"components must be >= 1 and iterations >= 0, got {components} and {iterations}")
    rng = np.random.default_rng(seed)
    m = components
    weights = np.zeros((num_classes, m))
    means = np.zeros((num_classes, m, 3))
    covs = np.tile(np.eye(3), (num_classes, m, 1, 1))
    for k in range(num_classes):
        x = image[scribbles == k].astype(np.float64)  # (P, 3)
        if len(x) > _MAX_PIXELS:
            x = x[rng.choice(len(x), _MAX_PIXELS, replace=False)]
        if len(x) == 0:
            weights[k, 0], means[k, 0], covs[k, 0] = 1.0, 128.0, np.eye(3) * 128.0**2
            continue
        w_k, mu_k, cov_k = _em(x, m, iterations, rng)
        weights[k, : len(w_k)], means[k, : len(w_k)], covs[k, : len(w_k)] = w_k, mu_k, cov_k
    precision_chol = np.linalg.cholesky(np.linalg.inv(covs))  # (K, M, 3, 3)
    log_det = np.log(np.diagonal(precision_chol, axis1=-2, axis2=-1)).sum(-1)  # (K, M)
    with np.errstate(divide="ignore"):
        log_norm = np.log(weights) + log_det - 1.5 * np.log(2 * np.pi)
    return ColourModel(weights=weights, means=means, precision_chol=precision_chol, log_norm=log_norm)


def colour_log_likelihood(model: ColourModel, image: np.ndarray) -> np.ndarray:
    """log p(colour | class) of every pixel: (H, W, 3) uint8 -> (K, H, W) float32."""
    h, w, _ = image.shape
    x = image.reshape(-1, 3).astype(np.float64)  # (N, 3)
    k, m = model.weights.shape
    out = np.empty((k, h * w))
    for c in range(k):
        per = np.full((m, h * w), -np.inf)
        for j in range(m):
            if model.weights[c, j] <= 0:
                continue
            z = (x - model.means[c, j]) @ model.precision_chol[c, j]  # (N, 3)
            per[j] = model.log_norm[c, j] - 0.5 * np.einsum("nd,nd->n", z, z)
        top = per.max(0)
        out[c] = top + np.log(np.exp(per - top).sum(0))
    return out.reshape(k, h, w).astype(np.float32)


def colour_log_posterior(model: ColourModel, image: np.ndarray) -> np.ndarray:
    """log p(class | colour) with equal class priors: (H, W, 3) uint8 -> (K, H, W) float32,
    <= 0, logsumexp over K is 0."""
    ll = colour_log_likelihood(model, image)
    top = ll.max(0, keepdims=True)
    return ll - (top + np.log(np.exp(ll - top).sum(0, keepdims=True)))


def _em(x: np.ndarray, m: int, iterations: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Gaussian mixture of x (P, 3): weights (m',), means (m', 3), covariances (m', 3, 3)."""
    distinct = np.unique(x, axis=0)
    m = min(m, len(distinct))
    centres = _kmeans_pp(distinct, m, rng)
    resp = np.zeros((len(x), m))
    resp[np.arange(len(x)), ((x[:, None] - centres[None]) ** 2).sum(-1).argmin(1)] = 1.0  # (P, m)
    eye = np.eye(3) * _COV_FLOOR
    for it in range(iterations + 1):
        nk = resp.sum(0) + 1e-10  # (m,)
        weights = nk / nk.sum()
        means = resp.T @ x / nk[:, None]  # (m, 3)
        d = x[:, None] - means[None]  # (P, m, 3)
        covs = np.einsum("pm,pmi,pmj->mij", resp, d, d) / nk[:, None, None] + eye
        if it == iterations:
            break
        chol = np.linalg.cholesky(np.linalg.inv(covs))  # (m, 3, 3)
        z = np.einsum("pmi,mij->pmj", d, chol)
        log_det = np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(-1)
        log_p = np.log(weights) + log_det - 0.5 * (z**2).sum(-1)  # (P, m), constants cancel
        log_p -= log_p.max(1, keepdims=True)
        resp = np.exp(log_p)
        resp /= resp.sum(1, keepdims=True)
    return weights, means, covs


def _kmeans_pp(x: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: m rows of x (P, 3), spread out."""
    centres = [x[rng.integers(len(x))]]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, m):
        total = d2.sum()
        idx = rng.choice(len(x), p=d2 / total) if total > 0 else rng.integers(len(x))
        centres.append(x[idx])
        d2 = np.minimum(d2, ((x - x[idx]) ** 2).sum(1))
    return np.stack(centres)
