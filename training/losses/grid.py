"""Grid Potts loss: the contrast-sensitive pairwise term on the 4- or 8-connected pixel grid
(Boykov & Jolly, ICCV 2001), relaxed on the network's softmax as in Tang et al., "On Regularized
Losses for Weakly-supervised CNN Segmentation" (ECCV 2018).

For neighbouring pixels p, q (offsets (0, 1), (1, 0), and with 8 neighbours (1, 1), (1, -1)):

    w_pq = exp(-|I_p - I_q|^2 / 2 sigma_rgb^2) / |p - q|,   |p - q| = 1 or sqrt(2)

and W the symmetric (N, N) matrix of these weights (zero diagonal). With S~ = S * v (v the
valid mask), the two relaxations and the normalisation are those of the dense-CRF loss
(`wsdeploy.training.losses.dense`):

    bilinear:   sum_k S~_k^T W (v - S~_k)        / v^T W v
    quadratic:  sum_k S~_k^T (D - W) S~_k        / v^T W v  = sum_{p~q} w_pq |S_p - S_q|^2 / (2 sum_{p~q} w_pq)

i.e. the weighted fraction of neighbouring pairs whose labels disagree, in [0, 1]. Exact (no
approximation), a handful of shifted tensor ops, any device.
"""

from __future__ import annotations

import math

import torch

from wsdeploy.training.losses.checks import (
    check_image_valid,
    check_positive,
    check_probs,
    check_relaxation,
    compute_dtype,
)
from wsdeploy.training.losses.weighted import WeightedLoss

__all__ = ["GridPottsLoss", "grid_potts_loss"]

# (dy, dx, distance): each unordered neighbour pair once
_OFFSETS = {
    4: ((0, 1, 1.0), (1, 0, 1.0)),
    8: ((0, 1, 1.0), (1, 0, 1.0), (1, 1, math.sqrt(2.0)), (1, -1, math.sqrt(2.0))),
}


def _pair(x: torch.Tensor, dy: int, dx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., H, W) -> x_p, x_q (..., H - dy, W - |dx|) with q = p + (dy, dx), dy >= 0."""
    h, w = x.shape[-2:]
    if dx >= 0:
        return x[..., : h - dy, : w - dx], x[..., dy:, dx:]
    return x[..., : h - dy, -dx:], x[..., dy:, : w + dx]


def grid_potts_loss(
    probs: torch.Tensor,
    image: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    neighbours: int = 4,
    sigma_rgb: float = 15.0,
    relaxation: str = "bilinear",
) -> torch.Tensor:
    """Contrast-sensitive Potts loss on the pixel grid, normalised by the total edge weight.

    Differentiable with respect to `probs` only.

    Args:
        probs: (B, K, H, W) float, softmax over K (not checked), K >= 2.
        image: (B, 3, H, W) uint8 or float RGB in 0-255, de-normalised, on probs' device.
        valid: (B, H, W) bool, False on padding (254); None means every pixel is valid.
            A pair takes part only when both pixels are valid.
        neighbours: 4 or 8.
        sigma_rgb: colour standard deviation of the contrast weight, 0-255 units, > 0.
        relaxation: "bilinear" (Potts) or "quadratic" (graph Laplacian).

    Returns:
        () scalar in probs' dtype, in [0, 1] for probabilities; 0 when no pair is valid.
    """
    check_probs(probs)
    valid = check_image_valid(probs, image, valid)
    if neighbours not in _OFFSETS:
        raise ValueError(f"neighbours must be 4 or 8, got {neighbours!r}")
    sigma_rgb = check_positive("sigma_rgb", sigma_rgb)
    relaxation = check_relaxation(relaxation)
    dtype = compute_dtype(probs.dtype)
    v = valid[:, None].to(dtype)  # (B, 1, H, W)
    s = probs.to(dtype) * v  # (B, K, H, W)
    image = image.to(dtype)
    cut = s.new_zeros(())
    mass = s.new_zeros(())
    for dy, dx, dist in _OFFSETS[neighbours]:
        i_p, i_q = _pair(image, dy, dx)
        v_p, v_q = _pair(v, dy, dx)
        s_p, s_q = _pair(s, dy, dx)  # (B, K, H - dy, W - |dx|)
        contrast = ((i_p - i_q) ** 2).sum(1, keepdim=True)  # (B, 1, H - dy, W - |dx|)
        w = torch.exp(contrast / (-2.0 * sigma_rgb**2)) * (v_p * v_q / dist)
        if relaxation == "bilinear":  # both orders: sum_k S_p (1 - S_q) + S_q (1 - S_p)
            term = s_p.sum(1, keepdim=True) + s_q.sum(1, keepdim=True)
            term = term - 2.0 * (s_p * s_q).sum(1, keepdim=True)
        else:  # both orders of 1/2 w |S_p - S_q|^2
            term = ((s_p - s_q) ** 2).sum(1, keepdim=True)
        cut = cut + (w * term).sum()
        mass = mass + 2.0 * w.sum()  # ordered pairs, v^T W v
    return (cut / mass.clamp_min(torch.finfo(dtype).tiny)).to(probs.dtype)


class GridPottsLoss(WeightedLoss):
    """Weighted grid Potts loss, `weight * grid_potts_loss(...)`; settings as there. The loss
    lies in [0, 1]. Shapes: `WeightedLoss`."""

    loss = staticmethod(grid_potts_loss)

    def __init__(
        self, weight: float, *, neighbours: int = 4, sigma_rgb: float = 15.0, relaxation: str = "bilinear",
    ) -> None:
        if neighbours not in _OFFSETS:
            raise ValueError(f"neighbours must be 4 or 8, got {neighbours!r}")
        super().__init__(
            weight, neighbours=int(neighbours), sigma_rgb=check_positive("sigma_rgb", sigma_rgb),
            relaxation=check_relaxation(relaxation),
        )
