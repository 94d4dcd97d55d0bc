"""Sparse linear operators assembled from one or more permutohedral lattices.

A `LatticeOperator` applies

    out = sum_b  w_b * s_b ⊙ alpha_b S_b^T B_b S_b (s_b ⊙ values)

for lattices b (e.g. the CRF's bilateral and spatial kernels), with per-pixel scales s_b
(the CRF's symmetric normalisation) and weights w_b folded into the sparse matrices once, so
that a call is one sparse-dense product to splat into all lattices, the small per-lattice
blurs, and one sparse-dense product to slice back. Values are (N, C) float32, row-major:
each sparse entry then touches one contiguous row of C numbers.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import torch

from wsdeploy.crf._lattice import Lattice, blur

__all__ = ["LatticeOperator", "lattice_norm", "make_operator"]


@dataclass(frozen=True)
class LatticeOperator:
    """Fused splat / blur / slice over several lattices on the same N pixels.

    Attributes:
        splat: (R, N) float32 sparse CSR, R = sum over lattices of (M_b + 1).
        slice: (N, R) float32 sparse CSR.
        lattices: the lattices, in block order.
        starts: row offset of each lattice's block in the stacked vertex grid.
    """

    splat: torch.Tensor
    slice: torch.Tensor
    lattices: tuple[Lattice, ...]
    starts: tuple[int, ...]

    def __call__(
        self, values: torch.Tensor, *, transpose: bool = False, add_to: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(N, C) float32 -> (N, C) float32. `transpose=True` applies the exact adjoint.

        With `add_to` (N, C), returns add_to + result in one product (torch.addmm), which on
        CPU is also cheaper than the plain product (no zero-fill and copy of the output).
        """
        grid = torch.sparse.mm(self.splat, values)  # (R, C)
        blocks = []
        for lattice, start in zip(self.lattices, self.starts):
            rows = lattice.num_vertices + 1
            blocks.append(blur(lattice, grid[start : start + rows], transpose=transpose))
        grid = blocks[0] if len(blocks) == 1 else torch.cat(blocks, 0)
        if add_to is None:
            return torch.sparse.mm(self.slice, grid)
        return torch.addmm(add_to, self.slice, grid)


def make_operator(
    lattices: Sequence[Lattice],
    *,
    weights: Sequence[float],
    pixel_scales: Sequence[torch.Tensor | None],
) -> LatticeOperator:
    """Fold weights w_b, lattice constants alpha_b and per-pixel scales s_b (N,) into CSR form.

    The pixel scales may be None (no scaling). All lattices must share the same N pixels.
    """
    if not (len(lattices) == len(weights) == len(pixel_scales)) or not lattices:
        raise ValueError(
            f"expected as many weights and scales as lattices (>= 1), got "
            f"{len(lattices)} lattices, {len(weights)} weights, {len(pixel_scales)} scales"
        )
    n = lattices[0].num_pixels
    device = lattices[0].vertex.device
    index = lattices[0].vertex.dtype  # int32 unless huge (see Lattice)
    splat_crow, splat_col, splat_val = [], [], []
    slice_col, slice_val = [], []
    starts, rows, nnz = [], 0, 0
    for lattice, weight, scale in zip(lattices, weights, pixel_scales):
        if lattice.num_pixels != n or lattice.vertex.dtype != index:
            raise ValueError(
                f"lattices must share pixels and index dtype, got N={lattice.num_pixels} "
                f"{lattice.vertex.dtype} and N={n} {index}"
            )
        sv = lattice.splat_weight
        lv = lattice.weight * (weight * lattice.alpha)
        if scale is not None:
            sv = sv * scale[lattice.splat_pixel]
            lv = lv * scale[:, None]
        splat_crow.append(lattice.splat_crow[1:] + nnz if starts else lattice.splat_crow)
        splat_col.append(lattice.splat_pixel)
        splat_val.append(sv)
        slice_col.append(lattice.vertex + rows if rows else lattice.vertex)
        slice_val.append(lv)
        starts.append(rows)
        rows += lattice.num_vertices + 1
        nnz += int(lattice.splat_pixel.numel())
    per_row = sum(lat.dim + 1 for lat in lattices)
    slice_crow = torch.arange(0, n * per_row + 1, per_row, device=device, dtype=index)
    splat = _csr(_cat(splat_crow), _cat(splat_col), _cat(splat_val), (rows, n))
    slice_ = _csr(slice_crow, _cat(slice_col, 1).reshape(-1), _cat(slice_val, 1).reshape(-1), (n, rows))
    return LatticeOperator(splat, slice_, tuple(lattices), tuple(starts))


def _cat(parts: list[torch.Tensor], dim: int = 0) -> torch.Tensor:
    """torch.cat without the copy when there is one part."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim)


def _csr(crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    with warnings.catch_warnings():
        # torch flags every CSR construction as "beta"; the operations used here are stable.
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        return torch.sparse_csr_tensor(crow, col, val, shape, check_invariants=False)


def lattice_norm(lattice: Lattice) -> torch.Tensor:
    """(N,) float32: the lattice filter applied to a constant 1, alpha S^T B S 1.

    Cheaper than a general call: one column, and the slice is a (N, d+1) gather.
    """
    n, m1 = lattice.num_pixels, lattice.num_vertices + 1
    splat = _csr(lattice.splat_crow, lattice.splat_pixel, lattice.splat_weight, (m1, n))
    ones = torch.ones(n, 1, device=lattice.weight.device)
    grid = blur(lattice, torch.sparse.mm(splat, ones))[:, 0]  # (M+1,)
    return lattice.alpha * (grid[lattice.vertex] * lattice.weight).sum(1)
