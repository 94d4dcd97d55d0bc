"""Dense (fully connected) pairwise losses on the network's softmax: the dense-CRF loss
(Tang et al., "On Regularized Losses for Weakly-supervised CNN Segmentation", ECCV 2018;
meng-tang/rloss) and the normalized-cut loss (Tang et al., CVPR 2018).

W is the Gaussian bilateral kernel on (position, colour) of the de-normalised image,

    W_pq = exp(-|p - q|^2 / 2 sigma_xy^2 - |I_p - I_q|^2 / 2 sigma_rgb^2),  self term included,

applied through `wsdeploy.crf.BilateralKernel` (a permutohedral lattice, so W is approximate
and carries the lattice's overall scale, exactly as in rloss). S is the softmax (B, K, H, W),
v the valid mask (0 on padding) and S~ = S * v, so padded pixels take no part.

    bilinear:   sum_k S~_k^T W (v - S~_k)               (Potts; the relaxation of rloss)
    quadratic:  sum_k S~_k^T (D - W) S~_k,  D = diag(W v)   (graph Laplacian, Weston et al.
                2012), = 1/2 sum_pq W_pq v_p v_q |S_p - S_q|^2 for a symmetric W (the lattice's
                operator is symmetric to a few %)

Normalisation: both are divided by the kernel mass over valid pairs, v^T W v (summed over the
batch). The loss is then the kernel-weighted fraction of pixel pairs whose labels disagree, in
[0, 1], whose scale does not depend on the image size, the sigmas, scale_factor or the
lattice's overall scale (all of which rescale W), so one weight means the same thing everywhere. The two relaxations agree on one-hot labellings.
Gradient per pixel is O(1 / #valid pixels), the scale of a mean-over-pixels loss.

Porting rloss: rloss returns -weight_r / B * sum_k S~_k^T W S~_k. With probabilities that sum
to 1 the bilinear loss here is 1 - sum_k S~_k^T W S~_k / (v^T W v), so the gradients agree for
weight = weight_r * (v^T W v) / B, computed on the downsampled image; `kernel_mass` returns that
mass per image. Measured on the 13 GrabCut photographs (513x513 crops, scale 0.5, sigma_rgb 15,
sigma_xy 100) the mass is 0.4e8-3.1e8 per image, mean 1.1e8, so rloss's published 2e-9 is
about 0.23 here (0.08-0.62 per image): 0.25 is a sensible default weight.
"""

from __future__ import annotations

import torch

from wsdeploy.crf import BilateralKernel
from wsdeploy.training.losses.checks import (
    check_image_valid,
    check_positive,
    check_probs,
    check_relaxation,
    check_scale_factor,
    compute_dtype,
    downsample,
)
from wsdeploy.training.losses.weighted import WeightedLoss

__all__ = [
    "DenseCRFLoss",
    "NormalizedCutLoss",
    "dense_crf_loss",
    "kernel_mass",
    "loss_kernel",
    "normalized_cut_loss",
]


