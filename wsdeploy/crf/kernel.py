"""The Gaussian bilateral kernel of a batch of images: built once, applied many times.

For image b with N = H*W pixels, positions p and RGB colours I,

    W_pq = c * exp(-|p - q|^2 / (2 sigma_xy^2) - |I_p - I_q|^2 / (2 sigma_rgb^2)),

self term (q = p) included, unnormalised, applied as a permutohedral lattice's splat / blur /
slice (densecrf's scheme; see `wsdeploy.crf.filter` for the scale c and the error). Building
the lattice (hashing the N feature vectors) is the expensive part; applying it is two sparse
products and a blur. One `BilateralKernel` serves every consumer of the kernel:

    kernel = BilateralKernel(images, sigma_xy=80.0, sigma_rgb=13.0)   # (B, 3, H, W) RGB 0-255
    out = kernel(values)            # (B, C, H, W) -> (B, C, H, W), differentiable (exact adjoint)
    degree = kernel.degree          # (B, 1, H, W) = W 1, computed once on first use

- `wsdeploy.crf.dense_crf` (mean-field inference, with the symmetric normalisation),
- the dense-CRF and normalized-cut training losses (`wsdeploy.training.losses.dense`), and
- `wsdeploy.training.annotate`, which fits one image for hundreds of steps on one kernel.

Image convention: (B, 3, H, W), uint8 or float, RGB in the units of sigma_rgb (0-255 for
uint8), on any device; the kernel lives on that device. Nothing is guessed from the shape.
"""

from __future__ import annotations

import torch

from wsdeploy.crf._lattice import build_lattice, concat_lattices
from wsdeploy.crf._operator import LatticeOperator, lattice_norm, make_operator
from wsdeploy.settings import real_number

__all__ = ["BilateralKernel", "check_sigma", "pixel_features"]


def check_sigma(name: str, sigma: object) -> float:
    """`sigma` as a float; TypeError unless a real number, ValueError unless finite and > 0."""
    value = real_number(name, sigma, finite=False)
    if not 0 < value < float("inf"):
        raise ValueError(f"{name} must be finite and > 0, got {sigma}")
    return value


