"""Mean-field inference for the fully connected CRF (Krähenbühl & Koltun, NIPS 2011).

Energy: unary -log p (p clipped to [1e-5, 1], as pydensecrf's `unary_from_softmax`) plus two
Potts pairwise terms, a bilateral (appearance) kernel and a Gaussian (smoothness) kernel, each
with densecrf's symmetric normalisation D K D, D = diag(K 1)^(-1/2). One iteration:

    Q <- softmax_k( log p + w_b D_b K_b D_b Q + w_g D_g K_g D_g Q )

which is pydensecrf's update: its message includes the pixel's own term (k_ii = 1, nothing is
subtracted) and Potts compatibility -w. The appearance kernel runs on the same permutohedral
lattice as pydensecrf's (`wsdeploy.crf.BilateralKernel`, as CSR matrices), built once per
image; the smoothness kernel, position only, runs as a separable filter on a coarse grid
(`wsdeploy.crf._grid`), which costs nothing to build. Labels agree with pydensecrf on more
than 99.9 % of pixels on photographs (tests/wsdeploy/test_crf_pydensecrf.py,
benchmarks/crf.py). Every step is a device-agnostic torch op, computed in float32 whatever
the input precision; the only host syncs are the lattice sizes and one scalar per iteration.
"""

from __future__ import annotations

import logging
from typing import TypeVar

import numpy as np
import torch

from wsdeploy.crf._grid import SeparableGaussian, build_separable_gaussian
from wsdeploy.crf.kernel import BilateralKernel
from wsdeploy.crf.params import CRFParams

__all__ = ["dense_crf"]

logger = logging.getLogger(__name__)

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)

_PROB_CLIP = 1e-5  # pydensecrf.utils.unary_from_softmax's default clip
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def dense_crf(
    image: np.ndarray | torch.Tensor,
    probs: ArrayOrTensor,
    *,
    iterations: int = 10,
    bilateral_weight: float = 10.0,
    bilateral_sigma_xy: float = 80.0,
    bilateral_sigma_rgb: float = 13.0,
    gaussian_weight: float = 3.0,
    gaussian_sigma_xy: float = 3.0,
) -> ArrayOrTensor:
    """Refine per-pixel class probabilities with a fully connected CRF (mean field, Potts).

    Args:
        image: (H, W, 3) or (B, H, W, 3) uint8 RGB, numpy array or torch tensor (any device;
            moved to the device of `probs`).
        probs: (K, H, W) or (B, K, H, W) probabilities (>= 0, sum to 1 over K), numpy array
            or torch tensor, float16 / bfloat16 / float32 / float64, CPU or CUDA.
        iterations: mean-field iterations (>= 0).
        bilateral_weight, bilateral_sigma_xy, bilateral_sigma_rgb: appearance kernel
            (weight >= 0, sigmas > 0; sigma_rgb in 0-255 intensity units).
        gaussian_weight, gaussian_sigma_xy: smoothness kernel (weight >= 0, sigma > 0).
        See `CRFParams` for the defaults' provenance.

    Returns:
        Refined probabilities, same shape, type (numpy in, numpy out), dtype and device as
        `probs`; each pixel's K values are finite, >= 0 and sum to 1 (up to the dtype's
        rounding).

    Raises:
        TypeError: wrong container or dtype (image not uint8, probs not floating point).
        ValueError: shapes that do not match, values that are not probabilities, bad params.
    """
    params = CRFParams(
        iterations=iterations, bilateral_weight=bilateral_weight,
        bilateral_sigma_xy=bilateral_sigma_xy, bilateral_sigma_rgb=bilateral_sigma_rgb,
        gaussian_weight=gaussian_weight, gaussian_sigma_xy=gaussian_sigma_xy,
    )
    p, was_numpy = _as_tensor(probs, "probs")
    img, _ = _as_tensor(image, "image")
    if p.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"probs must be float16, bfloat16, float32 or float64, got {p.dtype}")
    if img.dtype != torch.uint8:
        raise TypeError(f"image must be uint8 RGB, got {img.dtype}")
    single = p.ndim == 3
    if p.ndim not in (3, 4):
        raise ValueError(f"expected probs (K, H, W) or (B, K, H, W), got {tuple(p.shape)}")
    pb = p[None] if single else p
    b, k, h, w = pb.shape
    expected = (h, w, 3) if single else (b, h, w, 3)
    if tuple(img.shape) != expected:
        raise ValueError(
            f"expected image of shape {expected} to match probs {tuple(p.shape)}, "
            f"got {tuple(img.shape)}"
        )
    if k < 1 or h < 1 or w < 1:
        raise ValueError(f"probs must have K, H, W >= 1, got {tuple(p.shape)}")
    _check_probabilities(pb)
    imgb = (img[None] if single else img).to(pb.device)
    # The smoothness kernel depends on the image size only: one serves the whole batch.
    smooth = None
    if params.gaussian_weight > 0 and params.iterations > 0:
        smooth = build_separable_gaussian(
            h, w, sigma=params.gaussian_sigma_xy, weight=params.gaussian_weight, device=pb.device
        )
    outs = [_mean_field(imgb[i], pb[i], params, smooth).to(p.dtype) for i in range(b)]
    out = outs[0] if single else torch.stack(outs, 0)
    return out.cpu().numpy() if was_numpy else out