def _filtered(
    probs: torch.Tensor, image: torch.Tensor | None, valid: torch.Tensor | None, *,
    sigma_rgb: float, sigma_xy: float, scale_factor: float, kernel: BilateralKernel | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check, downsample and filter once (K + 1 channels), in float32 or wider.

    With `kernel` (built by `loss_kernel` with the same settings) the image is not needed and
    no lattice is built. Returns v (B, 1, h, w) the valid mask as floats, S~ = S * v
    (B, K, h, w), the degree W v (B, 1, h, w) and W S~ (B, K, h, w).
    """
    check_probs(probs)
    if kernel is None and image is None:
        raise ValueError("give the image (B, 3, H, W) or a prebuilt kernel (loss_kernel)")
    valid = check_image_valid(probs, image, valid)
    sigma_rgb = check_positive("sigma_rgb", sigma_rgb)
    sigma_xy = check_positive("sigma_xy", sigma_xy)
    scale_factor = check_scale_factor(scale_factor)
    probs = probs.to(compute_dtype(probs.dtype))
    probs, image, valid = downsample(probs, image if kernel is None else None, valid, scale_factor)
    if kernel is not None and (kernel.batch, kernel.height, kernel.width) != (probs.shape[0], *probs.shape[2:]):
        raise ValueError(
            f"the kernel was built for {kernel.batch} images of {kernel.height}x{kernel.width} "
            f"but the loss works on {probs.shape[0]} of {probs.shape[2]}x{probs.shape[3]} (after "
            f"scale_factor {scale_factor}); build it with loss_kernel and the same settings"
        )
    v = valid[:, None].to(probs.dtype)  # (B, 1, h, w)
    s = probs * v  # (B, K, h, w), zero on padding
    with torch.autocast(probs.device.type, enabled=False):  # lattice and sparse products in float32
        if kernel is None:
            kernel = BilateralKernel(image, sigma_xy=sigma_xy * scale_factor, sigma_rgb=sigma_rgb)
        out = kernel(torch.cat([v, s], 1)).to(probs.dtype)  # (B, 1 + K, h, w)
    return v, s, out[:, :1], out[:, 1:]


def loss_kernel(
    image: torch.Tensor, *, sigma_rgb: float = 15.0, sigma_xy: float = 100.0, scale_factor: float = 0.5,
) -> BilateralKernel:
    """The bilateral kernel `dense_crf_loss` / `normalized_cut_loss` use for these settings:
    `image` downsampled by `scale_factor` (nearest, as rloss), sigma_xy scaled with it. Build it
    once per batch and pass it as `kernel=` to every loss with the same settings.

    Args:
        image: (B, 3, H, W) uint8 or float RGB in 0-255, on the device the losses run on.
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[1] != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"expected image (B, 3, H, W), got {shape}")
    sigma_rgb = check_positive("sigma_rgb", sigma_rgb)
    sigma_xy = check_positive("sigma_xy", sigma_xy)
    scale_factor = check_scale_factor(scale_factor)
    b, _, h, w = image.shape
    dummy = torch.empty((b, 1, h, w), device=image.device)
    valid = torch.ones((b, h, w), dtype=torch.bool, device=image.device)
    _, small, _ = downsample(dummy, image, valid, scale_factor)
    with torch.autocast(image.device.type, enabled=False):
        return BilateralKernel(small, sigma_xy=sigma_xy * scale_factor, sigma_rgb=sigma_rgb)


def dense_crf_loss(
    probs: torch.Tensor,
    image: torch.Tensor | None,
    valid: torch.Tensor | None = None,
    *,
    sigma_rgb: float = 15.0,
    sigma_xy: float = 100.0,
    scale_factor: float = 0.5,
    relaxation: str = "bilinear",
    kernel: BilateralKernel | None = None,
) -> torch.Tensor:
    """Dense-CRF (Potts) loss on the bilateral kernel, normalised by the kernel mass v^T W v.

    See the module docstring for the formulas. Differentiable with respect to `probs` only.

    Args:
        probs: (B, K, H, W) float, softmax over K (not checked), K >= 2.
        image: (B, 3, H, W) uint8 or float RGB in 0-255, the de-normalised input image, on the
            device of `probs`; None when `kernel` is given.
        valid: (B, H, W) bool, False on padding (254); None means every pixel is valid.
        sigma_rgb: colour standard deviation in 0-255 units, > 0 (rloss: 15).
        sigma_xy: spatial standard deviation in pixels of the full-resolution input, > 0
            (rloss: 100); multiplied by `scale_factor` with the image.
        scale_factor: downsampling of probs (bilinear), image and valid (nearest), in (0, 1].
        relaxation: "bilinear" (Potts, rloss) or "quadratic" (graph Laplacian).
        kernel: the batch's kernel from `loss_kernel` with the same settings, to skip building
            it; `image` may then be None.

    Returns:
        () scalar in probs' dtype, in [0, 1] for probabilities; 0 when no pixel is valid.
    """
    relaxation = check_relaxation(relaxation)
    v, s, degree, ws = _filtered(
        probs, image, valid, sigma_rgb=sigma_rgb, sigma_xy=sigma_xy, scale_factor=scale_factor,
        kernel=kernel,
    )
    mass = (v * degree).sum()  # v^T W v over the batch
    if relaxation == "bilinear":
        cut = (s * (degree - ws)).sum()  # sum_k S~_k^T W (v - S~_k)
    else:
        cut = (degree * s * s).sum() - (s * ws).sum()  # sum_k S~_k^T (D - W) S~_k
    return (cut / mass.clamp_min(torch.finfo(mass.dtype).tiny)).to(probs.dtype)


