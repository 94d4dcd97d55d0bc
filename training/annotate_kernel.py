"""The bilateral kernel of one fixed image, built once, and the pairwise losses on it.

`wsdeploy.training.losses.dense_crf_loss` and `normalized_cut_loss` rebuild the permutohedral
lattice on every call, which is right for a training batch (new images every step) but costs
0.15-0.4 s per call on a 2-core CPU at 176x128 px. `annotate` fits a model to *one* image for
a few hundred steps, so it builds the lattice once here and applies it each step (about 4 ms
forward and backward at that size). The operator is the one `wsdeploy.crf.bilateral_filter`
applies, and the formulas and their normalisation are those of `wsdeploy.training.loss_dense`
(the bilinear Potts relaxation divided by the kernel mass v^T W v; the normalized cut summed
over classes), so for an all-valid image

    dense_crf_term(probs, ImageKernel(image, ...)) == dense_crf_loss(probs, image, scale_factor=1)

up to float rounding (tested in tests/training/test_annotate.py).
"""

from __future__ import annotations

import torch

from wsdeploy.crf._lattice import build_lattice
from wsdeploy.crf._operator import make_operator
from wsdeploy.crf.filter import _LatticeFilter, pixel_features

__all__ = ["ImageKernel", "dense_crf_term", "normalized_cut_term"]


class ImageKernel:
    """W_pq = c * exp(-|p - q|^2 / 2 sigma_xy^2 - |I_p - I_q|^2 / 2 sigma_rgb^2) of one image.

    Args:
        image: (H, W, 3) uint8 or float RGB, 0-255 units, any device (the kernel lives there).
        sigma_xy: spatial standard deviation in pixels of `image`, > 0.
        sigma_rgb: colour standard deviation in 0-255 units, > 0.
    """

    def __init__(self, image: torch.Tensor, *, sigma_xy: float, sigma_rgb: float) -> None:
        if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[2] != 3:
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f"expected image (H, W, 3), got {shape}")
        for name, value in (("sigma_xy", sigma_xy), ("sigma_rgb", sigma_rgb)):
            if not float(value) > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        self.height, self.width = int(image.shape[0]), int(image.shape[1])
        feats = pixel_features(
            image.float(), self.height, self.width, sigma_xy=float(sigma_xy),
            sigma_rgb=float(sigma_rgb), device=image.device,
        )  # (N, 5)
        self._op = make_operator([build_lattice(feats)], weights=[1.0], pixel_scales=[None])
        ones = torch.ones(1, self.height, self.width, device=image.device)
        self.degree = self(ones)  # (1, H, W), W 1
        self.mass = self.degree.sum()  # 1^T W 1

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        """(C, H, W) float -> (C, H, W) float32, W applied per channel; differentiable."""
        c, h, w = values.shape
        if (h, w) != (self.height, self.width):
            raise ValueError(f"expected values (C, {self.height}, {self.width}), got {tuple(values.shape)}")
        v = values.reshape(c, h * w).t().float().contiguous()  # (N, C)
        return _LatticeFilter.apply(v, self._op).t().reshape(c, h, w)


def dense_crf_term(probs: torch.Tensor, kernel: ImageKernel) -> torch.Tensor:
    """Bilinear dense-CRF (Potts) loss sum_k S_k^T W (1 - S_k) / 1^T W 1, in [0, 1].

    Args:
        probs: (K, H, W) float, softmax over K.
        kernel: the image's kernel, same H, W.

    Returns:
        () float32 scalar.
    """
    ws = kernel(probs)  # (K, H, W)
    cut = (probs * (kernel.degree - ws)).sum()
    return cut / kernel.mass


def normalized_cut_term(probs: torch.Tensor, kernel: ImageKernel) -> torch.Tensor:
    """Normalized-cut loss sum_k S_k^T W (1 - S_k) / (d^T S_k), d = W 1, in [0, K].

    Args:
        probs: (K, H, W) float, softmax over K.
        kernel: the image's kernel, same H, W.

    Returns:
        () float32 scalar.
    """
    ws = kernel(probs)  # (K, H, W)
    cut = (probs * (kernel.degree - ws)).flatten(1).sum(1)  # (K,)
    assoc = (probs * kernel.degree).flatten(1).sum(1)  # (K,)
    return (cut / assoc.clamp_min(torch.finfo(assoc.dtype).tiny)).sum()
