"""Shared argument checks and preprocessing for the training losses (`wsdeploy.training.losses`).

Only cheap checks live here: types, shapes, devices and settings. Values (probabilities that
sum to 1, labels below K) are not checked, since that would synchronise the GPU every step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from wsdeploy.settings import real_number

__all__ = [
    "check_probs",
    "check_image_valid",
    "check_label_map",
    "check_positive",
    "check_relaxation",
    "check_scale_factor",
    "check_weight",
    "compute_dtype",
    "downsample",
]

RELAXATIONS = ("bilinear", "quadratic")


def check_probs(probs: torch.Tensor, name: str = "probs") -> None:
    """Raise unless `probs` is a (B, K, H, W) floating tensor with K >= 2."""
    if not isinstance(probs, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(probs).__name__}")
    if probs.ndim != 4:
        raise ValueError(f"expected {name} of shape (B, K, H, W), got {tuple(probs.shape)}")
    if not probs.is_floating_point():
        raise TypeError(f"expected {name} to be a float tensor, got {probs.dtype}")
    if probs.shape[1] < 2:
        raise ValueError(
            f"expected K >= 2 classes in {name} (B, K, H, W), got K={probs.shape[1]} "
            f"(binary segmentation uses two channels, background and foreground)"
        )


def check_label_map(
    labels: torch.Tensor, like: torch.Tensor, *, name: str, like_name: str, hint: str = ""
) -> None:
    """Raise unless `labels` is an integer (B, H, W) tensor matching `like` (B, K, H, W) in
    batch, size and device; `hint` is appended to the shape error."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(labels).__name__}")
    b, _, h, w = like.shape
    if tuple(labels.shape) != (b, h, w):
        raise ValueError(
            f"expected {name} (B, H, W) = {(b, h, w)} to match {like_name} {tuple(like.shape)}, "
            f"got {tuple(labels.shape)}{hint}"
        )
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"expected {name} to be an integer tensor (int64), got {labels.dtype}")
    if labels.device != like.device:
        verb = "are" if name.endswith("s") else "is"
        raise ValueError(f"{name} {verb} on {labels.device} but {like_name} on {like.device}")


def check_image_valid(
    probs: torch.Tensor, image: torch.Tensor | None, valid: torch.Tensor | None
) -> torch.Tensor:
    """Check `image` (B, 3, H, W) and `valid` (B, H, W) bool against probs (B, K, H, W).

    Returns `valid`, or an all-True mask when it is None. `image` may be None (losses that
    ignore it); both must live on the device of `probs`.
    """
    b, _, h, w = probs.shape
    if image is not None:
        if not isinstance(image, torch.Tensor):
            raise TypeError(f"image must be a torch.Tensor, got {type(image).__name__}")
        if tuple(image.shape) != (b, 3, h, w):
            raise ValueError(
                f"expected image of shape (B, 3, H, W) = {(b, 3, h, w)} to match probs "
                f"{tuple(probs.shape)}, got {tuple(image.shape)}"
            )
        if image.dtype != torch.uint8 and not image.is_floating_point():
            raise TypeError(f"expected image uint8 or float (RGB 0-255), got {image.dtype}")
        if image.device != probs.device:
            raise ValueError(
                f"image is on {image.device} but probs on {probs.device}; move the image to "
                f"the network's device (the loss runs there, without a host round trip)"
            )
    if valid is None:
        return torch.ones((b, h, w), dtype=torch.bool, device=probs.device)
    if not isinstance(valid, torch.Tensor):
        raise TypeError(f"valid must be a torch.Tensor, got {type(valid).__name__}")
    if tuple(valid.shape) != (b, h, w):
        raise ValueError(
            f"expected valid of shape (B, H, W) = {(b, h, w)} to match probs "
            f"{tuple(probs.shape)}, got {tuple(valid.shape)}"
        )
    if valid.dtype != torch.bool:
        raise TypeError(f"expected valid to be a bool tensor (False on padding), got {valid.dtype}")
    if valid.device != probs.device:
        raise ValueError(f"valid is on {valid.device} but probs on {probs.device}")
    return valid


def check_positive(name: str, value: object) -> float:
    """Return `value` as a float, raising unless it is finite and > 0."""
    x = real_number(name, value, finite=False)
    if not (x > 0 and math.isfinite(x)):
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return x


def check_weight(value: object) -> float:
    """Return a loss weight as a float, raising unless it is finite and >= 0."""
    x = real_number("weight", value, finite=False)
    if not (x >= 0 and math.isfinite(x)):
        raise ValueError(f"weight must be finite and >= 0, got {value}")
    return x


def check_scale_factor(value: object) -> float:
    """Return `scale_factor` as a float, raising unless 0 < value <= 1."""
    x = real_number("scale_factor", value, finite=False)
    if not 0 < x <= 1:
        raise ValueError(f"scale_factor must be in (0, 1], got {value}")
    return x


def check_relaxation(value: object) -> str:
    """Return `relaxation`, raising unless it is 'bilinear' or 'quadratic'."""
    if value not in RELAXATIONS:
        raise ValueError(f"relaxation must be one of {RELAXATIONS}, got {value!r}")
    return str(value)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half inputs (sums over many pixels), else the input's own float dtype."""
    return torch.promote_types(dtype, torch.float32)


def downsample(
    probs: torch.Tensor, image: torch.Tensor | None, valid: torch.Tensor, scale_factor: float
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Resize by `scale_factor` as meng-tang/rloss does before its dense-CRF loss.

    Probabilities bilinearly (align_corners=False, so they still sum to 1 over K), the image
    with nearest neighbour (rloss' choice: colours stay unblended across edges). A downsampled
    pixel is valid when every pixel its bilinear stencil reads (weight > 1e-3) is valid, so
    probabilities on padding take no part (rloss samples its mask with nearest neighbour and
    lets them leak in at the border). Output size floor(H * scale_factor), floor(W * scale_factor).

    Args:
        probs: (B, K, H, W) float.
        image: (B, 3, H, W) uint8 or float, or None (a prebuilt kernel stands for it).
        valid: (B, H, W) bool.

    Returns:
        probs (B, K, h, w) in probs' dtype, image (B, 3, h, w) float32 or float64 (None for
        None), valid (B, h, w) bool.
    """
    if image is not None:
        image = image.to(compute_dtype(image.dtype) if image.is_floating_point() else torch.float32)
    if scale_factor == 1.0:
        return probs, image, valid
    h, w = probs.shape[2:]
    if int(h * scale_factor) < 1 or int(w * scale_factor) < 1:
        raise ValueError(
            f"scale_factor {scale_factor} shrinks the {h}x{w} input to nothing; expected "
            f"H * scale_factor >= 1 and W * scale_factor >= 1"
        )
    probs = F.interpolate(probs, scale_factor=scale_factor, mode="bilinear", align_corners=False)
    if image is not None:
        image = F.interpolate(image, scale_factor=scale_factor, mode="nearest")
    # a low-resolution pixel is valid only if its bilinear stencil is (weights > 1e-3), so
    # padded probabilities never leak into the loss
    mask_dtype = image.dtype if image is not None else compute_dtype(probs.dtype)
    mask = F.interpolate(valid[:, None].to(mask_dtype), scale_factor=scale_factor,
                         mode="bilinear", align_corners=False)
    return probs, image, mask[:, 0] >= 1 - 1e-3
