"""The CRF's smoothness kernel (position only) as a separable filter on a coarse regular grid.

For features (x/sigma, y/sigma) the permutohedral lattice is overkill: the kernel is a
product of two 1-D Gaussians, so each axis is filtered on its own with a 1-D "bilateral grid"
(Paris & Durand 2006): linear splat to cells `spacing` pixels apart, [1/4, 1/2, 1/4] blur,
linear slice. The three steps add variances spacing²/6 + spacing²/2 + spacing²/6, so
spacing = sigma * sqrt(6/5) gives the kernel's variance sigma². Each axis is a sparse
(cells x pixels) matrix: the y pass multiplies whole image rows (W*K contiguous numbers per
entry), the x pass works on the already 3x smaller grid, and nothing depends on the image, so
building it is O(H + W) instead of the lattice's O(N log N).

The symmetric normalisation D K D, D = diag(K 1)^(-1/2), is separable too (K 1 is the outer
product of the two 1-D results), so it and the kernel weight fold into the matrices.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

__all__ = ["SeparableGaussian", "build_separable_gaussian"]


@dataclass(frozen=True)
class SeparableGaussian:
    """Normalised, weighted smoothness kernel on an H x W image.

    Attributes:
        splat_y: (Cy, H) float32 sparse CSR; slice_y: (H, Cy), carries the weight.
        splat_x: (Cx, W) float32 sparse CSR; slice_x: (W, Cx).
        height, width: H, W.
    """

    splat_y: torch.Tensor
    slice_y: torch.Tensor
    splat_x: torch.Tensor
    slice_x: torch.Tensor
    height: int
    width: int

    def __call__(self, values: torch.Tensor, *, add_to: torch.Tensor | None = None) -> torch.Tensor:
        """(N, C) float32, row-major, raster order -> (N, C) float32, N = H * W.

        With `add_to` (N, C) row-major, returns add_to + result in one product.
        """
        h, w = self.height, self.width
        c = values.shape[1]
        cy = self.splat_y.shape[0]
        g = torch.sparse.mm(self.splat_y, values.view(h, w * c))  # (Cy, W*C)
        g = g.view(cy, w, c).transpose(0, 1).reshape(w, cy * c)  # (W, Cy*C)
        g = torch.sparse.mm(self.splat_x, g)  # (Cx, Cy*C)
        g = _blur(_blur(g.view(-1, cy, c), 0), 1)  # (Cx, Cy, C)
        g = torch.sparse.mm(self.slice_x, g.view(-1, cy * c))  # (W, Cy*C)
        g = g.view(w, cy, c).transpose(0, 1).reshape(cy, w * c)  # (Cy, W*C)
        if add_to is None:
            return torch.sparse.mm(self.slice_y, g).view(h * w, c)
        return torch.addmm(add_to.view(h, w * c), self.slice_y, g).view(h * w, c)


def _blur(grid: torch.Tensor, dim: int) -> torch.Tensor:
    """[1/4, 1/2, 1/4] along `dim`, zero outside."""
    out = grid * 0.5
    n = grid.shape[dim]
    if n > 1:
        out.narrow(dim, 1, n - 1).add_(grid.narrow(dim, 0, n - 1), alpha=0.25)
        out.narrow(dim, 0, n - 1).add_(grid.narrow(dim, 1, n - 1), alpha=0.25)
    return out


def _axis(length: int, spacing: float, device: torch.device) -> tuple[torch.Tensor, ...]:
    """One axis: the linear-interpolation splat to cells `spacing` pixels apart.

    Returns rows (2L,) cell indices, cols (2L,) pixel indices, weights (2L,) float64, the
    1-D filter (slice . blur . splat) applied to ones (L,) float64, and the cell count.
    """
    pos = torch.arange(length, device=device, dtype=torch.float64) / spacing + 1.0  # 1 cell margin
    lo = torch.floor(pos)
    frac = pos - lo
    cells = int(math.floor((length - 1) / spacing)) + 3
    rows = torch.cat([lo, lo + 1]).to(torch.int64)
    cols = torch.arange(length, device=device).repeat(2)
    weights = torch.cat([1.0 - frac, frac])
    splat_ones = torch.zeros(cells, 1, device=device, dtype=torch.float64)
    splat_ones.index_add_(0, rows, weights[:, None])
    blurred = _blur(splat_ones, 0)[:, 0]  # (cells,)
    norm = (weights * blurred[rows]).view(2, length).sum(0)  # (L,)
    return rows, cols, weights, norm, cells


def _csr(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), values.float(), shape, check_invariants=True)
        return coo.coalesce().to_sparse_csr()


def build_separable_gaussian(
    height: int, width: int, *, sigma: float, weight: float, device: torch.device
) -> SeparableGaussian:
    """The kernel weight * D K D for K the (approximate) Gaussian of std `sigma` pixels."""
    spacing = sigma * math.sqrt(6.0 / 5.0)
    ry, cy_, wy, ny, cells_y = _axis(height, spacing, device)
    rx, cx_, wx, nx, cells_x = _axis(width, spacing, device)
    sy, sx = ny.rsqrt(), nx.rsqrt()  # D = diag(ny ⊗ nx)^(-1/2) = diag(sy) ⊗ diag(sx)
    return SeparableGaussian(
        splat_y=_csr(ry, cy_, wy * sy[cy_], (cells_y, height)),
        slice_y=_csr(cy_, ry, wy * sy[cy_] * weight, (height, cells_y)),
        splat_x=_csr(rx, cx_, wx * sx[cx_], (cells_x, width)),
        slice_x=_csr(cx_, rx, wx * sx[cx_], (width, cells_x)),
        height=height,
        width=width,
    )
