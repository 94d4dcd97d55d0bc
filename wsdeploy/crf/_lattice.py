"""Permutohedral lattice (Adams, Baek & Davis, Eurographics 2010) in plain torch ops.

The lattice approximates Gaussian filtering in a d-dimensional feature space with three
linear maps, built once per image (or once for a batch of images) and reused for every
filtering call:

    splat   S:  (M, N), d + 1 barycentric weights per pixel (pixel -> simplex vertices)
    blur    B:  d + 1 passes of the [1/2, 1, 1/2] kernel along the lattice axes
    slice   S^T: the transpose of the splat (vertices -> pixel)

    filter(v) = alpha * S^T B S v,   alpha = 1 / (1 + 2^-d)

with N pixels and M occupied vertices (M << N for the CRF's wide bilateral kernel). The
construction runs vectorised over all pixels: elevation onto the hyperplane, rounding to the
enclosing simplex, then hashing by sorting int64 codes, first of the distinct simplices (a
fraction of N on photographs), then of their vertices. A batch of B images is one lattice on
B * N pixels whose codes lead with the image index, so no vertex is shared between images and
the whole batch is filtered by one splat, blur and slice: the block-diagonal union of the B
images' own lattices, vertex for vertex and entry for entry (the sorts are stable, so ties keep
pixel order whatever the batch), which is what makes a batch build equal B single builds.
`wsdeploy.crf._operator` turns the result into CSR matrices, so a call is two sparse-dense
products plus d + 1 gathers.

The numerical scheme (scale factors, rounding and tie-breaking, barycentric weights, blur
kernel, alpha) is the one of Krähenbühl & Koltun's densecrf / pydensecrf, so the two agree
to float rounding. Device-agnostic: every step is a torch op that runs on CPU and CUDA.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

__all__ = ["Lattice", "blur", "build_lattice", "concat_lattices"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lattice:
    """A permutohedral lattice built for one set of N feature vectors of dimension d.

    M vertices are occupied; row M of every vertex array is a padding vertex that stays zero,
    so a missing blur neighbour can point at it without a branch.

    Attributes:
    Index arrays are int32 (int64 only past 2^31 entries): half the memory traffic, and the
    sparse libraries take int32 natively.

    Attributes:
        vertex: (N, d+1) int32, the vertices of each pixel's enclosing simplex, in [0, M).
        weight: (N, d+1) float32, barycentric weights (>= 0, sum to 1 per pixel).
        splat_crow: (M + 2,) int32, CSR row pointers of the (M + 1, N) splat matrix.
        splat_pixel: (N * (d+1),) int32, column (pixel) of each splat entry, in vertex order.
        splat_weight: (N * (d+1),) float32, barycentric weight of each splat entry.
        neighbours: (d+1, 2, M+1) int32, for each blur axis the two neighbours of every
            vertex (M when absent; the padding vertex is its own neighbour).
        dim: d.
    """

    vertex: torch.Tensor
    weight: torch.Tensor
    splat_crow: torch.Tensor
    splat_pixel: torch.Tensor
    splat_weight: torch.Tensor
    neighbours: torch.Tensor
    dim: int

    @property
    def num_pixels(self) -> int:
        return int(self.vertex.shape[0])

    @property
    def num_vertices(self) -> int:
        """M, the occupied vertices (without the padding vertex)."""
        return int(self.neighbours.shape[2]) - 1

    @property
    def alpha(self) -> float:
        """densecrf's constant that makes the splat-blur-slice chain roughly mass-preserving."""
        return 1.0 / (1.0 + 2.0 ** (-self.dim))


def _elevation_matrix(d: int, device: torch.device) -> torch.Tensor:
    """(d, d+1) float32 E with features @ E = the elevated, scaled point (Adams p.5).

    Column 0 is sum_i c_i f_i; column j >= 1 is sum_{i >= j} c_i f_i - j c_{j-1} f_{j-1},
    with c_i = sqrt(2/3) (d+1) / sqrt((i+1)(i+2)): an orthonormal basis of the hyperplane
    sum = 0, scaled so that the lattice blur has about unit standard deviation.
    """
    inv_std = math.sqrt(2.0 / 3.0) * (d + 1)
    e = torch.zeros(d, d + 1, dtype=torch.float64)
    for i in range(d):
        c = inv_std / math.sqrt((i + 1) * (i + 2))
        e[i, 0] = c
        e[i, 1 : i + 1] = c
        e[i, i + 1] = -(i + 1) * c
    return e.to(device=device, dtype=torch.float32)


