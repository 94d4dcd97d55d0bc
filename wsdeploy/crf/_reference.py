"""Exact references for the CRF engine: dense O(N²) Gaussian filtering and mean field.

Only for small images and tests (N = H*W up to a few thousand pixels): memory is bounded by
processing `chunk` rows of the N x N kernel at a time (chunk * N floats), but time is O(N²).
The fast path (`wsdeploy.crf._lattice`) never calls into this module.
"""

from __future__ import annotations

import torch

from wsdeploy.crf.kernel import pixel_features
from wsdeploy.crf.params import CRFParams

__all__ = ["exact_filter", "exact_bilateral_filter", "exact_dense_crf"]


def exact_filter(features: torch.Tensor, values: torch.Tensor, *, chunk: int = 1024) -> torch.Tensor:
    """out_i = sum_j exp(-|f_i - f_j|² / 2) v_j, self-term (j = i) included, unnormalised.

    Args:
        features: (N, d) float, already divided by their sigmas.
        values: (N, C) float.
        chunk: rows of the kernel materialised at once (memory: chunk * N * 8 bytes).

    Returns:
        (N, C) float64.
    """
    f = features.double()
    v = values.double()
    sq = (f * f).sum(1)  # (N,)
    out = torch.empty(f.shape[0], v.shape[1], dtype=torch.float64, device=f.device)
    for start in range(0, f.shape[0], chunk):
        fi = f[start : start + chunk]
        d2 = (sq[start : start + chunk, None] + sq[None, :] - 2.0 * fi @ f.t()).clamp_(min=0.0)
        out[start : start + chunk] = torch.exp(-0.5 * d2) @ v
    return out


def exact_bilateral_filter(
    values: torch.Tensor, image: torch.Tensor, *, sigma_xy: float, sigma_rgb: float | None,
) -> torch.Tensor:
    """Exact counterpart of `wsdeploy.crf.bilateral_filter` for one image (c = 1).

    Args:
        values: (C, H, W) float.
        image: (H, W, 3) uint8 or float, or None with sigma_rgb None for position only.

    Returns:
        (C, H, W) float64.
    """
    c, h, w = values.shape
    feats = pixel_features(image, h, w, sigma_xy=sigma_xy, sigma_rgb=sigma_rgb, device=values.device)
    out = exact_filter(feats, values.reshape(c, h * w).t())
    return out.t().reshape(c, h, w)


def exact_dense_crf(image: torch.Tensor, probs: torch.Tensor, params: CRFParams) -> torch.Tensor:
    """Mean field of `wsdeploy.crf.dense_crf` with exact Gaussian kernels, one image.

    Args:
        image: (H, W, 3) uint8 RGB.
        probs: (K, H, W) float probabilities.

    Returns:
        (K, H, W) float64 probabilities.
    """
    k, h, w = probs.shape
    p = probs.reshape(k, h * w).t().double().clamp(1e-5, 1.0)  # (N, K)
    q = p / p.sum(1, keepdim=True)
    kernels = []
    for weight, img, sxy, srgb in (
        (params.gaussian_weight, None, params.gaussian_sigma_xy, None),
        (params.bilateral_weight, image, params.bilateral_sigma_xy, params.bilateral_sigma_rgb),
    ):
        if weight > 0:
            feats = pixel_features(img, h, w, sigma_xy=sxy, sigma_rgb=srgb, device=probs.device)
            norm = exact_filter(feats, torch.ones(h * w, 1, device=probs.device))[:, 0]
            kernels.append((feats, weight, norm.rsqrt()))
    for _ in range(params.iterations):
        logits = p.log()
        for feats, weight, scale in kernels:
            logits = logits + weight * scale[:, None] * exact_filter(feats, scale[:, None] * q)
        q = torch.softmax(logits, 1)
    return q.t().reshape(k, h, w)
