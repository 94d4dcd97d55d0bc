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

import torch

from wsdeploy.crf.kernel import BilateralKernel, check_sigma

__all__ = ["bilateral_filter"]


def bilateral_filter(
    values: torch.Tensor, image: torch.Tensor, *, sigma_xy: float, sigma_rgb: float,
) -> torch.Tensor:
    """Filter per-pixel values with the Gaussian kernel on (position, colour) of `image`.

    Computes, per image, out_i ≈ c * sum_j exp(-|p_i-p_j|²/2σ_xy² - |I_i-I_j|²/2σ_rgb²) v_j,
    self-interaction (j = i) included, unnormalised; see the module docstring for the exact
    operator (densecrf's / rloss's permutohedral lattice), its scale c and its error. A one-off
    `BilateralKernel(image, ...)(values)`; build the kernel yourself to apply it many times.

    Differentiable with respect to `values` (the backward pass applies the adjoint filter);
    not with respect to `image`. Runs on the device of `values` (CPU or CUDA).

    Args:
        values: (B, C, H, W) float16 / bfloat16 / float32 / float64, any range.
        image: (B, 3, H, W) uint8 or float, RGB, in the units of sigma_rgb (0-255 for uint8
            images and the usual sigma_rgb of 5-15).
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
    check_sigma("sigma_xy", sigma_xy)
    check_sigma("sigma_rgb", sigma_rgb)
    b, _, h, w = values.shape
    if image.ndim != 4 or tuple(image.shape[1:]) != (3, h, w):
        raise ValueError(f"expected image of shape (B, 3, {h}, {w}) RGB, got {tuple(image.shape)}")
    if image.shape[0] != b:
        raise ValueError(f"image batch {image.shape[0]} does not match values batch {b}")
    kernel = BilateralKernel(image.to(values.device), sigma_xy=sigma_xy, sigma_rgb=sigma_rgb)
    return kernel(values).to(values.dtype)