def normalized_cut_loss(
    probs: torch.Tensor,
    image: torch.Tensor | None,
    valid: torch.Tensor | None = None,
    *,
    sigma_rgb: float = 15.0,
    sigma_xy: float = 100.0,
    scale_factor: float = 0.5,
    kernel: BilateralKernel | None = None,
) -> torch.Tensor:
    """Normalized-cut loss sum_k S~_k^T W (v - S~_k) / (d^T S~_k), d = W v, mean over images.

    Each term is the fraction of class k's association that its soft segment cuts, so an
    image's value lies in [0, K]; images without a valid pixel are left out of the mean.
    Differentiable with respect to `probs` only.

    Args:
        probs: (B, K, H, W) float, softmax over K (not checked), K >= 2.
        image: (B, 3, H, W) uint8 or float RGB in 0-255, de-normalised, on probs' device.
        valid: (B, H, W) bool, False on padding (254); None means every pixel is valid.
        sigma_rgb, sigma_xy, scale_factor, kernel: as in `dense_crf_loss`.

    Returns:
        () scalar in probs' dtype; 0 when no pixel is valid.
    """
    v, s, degree, ws = _filtered(
        probs, image, valid, sigma_rgb=sigma_rgb, sigma_xy=sigma_xy, scale_factor=scale_factor,
        kernel=kernel,
    )
    cut = (s * (degree - ws)).flatten(2).sum(2)  # (B, K)
    assoc = (s * degree).flatten(2).sum(2)  # (B, K), d^T S~_k
    per_image = (cut / assoc.clamp_min(torch.finfo(assoc.dtype).tiny)).sum(1)  # (B,)
    images = v.flatten(1).amax(1).sum()  # images with a valid pixel
    return (per_image.sum() / images.clamp_min(1.0)).to(probs.dtype)


def kernel_mass(
    image: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    sigma_rgb: float = 15.0,
    sigma_xy: float = 100.0,
    scale_factor: float = 0.5,
) -> torch.Tensor:
    """Per-image kernel mass v^T W v on the downsampled image, the dense-CRF loss' normaliser.

    Multiply rloss's weight by its batch mean to get the equivalent weight here.

    Args:
        image: (B, 3, H, W) uint8 or float RGB in 0-255.
        valid: (B, H, W) bool, False on padding; None means every pixel is valid.
        sigma_rgb, sigma_xy, scale_factor: as in `dense_crf_loss`.

    Returns:
        (B,) float32 (float64 for a float64 image).
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"expected image (B, 3, H, W), got {shape}")
    dtype = image.dtype if image.is_floating_point() else torch.float32
    b, _, h, w = image.shape
    probs = torch.full((b, 2, h, w), 0.5, dtype=compute_dtype(dtype), device=image.device)
    v, _, degree, _ = _filtered(
        probs, image, valid, sigma_rgb=sigma_rgb, sigma_xy=sigma_xy, scale_factor=scale_factor,
        kernel=None,
    )
    return (v * degree).flatten(1).sum(1)


class DenseCRFLoss(WeightedLoss):
    """Weighted dense-CRF loss, `weight * dense_crf_loss(...)`; settings as there. The loss
    lies in [0, 1]; rloss's weight 2e-9 (scale 0.5, 513x513 crops) corresponds to about 0.25
    here (see the module docstring). Shapes: `WeightedLoss`; `kernel=` may be passed on a call."""

    loss = staticmethod(dense_crf_loss)

    def __init__(
        self, weight: float, *, sigma_rgb: float = 15.0, sigma_xy: float = 100.0,
        scale_factor: float = 0.5, relaxation: str = "bilinear",
    ) -> None:
        super().__init__(
            weight, sigma_rgb=check_positive("sigma_rgb", sigma_rgb),
            sigma_xy=check_positive("sigma_xy", sigma_xy), scale_factor=check_scale_factor(scale_factor),
            relaxation=check_relaxation(relaxation),
        )


class NormalizedCutLoss(WeightedLoss):
    """Weighted normalized-cut loss, `weight * normalized_cut_loss(...)`; settings as there.
    Shapes: `WeightedLoss`; `kernel=` may be passed on a call."""

    loss = staticmethod(normalized_cut_loss)

    def __init__(
        self, weight: float, *, sigma_rgb: float = 15.0, sigma_xy: float = 100.0, scale_factor: float = 0.5,
    ) -> None:
        super().__init__(
            weight, sigma_rgb=check_positive("sigma_rgb", sigma_rgb),
            sigma_xy=check_positive("sigma_xy", sigma_xy), scale_factor=check_scale_factor(scale_factor),
        )