def pixel_features(
    image: torch.Tensor | None, height: int, width: int, *, sigma_xy: float,
    sigma_rgb: float | None, device: torch.device | str,
) -> torch.Tensor:
    """(N, 2) or (N, 5) float32 features (x/sigma_xy, y/sigma_xy[, rgb/sigma_rgb]), raster order.

    Args:
        image: (H, W, 3) uint8 or float in the units sigma_rgb is given in, or None for a
            position-only kernel.
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


_JOINT_BUILD_PIXELS = 1 << 16  # CPU batches up to this many pixels build one joint lattice


class _ApplyOperator(torch.autograd.Function):
    """Apply a fixed LatticeOperator to (N, C) values; the backward applies its exact adjoint
    (the lattice is not exactly symmetric, up to 31 % on tiny images, so re-applying the
    forward operator to the gradient would be wrong)."""

    @staticmethod
    def forward(ctx, values: torch.Tensor, op: LatticeOperator) -> torch.Tensor:  # type: ignore[override]
        ctx.op = op
        return op(values)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return ctx.op(grad.contiguous(), transpose=True), None


class BilateralKernel:
    """The bilateral kernel W of each image of a batch (see the module docstring).

    Args:
        image: (B, 3, H, W) uint8 or float RGB in the units of `sigma_rgb` (0-255 for uint8).
        sigma_xy: spatial standard deviation in pixels of `image`, > 0.
        sigma_rgb: colour standard deviation in image units, > 0.

    Attributes:
        batch, height, width: the images' B, H, W.
        device: where the kernel lives (the image's device).
    """

    def __init__(self, image: torch.Tensor, *, sigma_xy: float, sigma_rgb: float) -> None:
        if not isinstance(image, torch.Tensor):
            raise TypeError(f"image must be a torch tensor, got {type(image).__name__}")
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected image (B, 3, H, W) RGB, got {tuple(image.shape)}")
        if image.dtype != torch.uint8 and not image.is_floating_point():
            raise TypeError(f"image must be uint8 or float, got {image.dtype}")
        self.sigma_xy = check_sigma("sigma_xy", sigma_xy)
        self.sigma_rgb = check_sigma("sigma_rgb", sigma_rgb)
        self.batch, _, self.height, self.width = (int(s) for s in image.shape)
        self.device = image.device
        pixels = image.permute(0, 2, 3, 1)  # (B, H, W, 3), a view
        features = torch.stack([
            pixel_features(pixels[b], self.height, self.width, sigma_xy=self.sigma_xy,
                           sigma_rgb=self.sigma_rgb, device=self.device)
            for b in range(self.batch)
        ])  # (B, N, 5)
        # One lattice for the batch (B * N pixels), built jointly or image by image and joined:
        # the same lattice entry for entry, so the choice is only about speed. On CPU the joint
        # build wins up to ~64k pixels (8 x 64^2: 16% faster) and the joined single builds
        # beyond (8 x 128^2: 23% faster), where the joint sorts and searches over B * N grow
        # faster (benchmarks/results/kernel_batch.json); on a GPU one build saves B rounds of
        # kernel launches. Joined also when the joint hash codes would not fit in 53 bits.
        self.lattice = None
        joint = self.device.type != "cpu" or self.batch * self.height * self.width <= _JOINT_BUILD_PIXELS
        if self.batch == 1 or joint:
            try:
                self.lattice = build_lattice(features)
            except ValueError:
                if self.batch == 1:
                    raise
        if self.lattice is None:
            self.lattice = concat_lattices([build_lattice(f) for f in features])
        self._plain: LatticeOperator | None = None
        self._degree: torch.Tensor | None = None

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        """Apply W to every channel: (B, C, H, W) float -> (B, C, H, W) float32.

        Differentiable with respect to `values` (the backward applies the exact adjoint); runs
        in float32 whatever the input precision, on the kernel's device.
        """
        if not isinstance(values, torch.Tensor) or values.ndim != 4 or not values.is_floating_point():
            shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
            raise ValueError(f"expected values (B, C, H, W) float, got {shape}")
        b, c, h, w = values.shape
        if (b, h, w) != (self.batch, self.height, self.width):
            raise ValueError(
                f"expected values ({self.batch}, C, {self.height}, {self.width}) to match the "
                f"kernel's images, got {tuple(values.shape)}"
            )
        v = values.float().reshape(b, c, h * w).transpose(1, 2).reshape(b * h * w, c)  # (B*N, C) row-major
        out = _ApplyOperator.apply(v, self.operator())  # (B*N, C)
        return out.reshape(b, h * w, c).transpose(1, 2).reshape(b, c, h, w).contiguous()

    @property
    def degree(self) -> torch.Tensor:
        """(B, 1, H, W) float32, W 1: each pixel's total kernel weight (computed once)."""
        if self._degree is None:
            ones = torch.ones(self.batch, 1, self.height, self.width, device=self.device)
            self._degree = self(ones).detach()
        return self._degree

    def operator(self) -> LatticeOperator:
        """The plain operator W of the batch on (B*N, C) float32 row-major values (image b's
        pixels in rows b*N ... (b+1)*N - 1, raster order; block-diagonal over the images)."""
        if self._plain is None:
            self._plain = make_operator([self.lattice], weights=[1.0], pixel_scales=[None])
        return self._plain

    def normalized_operator(self, *, weight: float) -> LatticeOperator:
        """weight * D W D of the batch, D = diag(W 1)^(-1/2): densecrf's symmetric
        normalisation, on (B*N, C) float32 row-major values (what mean-field inference applies)."""
        scale = torch.rsqrt(lattice_norm(self.lattice) + 1e-20)  # (B*N,)
        return make_operator([self.lattice], weights=[weight], pixel_scales=[scale])