def _enclosing_simplex(elevated: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nearest 0-coloured vertex, rank of each coordinate and barycentric weights (Adams p.10).

    Works coordinate-major, (d+1, N), so every step is a long contiguous vector op.

    Args:
        elevated: (N, d+1) float32, points on the hyperplane sum = 0.

    Returns:
        rem0 (d+1, N) float32 (integers, multiples of d+1), rank (d+1, N) float32 (a
        permutation of 0..d per pixel) and barycentric (N, d+1) float32 (>= 0, sum to 1).
    """
    d1 = elevated.shape[1]
    d = d1 - 1
    e = elevated.t().contiguous()  # (d+1, N)
    # Nearest multiple of d+1, ties rounded down (densecrf: up if up - x < x - down).
    rem0 = torch.ceil(e / d1 - 0.5) * d1
    total = torch.round(rem0.sum(0) / d1)  # (N,)
    # rank[i] = number of coordinates ahead of i in decreasing order of (e - rem0); ties go
    # as in densecrf: for i < j, i is ahead of j unless strictly smaller. Small integers are
    # exact in float32, which is faster than int64 here.
    diff = e - rem0
    rank = total.repeat(d1, 1)  # (d+1, N)
    for i in range(d1):
        for j in range(i + 1, d1):
            smaller = (diff[i] < diff[j]).to(e.dtype)
            rank[i] += smaller
            rank[j] += 1.0 - smaller
    # Points off the plane sum(rem0) = 0 are brought back by shifting rank and rem0.
    wrap = (rank < 0).to(e.dtype) - (rank > d).to(e.dtype)  # +1, -1 or 0
    rank += d1 * wrap
    rem0 += d1 * wrap
    # Barycentric weights: with a[d - rank_i] = v_i (ranks are a permutation, so this is a
    # plain scatter), b[j] = a[j] - a[j-1] for j >= 1 and b[0] = 1 + a[0] - a[d].
    v = (e - rem0) / d1
    a = torch.empty_like(v).scatter_(0, (d - rank).to(torch.int64), v)
    bary = torch.empty_like(a)
    bary[1:] = a[1:] - a[:-1]
    bary[0] = a[0] + 1.0 - a[d]
    return rem0, rank, bary.t().contiguous()


def _strides(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """(k,) float64 mixed-radix strides (last axis fastest) for integer keys in [lo, hi].

    Codes are computed in float64 (a matrix product), exact below 2^53.
    """
    extent = (hi - lo + 1).double()
    if float(torch.log2(extent).sum()) > 52.0:
        raise ValueError(
            f"feature range too large for the lattice hash (extent per axis {extent.tolist()}); "
            "are the features divided by their sigmas? a sigma may be far too small"
        )
    strides = torch.ones_like(extent)
    for i in range(extent.numel() - 2, -1, -1):
        strides[i] = strides[i + 1] * extent[i + 1]
    return strides


def _unique_sorted(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stable sort of int64 codes: (sorted codes, order, is_first (bool, sorted order)).

    Stable, so equal codes keep their input order: the lattice (and the summation order of
    every splat) does not depend on the sort algorithm, the array's length or the batch.
    """
    ordered, order = torch.sort(codes, stable=True)
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[1:] = ordered[1:] != ordered[:-1]
    return ordered, order, first


def build_lattice(features: torch.Tensor) -> Lattice:
    """Build the lattice for (N, d) float features (already divided by their sigmas), or for a
    batch, (B, N, d): one lattice on B * N pixels (image b's pixels at b * N ...), each image
    with vertices of its own (see the module docstring).

    Pixels that fall in the same simplex share its d + 1 vertices, so the vertex hash runs on
    the distinct simplices only (a fraction of N on photographs), then maps back to pixels.
    """
    if features.ndim not in (2, 3) or min(features.shape[:-1]) < 1:
        raise ValueError(
            f"expected features of shape (N >= 1, d) or (B >= 1, N >= 1, d), got {tuple(features.shape)}")
    batch, per_image, d = (1, *features.shape) if features.ndim == 2 else features.shape
    n = batch * per_image
    d1 = d + 1
    device = features.device
    idx = torch.int32 if n * d1 < 2**31 - 1 else torch.int64
    elevated = features.reshape(n, d).float() @ _elevation_matrix(d, device)  # (N, d+1)
    rem0, rank, bary = _enclosing_simplex(elevated)
    # The image index leads every code (the most significant digit), so images never share
    # a simplex or a vertex, and within an image the codes sort as in a build of its own.
    image = torch.arange(batch, device=device, dtype=torch.float32).repeat_interleave(per_image)[None]  # (1, N)
    # 1. Distinct simplices: code = (image, rem0 / (d+1) on the first d axes, rank permutation).
    base = torch.cat([image, rem0[:d] / d1])  # (1 + d, N) small integers
    lo, hi = base.amin(1), base.amax(1)
    bstrides = _strides(lo, hi)
    rank_code = (d1 ** torch.arange(d1, device=device, dtype=torch.float32)) @ rank  # < 6^6
    if float(bstrides[0]) * float(hi[0] - lo[0] + 1) * d1**d1 >= 2.0**53:
        raise ValueError("feature range too large for the lattice hash; a sigma may be far too small")
    scode = (bstrides @ (base - lo[:, None]).double()) * float(d1**d1) + rank_code.double()
    _, sorder, snew = _unique_sorted(scode.to(torch.int64))
    sfirst = torch.nonzero(snew).squeeze(1)  # (S,) start of each simplex in sorted order
    s_count = int(sfirst.numel())
    spix_count = torch.diff(sfirst, append=sfirst.new_tensor([n]))  # (S,)
    pixel_simplex = torch.empty(n, dtype=torch.int64, device=device)
    pixel_simplex[sorder] = torch.cumsum(snew, 0) - 1
    rep = sorder[sfirst]  # a representative pixel per simplex
    # 2. Vertex r of simplex s: key[i] = rem0[i] + canonical[r][rank[i]], where
    # canonical[r][k] = r for k <= d - r, else r - (d + 1); only the first d coordinates are
    # kept (the last is implied by sum(key) = 0), after the image index. Codes have a margin
    # of d + 1 on each side, so the blur neighbours (key -+ 1, +- d on one axis) are a constant
    # away and never cross into another image's codes.
    margin = torch.tensor([0.0] + [2.0 * d1] * d, device=device)
    keys = torch.cat([image, rem0[:d]])  # (1 + d, N)
    klo = keys.amin(1) - margin
    khi = keys.amax(1) + margin
    all_strides = _strides(klo, khi)
    kstrides = all_strides[1:]  # the coordinate axes' strides (the image's is all_strides[0])
    r = torch.arange(d1, device=device)
    srank = rank[:d, rep].t()  # (S, d)
    high = (srank[:, None, :] > (d - r)[None, :, None]).double()  # (S, d+1, d)
    base_code = all_strides @ (keys[:, rep] - klo[:, None]).double()  # (S,)
    vcode = base_code[:, None] + r.double()[None, :] * kstrides.sum() - d1 * (high @ kstrides)
    vsorted, vorder, vnew = _unique_sorted(vcode.reshape(-1).to(torch.int64))  # slots s*(d+1)+r
    vertices = vsorted[vnew]  # (M,) sorted codes
    m = int(vertices.numel())
    slot_vertex = torch.empty_like(vorder)
    slot_vertex[vorder] = torch.cumsum(vnew, 0) - 1
    # 3. Blur neighbours along axis j: n1 = key - 1 + (d+1) e_j (e_d: no axis term), n2 = -.
    ks = kstrides.to(torch.int64)
    delta = torch.cat([d1 * ks, ks.new_zeros(1)]) - ks.sum()  # (d+1,)
    cand = torch.stack([vertices[None, :] + delta[:, None], vertices[None, :] - delta[:, None]], 1)
    pos = torch.searchsorted(vertices, cand).clamp_(max=m - 1)  # (d+1, 2, M)
    neighbours = torch.where(vertices[pos] == cand, pos, m)
    neighbours = torch.cat([neighbours, neighbours.new_full((d1, 2, 1), m)], 2).to(idx)
    # 4. Pixel -> vertices.
    pixel_vertex = slot_vertex.view(s_count, d1)[pixel_simplex].to(idx)  # (N, d+1)
    # 5. Splat entries in vertex order: walk the slots (corner r of simplex s) sorted by
    # vertex and expand each into the pixels of simplex s, contiguous in `sorder` from
    # sfirst[s]: position = running entry number + (sfirst[s] - entries before the slot).
    slot_s = torch.div(vorder, d1, rounding_mode="floor")
    slot_r = (vorder - slot_s * d1).to(idx)
    counts = spix_count[slot_s]  # (S*(d+1),)
    before = torch.cumsum(counts, 0) - counts
    total = n * d1
    shift = (sfirst[slot_s] - before).to(idx)
    pos = torch.arange(total, device=device, dtype=idx)
    pos += torch.repeat_interleave(shift, counts, output_size=total)
    splat_pixel = sorder.to(idx)[pos]
    entry = splat_pixel * d1 + torch.repeat_interleave(slot_r, counts, output_size=total)
    splat_weight = bary.reshape(-1)[entry]
    vcount = torch.zeros(m + 1, dtype=torch.int64, device=device)
    vcount.index_add_(0, slot_vertex, spix_count.repeat_interleave(d1))
    splat_crow = torch.cat([vcount.new_zeros(1), torch.cumsum(vcount, 0)]).to(idx)
    logger.debug("lattice: %d pixels, d=%d, %d simplices, %d vertices", n, d, s_count, m)
    return Lattice(pixel_vertex, bary, splat_crow, splat_pixel, splat_weight, neighbours, d)


def concat_lattices(lattices: list[Lattice]) -> Lattice:
    """The block-diagonal union of lattices on disjoint pixel sets (image b's pixels after
    image b-1's): what `build_lattice` of the stacked (B, N, d) features returns, entry for
    entry, assembled from B single builds (for batches whose joint hash codes would not fit)."""
    if not lattices or len({lat.dim for lat in lattices}) != 1:
        raise ValueError("expected one or more lattices of the same dimension")
    if len(lattices) == 1:
        return lattices[0]
    total_m = sum(lat.num_vertices for lat in lattices)
    total_n = sum(lat.num_pixels for lat in lattices)
    d1 = lattices[0].dim + 1
    idx = torch.int32 if total_n * d1 < 2**31 - 1 else torch.int64  # as build_lattice picks it
    vertex, crow, neighbours, splat_pixel = [], [], [], []
    m_off = n_off = e_off = 0
    for lat in lattices:
        m = lat.num_vertices
        vertex.append(lat.vertex.to(idx) + m_off)
        crow.append(lat.splat_crow[:m].to(idx) + e_off)  # the starts of its M rows
        own = lat.neighbours[:, :, :m].to(idx)
        neighbours.append(torch.where(own == m, total_m, own + m_off))
        splat_pixel.append(lat.splat_pixel.to(idx) + n_off)
        m_off, n_off, e_off = m_off + m, n_off + lat.num_pixels, e_off + int(lat.splat_pixel.numel())
    crow.append(torch.tensor([e_off, e_off], device=crow[0].device, dtype=idx))  # last row's end, empty padding row
    pad = neighbours[0].new_full((d1, 2, 1), total_m)
    return Lattice(
        torch.cat(vertex), torch.cat([lat.weight for lat in lattices]), torch.cat(crow), torch.cat(splat_pixel),
        torch.cat([lat.splat_weight for lat in lattices]), torch.cat([*neighbours, pad], 2), lattices[0].dim,
    )


def blur(lattice: Lattice, grid: torch.Tensor, *, transpose: bool = False) -> torch.Tensor:
    """Blur (M+1, C) vertex values along the d + 1 lattice axes with [1/2, 1, 1/2].

    `transpose=True` runs the axes in reverse order: the exact adjoint of the forward blur
    (each axis pass is symmetric; the passes commute only away from the lattice border).
    """
    axes = range(lattice.dim, -1, -1) if transpose else range(lattice.dim + 1)
    for j in axes:
        n1 = grid.index_select(0, lattice.neighbours[j, 0])
        n2 = grid.index_select(0, lattice.neighbours[j, 1])
        grid = torch.add(grid, n1.add_(n2), alpha=0.5)
    return grid