def _as_tensor(x: object, name: str) -> tuple[torch.Tensor, bool]:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x)), True
    if isinstance(x, torch.Tensor):
        return x.detach(), False
    raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")


def _check_probabilities(p: torch.Tensor) -> None:
    """(B, K, H, W): finite, >= 0, sums to 1 over K within the dtype's tolerance."""
    pf = p.float()
    sums = pf.sum(1)  # (B, H, W); a NaN or Inf anywhere makes its sum non-finite
    if not bool(torch.isfinite(sums).all()):
        raise ValueError("probs contain NaN or Inf")
    low = float(pf.min())
    if low < -1e-3:
        raise ValueError(f"probs must be >= 0, got a minimum of {low:.4g}")
    tol = 1e-3 if p.dtype in (torch.float32, torch.float64) else 2e-2
    worst = float((sums - 1.0).abs().max())
    if worst > tol:
        raise ValueError(
            f"probs must sum to 1 over the class axis K (tolerance {tol}), got sums in "
            f"[{float(sums.min()):.4g}, {float(sums.max()):.4g}]; apply softmax first"
        )


def _mean_field(
    image: torch.Tensor, probs: torch.Tensor, params: CRFParams, smooth: SeparableGaussian | None,
) -> torch.Tensor:
    """One image: image (H, W, 3) uint8, probs (K, H, W) float -> (K, H, W) float32.

    `smooth` is the normalised, weighted smoothness kernel (None when its weight is 0).
    """
    k, h, w = probs.shape
    n = h * w
    p = probs.reshape(k, n).t().float().contiguous().clamp_(_PROB_CLIP, 1.0)  # (N, K) row-major
    q = p / p.sum(1, keepdim=True)
    appearance = None
    if params.bilateral_weight > 0 and params.iterations > 0:
        kernel = BilateralKernel(
            image.permute(2, 0, 1)[None].to(probs.device), sigma_xy=params.bilateral_sigma_xy,
            sigma_rgb=params.bilateral_sigma_rgb,
        )
        appearance = kernel.normalized_operator(weight=params.bilateral_weight)
    if appearance is None and smooth is None:
        return q.t().reshape(k, h, w)
    log_p = p.log_()  # (N, K), minus the unary
    for _ in range(params.iterations):
        logits = log_p
        if appearance is not None:
            logits = appearance(q, add_to=logits)  # (N, K)
        if smooth is not None:
            logits = smooth(q, add_to=logits)
        q = _softmax_rows(logits)
    return q.t().reshape(k, h, w)


def _softmax_rows(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over dim 1 of (N, K) logits, in place.

    The messages are >= 0 and log p >= log(1e-5), and every row has an entry >= -log K, so
    subtracting the global maximum (one cheap reduction) cannot underflow a whole row unless
    that maximum is huge; then fall back to the per-row maximum.
    """
    top = logits.max()
    if float(top) < 60.0:
        logits.sub_(top)
    else:
        logits.sub_(logits.amax(1, keepdim=True))
    logits.exp_()
    return logits.div_(logits.sum(1, keepdim=True))
