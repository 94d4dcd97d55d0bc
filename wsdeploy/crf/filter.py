"""Bilateral filtering of per-pixel values, shared by CRF inference and the dense-CRF loss.

What is computed (for one image, N = H*W pixels, values v of shape (N, C)):

    out_i = alpha * [S^T B S v]_i  ≈  c * sum_j exp(-|p_i - p_j|^2 / (2 sigma_xy^2)
                                                   -|I_i - I_j|^2 / (2 sigma_rgb^2)) v_j

with p the pixel position (x, y) and I its RGB colour. The sum runs over all pixels *including
j = i* (self weight 1) and is *not* normalised. S, B, S^T are the splat, blur and slice of a
permutohedral lattice on the features (x/sigma_xy, y/sigma_xy, r/sigma_rgb, g/sigma_rgb,
b/sigma_rgb) built with densecrf's scheme, so `out` is the operator that densecrf's
`Permutohedral::compute` applies, which is also the "W" of meng-tang/rloss's DenseCRF loss
(the loss weights published with it carry over).

Accuracy against the exact kernel (`wsdeploy.crf._reference.exact_filter`), measured on
GrabCut photographs at 80x60 and 160x120 by benchmarks/crf_filter_choice.py
(results/crf_filter_choice.json): the lattice's overall scale c is below 1 and depends on
how the pixels fill feature space (0.59-0.62 for the 5-D bilateral features, 0.88 for the 2-D
position-only kernel); after that scalar the relative L2 error is 5-7 % (bilateral) and
under 1 % (position only). The normalised filter out / filter(1), which is what the CRF's
symmetric normalisation sees, is within 0.4-2.7 %. Tests bound these at 12 %, 3 % and 5 %.
"""

from __future__ import annotations

import logging
import numbers

import torch

from ._lattice import build_lattice
from ._operator import LatticeOperator, make_operator

__all__ = ["bilateral_filter"]

logger = logging.getLogger(__name__)


def pixel_features(
    image: torch.Tensor | None, height: int, width: int, *, sigma_xy: float,
    sigma_rgb: float | None, device: torch.device,
) -> torch.Tensor:
    """(N, 2) or (N, 5) float32 features (x/sigma_xy, y/sigma_xy[, rgb/sigma_rgb]), raster order.

    Args:
        image: (H, W, 3) float32 in the units sigma_rgb is given in, or None for position only.
    """
    y = torch.arange(height, device=device, dtype=torch.float32) / sigma_xy
    x = torch.arange(width, device=device, dtype=torch.float32) / sigma_xy
    cols = [x.repeat(height), y.repeat_interleave(width)]
    if image is not None:
        if sigma_rgb is None:
            raise ValueError("sigma_rgb is required when an image is given")
        rgb = image.reshape(-1, 3).float() / sigma_rgb  # (N, 3)
        cols += [rgb[:, 0], rgb[:, 1], rgb[:, 2]]
    return torch.stack(cols, 1)


class _LatticeFilter(torch.autograd.Function):
    """Apply a fixed LatticeOperator; the backward applies its exact adjoint."""

    @staticmethod
    def forward(ctx, values: torch.Tensor, op: LatticeOperator) -> torch.Tensor:  # type: ignore[override]
        ctx.op = op
        return op(values)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return ctx.op(grad.contiguous(), transpose=True), None


def _channels_last(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 3, H, W) or (B, H, W, 3) -> (B, H, W, 3), using H and W to resolve ambiguity."""
    if image.ndim == 4 and image.shape[1:] == (3, height, width):
        return image.permute(0, 2, 3, 1)
    if image.ndim == 4 and image.shape[1:] == (height, width, 3):
        return image
    raise ValueError(
        f"expected image of shape (B, 3, {height}, {width}) or (B, {height}, {width}, 3), "
        f"got {tuple(image.shape)}"
    )


def bilateral_filter(
    values: torch.Tensor, image: torch.Tensor, *, sigma_xy: float, sigma_rgb: float,
) -> torch.Tensor:
    """Filter per-pixel values with the Gaussian kernel on (position, colour) of `image`.

    Computes, per image, out_i ≈ c * sum_j exp(-|p_i-p_j|²/2σ_xy² - |I_i-I_j|²/2σ_rgb²) v_j,
    self-interaction (j = i) included, unnormalised; see the module docstring for the exact
    operator (densecrf's / rloss's permutohedral lattice), its scale c and its error.

    Differentiable with respect to `values` (the backward pass applies the adjoint filter);
    not with respect to `image`. Runs on the device of `values` (CPU or CUDA).

    Args:
        values: (B, C, H, W) float16 / bfloat16 / float32 / float64, any range.
        image: (B, 3, H, W) or (B, H, W, 3) uint8 or float, RGB, in the units of sigma_rgb
            (0-255 for uint8 images and the usual sigma_rgb of 5-15).
        sigma_xy: spatial standard deviation in pixels, > 0.
        sigma_rgb: colour standard deviation in image units, > 0.

    Returns:
        (B, C, H, W), same dtype and device as `values`. Computed in float32 internally.
    """
    if not isinstance(values, torch.Tensor) or not isinstance(image, torch.Tensor):
        raise TypeError(
            f"values and image must be torch tensors, got {type(values).__name__} and "
            f"{type(image).__name__}"
        )
    if values.ndim != 4 or not values.is_floating_point():
        raise ValueError(f"expected values (B, C, H, W) float, got {tuple(values.shape)} {values.dtype}")
    for name, sigma in (("sigma_xy", sigma_xy), ("sigma_rgb", sigma_rgb)):
        if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real):
            raise TypeError(f"{name} must be a real number, got {type(sigma).__name__}")
        if not sigma > 0 or sigma == float("inf"):
            raise ValueError(f"{name} must be finite and > 0, got {sigma}")
    b, c, h, w = values.shape
    image = _channels_last(image, h, w)
    if image.shape[0] != b:
        raise ValueError(f"image batch {image.shape[0]} does not match values batch {b}")
    if image.dtype != torch.uint8 and not image.is_floating_point():
        raise TypeError(f"image must be uint8 or float, got {image.dtype}")
    image = image.to(values.device)
    outs = []
    for k in range(b):
        feats = pixel_features(image[k], h, w, sigma_xy=sigma_xy, sigma_rgb=sigma_rgb, device=values.device)
        op = make_operator([build_lattice(feats)], weights=[1.0], pixel_scales=[None])
        v = values[k].reshape(c, h * w).t().float().contiguous()  # (N, C)
        out = _LatticeFilter.apply(v, op)  # (N, C)
        outs.append(out.t().reshape(c, h, w))
    return torch.stack(outs, 0).to(values.dtype)
