"""Random-walk propagation of CAMs over a local affinity graph (AffinityNet / IRN).

    offsets = neighbour_offsets(5)                                   # D half-plane offsets
    affinity = affinity_from_features(features, radius=5)            # (B, D, h, w) in (0, 1]
    scores = propagate_cams(cams, affinity, radius=5, beta=8, steps=256)   # (B, C, H, W)

Provenance: Ahn & Kwak, "Learning Pixel-level Semantic Affinity with Image-level Supervision"
(PSA / AffinityNet, CVPR 2018) and Ahn et al., IRN (CVPR 2019): affinities between the pixels
of a coarse grid that lie within a radius, raised to the power beta, normalised into a
transition matrix T, and CAMs propagated as T^t v. PSA's published code builds T as a dense
N x N matrix and squares it log2(t) times; here T is a sparse CSR matrix of N x (2D + 1)
entries and v is multiplied t times, which is exact (the same T^t v) and never holds N x N
numbers: squaring a banded matrix widens its band (T^(2^k) reaches 2^k radii), so after
log2(t) squarings it is dense, while t sparse products cost t * N * (2D + 1) * C.

Graph. A grid of h x w cells (pixel p = y * w + x). The pairs are the offsets (dy, dx) with
0 < dy^2 + dx^2 < radius^2 in the half plane dy > 0 or (dy = 0, dx > 0) (`neighbour_offsets`);
each pair is stored once, at its first pixel: affinity[b, d, y, x] is the affinity between
(y, x) and (y + dy_d, x + dx_d), and entries whose partner lies outside the grid are ignored.
A = I + sum over pairs of a^beta on (p, q) and on (q, p) (symmetric, self-affinity 1, as PSA),
and T = D^-1 A with D the row sums (row-stochastic): one step replaces the value at p by the
A-weighted mean of p and its neighbours, t steps give T^t v. A batch is one block-diagonal
matrix, so B images walk in the same sparse products, on the device of `affinity`.
"""
from __future__ import annotations

import functools
import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "affinity_from_features",
    "neighbour_offsets",
    "propagate_cams",
    "random_walk",
    "transition_matrix",
]


def _check_radius(radius: int) -> None:
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 2:
        raise ValueError(f"radius must be an int >= 2 (offsets with dy^2 + dx^2 < radius^2), got {radius!r}")


@functools.lru_cache(maxsize=16)
def _offsets(radius: int) -> tuple[tuple[int, int], ...]:
    return tuple(
        (dy, dx)
        for dy in range(radius)
        for dx in range(-radius + 1, radius)
        if (dy > 0 or dx > 0) and dy * dy + dx * dx < radius * radius
    )


def neighbour_offsets(radius: int) -> list[tuple[int, int]]:
    """The half-plane pair offsets (dy, dx) within `radius`, in the order of affinity's D axis.

    Offsets with 0 < dy^2 + dx^2 < radius^2 and dy > 0, or dy == 0 and dx > 0; sorted by dy
    then dx. radius 2: 4 offsets (the 8-neighbourhood's half); radius 5: 34 (PSA's pairs).
    """
    _check_radius(radius)
    return list(_offsets(radius))


def _check_affinity(affinity: Tensor, radius: int) -> None:
    _check_radius(radius)
    d = len(_offsets(radius))
    if affinity.ndim != 4 or affinity.shape[1] != d or not affinity.is_floating_point():
        raise ValueError(
            f"expected affinity of shape (B, {d}, h, w) float (D = {d} pair offsets for radius "
            f"{radius}), got {tuple(affinity.shape)} {affinity.dtype}"
        )


def affinity_from_features(features: Tensor, *, radius: int) -> Tensor:
    """Pair affinities exp(-mean_c |f_p - f_q|) of an embedding (PSA's affinity).

    Args:
        features: (B, E, h, w) float, the affinity head's embedding.
        radius: see `neighbour_offsets`.

    Returns:
        (B, D, h, w), same dtype and device, in (0, 1]; 0 where the partner (y + dy, x + dx)
        is outside the grid. Differentiable in `features`.
    """
    _check_radius(radius)
    if features.ndim != 4 or not features.is_floating_point():
        raise ValueError(f"expected features of shape (B, E, h, w) float, got {tuple(features.shape)} {features.dtype}")
    b, _, h, w = features.shape
    r = radius - 1
    padded = F.pad(features, (r, r, 0, r))  # (B, E, h + r, w + 2r), partners below/left/right
    out = []
    for dy, dx in _offsets(radius):
        partner = padded[:, :, dy:dy + h, r + dx:r + dx + w]  # (B, E, h, w)
        out.append(torch.exp(-(partner - features).abs().mean(dim=1)))  # (B, h, w)
    aff = torch.stack(out, dim=1)  # (B, D, h, w)
    return aff * _valid_pairs(h, w, radius, features.device).to(aff.dtype)


@functools.lru_cache(maxsize=32)
def _valid_pairs_cpu(h: int, w: int, radius: int) -> Tensor:
    ys = torch.arange(h)[:, None]
    xs = torch.arange(w)[None, :]
    return torch.stack([(ys + dy < h) & (xs + dx >= 0) & (xs + dx < w) for dy, dx in _offsets(radius)])


def _valid_pairs(h: int, w: int, radius: int, device: torch.device) -> Tensor:
    """(D, h, w) bool: the partner of (y, x) at offset d lies inside the grid."""
    return _valid_pairs_cpu(h, w, radius).to(device)


def transition_matrix(affinity: Tensor, *, radius: int, beta: float) -> Tensor:
    """The row-stochastic transition matrix T = D^-1 (I + A^beta) of a batch, sparse CSR.

    Args:
        affinity: (B, D, h, w) float in [0, 1] (see the module docstring for the layout).
        radius: the radius the affinities were computed with (fixes D).
        beta: the exponent (> 0); larger = walks stop harder at weak affinities.

    Returns:
        (B*h*w, B*h*w) sparse CSR, same dtype and device as `affinity`, block-diagonal over
        the batch (row b*h*w + y*w + x is pixel (y, x) of image b); every row sums to 1.
    """
    _check_affinity(affinity, radius)
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a positive number, got {beta!r}")
    b, d, h, w = affinity.shape
    n = h * w
    dev, dtype = affinity.device, affinity.dtype
    offsets = _offsets(radius)
    valid = _valid_pairs(h, w, radius, dev)  # (D, h, w)
    weight = torch.where(valid, affinity.clamp(0, 1).pow(beta), torch.zeros((), dtype=dtype, device=dev))
    # The full stencil: the reversed offsets (-dy, -dx) take the pair's weight stored at the partner.
    r = radius - 1
    padded = F.pad(weight, (r, r, r, 0))  # (B, D, h + r, w + 2r): rows above, columns either side
    stencil = {(0, 0): torch.ones(b, h, w, dtype=dtype, device=dev)}
    masks = {(0, 0): torch.ones(h, w, dtype=torch.bool, device=dev)}
    vpad = F.pad(valid, (r, r, r, 0))  # (D, h + r, w + 2r)
    for k, (dy, dx) in enumerate(offsets):
        stencil[(dy, dx)] = weight[:, k]
        masks[(dy, dx)] = valid[k]
        stencil[(-dy, -dx)] = padded[:, k, r - dy:r - dy + h, r - dx:r - dx + w]
        masks[(-dy, -dx)] = vpad[k, r - dy:r - dy + h, r - dx:r - dx + w]
    order = sorted(stencil, key=lambda o: o[0] * w + o[1])  # column order within a row
    weights = torch.stack([stencil[o] for o in order], dim=-1)  # (B, h, w, S)
    present = torch.stack([masks[o] for o in order], dim=-1)  # (h, w, S)
    step = torch.tensor([dy * w + dx for dy, dx in order], device=dev)  # (S,)
    cols = torch.arange(n, device=dev).view(h, w, 1) + step  # (h, w, S), in range where present
    weights = weights / weights.sum(dim=-1, keepdim=True)  # row-normalise (self term: sum >= 1)
    present_b = present.expand(b, h, w, -1)  # (B, h, w, S)
    base = (torch.arange(b, device=dev) * n).view(b, 1, 1, 1)
    col_index = (cols + base)[present_b]  # (nnz,) row-major: rows ascending, columns ascending
    values = weights[present_b]
    counts = present.sum(dim=-1).reshape(-1).repeat(b)  # (B*N,)
    crow = torch.zeros(b * n + 1, dtype=torch.int64, device=dev)
    crow[1:] = torch.cumsum(counts, 0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col_index, values, (b * n, b * n), check_invariants=False)


def random_walk(values: Tensor, affinity: Tensor, *, radius: int, beta: float, steps: int) -> Tensor:
    """T^steps applied to every channel of `values`: the random walk of PSA / IRN.

    Args:
        values: (B, C, h, w) float, e.g. CAMs pooled to the affinity grid; same device and
            dtype as `affinity`.
        affinity: (B, D, h, w) float in [0, 1] (module docstring).
        radius, beta: see `transition_matrix`.
        steps: t >= 0 (PSA and IRN: 256 = 2^8).

    Returns:
        (B, C, h, w), same dtype and device; steps = 0 returns `values` unchanged. Every step
        is a weighted mean, so the output stays within the input's range per image.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    if values.ndim != 4 or tuple(values.shape[:1] + values.shape[2:]) != (affinity.shape[0], *affinity.shape[2:]):
        raise ValueError(
            f"expected values of shape (B, C, h, w) = ({affinity.shape[0]}, C, {affinity.shape[2]}, "
            f"{affinity.shape[3]}) to match affinity {tuple(affinity.shape)}, got {tuple(values.shape)}"
        )
    if values.dtype != affinity.dtype or values.device != affinity.device:
        raise ValueError(f"values ({values.dtype}, {values.device}) and affinity ({affinity.dtype}, "
                         f"{affinity.device}) must share dtype and device")
    if steps == 0:
        return values
    b, c, h, w = values.shape
    trans = transition_matrix(affinity, radius=radius, beta=beta)
    v = values.permute(0, 2, 3, 1).reshape(b * h * w, c)  # (B*N, C)
    for _ in range(steps):
        v = torch.sparse.mm(trans, v)
    return v.view(b, h, w, c).permute(0, 3, 1, 2).contiguous()  # (B, C, h, w)


def propagate_cams(
    cams: Tensor,
    affinity: Tensor,
    *,
    radius: int,
    beta: float,
    steps: int,
    background_alpha: float | None = None,
) -> Tensor:
    """Propagate image-resolution CAMs over the affinity grid and bring them back.

    The CAMs are zero-padded to (h*s, w*s) and average-pooled by s = the affinity grid's
    stride (ceil(H / h) = ceil(W / w)), walked (`random_walk`), upsampled bilinearly
    (align_corners=False) and cropped to (H, W). With `background_alpha` a background channel
    (1 - max_t cams)^alpha (PSA's) is put first and walks with the others; without one (a
    dataset whose tags name every class, stuff included) only the tagged CAMs walk.

    Args:
        cams: (B, T, H, W) float in [0, 1], one normalised CAM per tagged class (B images
            that share T, e.g. padded with zero maps); any device (moved to affinity's).
        affinity: (B, D, h, w) float in [0, 1] on the grid of stride s.
        radius, beta, steps: see `random_walk`.
        background_alpha: the background channel's exponent (> 0), or None.

    Returns:
        (B, T, H, W), or (B, 1 + T, H, W) with the background first: float, affinity's dtype
        and device, >= 0. Labels: argmax over the channels.
    """
    if cams.ndim != 4 or cams.shape[0] != affinity.shape[0]:
        raise ValueError(f"expected cams (B, T, H, W) with B = {affinity.shape[0]}, got {tuple(cams.shape)}")
    _check_affinity(affinity, radius)
    _, _, hh, ww = cams.shape
    h, w = affinity.shape[2:]
    s = -(-hh // h)
    if s < 1 or -(-ww // w) != s or (h - 1) * s >= hh or (w - 1) * s >= ww:
        raise ValueError(
            f"cams of size ({hh}, {ww}) do not match an affinity grid of ({h}, {w}) at one integer "
            "stride (expected ceil(H / h) == ceil(W / w))"
        )
    x = cams.to(device=affinity.device, dtype=affinity.dtype).clamp_min(0)
    if background_alpha is not None:
        if not (isinstance(background_alpha, (int, float)) and math.isfinite(background_alpha) and background_alpha > 0):
            raise ValueError(f"background_alpha must be a positive number or None, got {background_alpha!r}")
        peak = x.amax(dim=1, keepdim=True) if x.shape[1] else torch.zeros_like(x[:, :1])
        x = torch.cat([(1 - peak).clamp(0, 1).pow(background_alpha), x], dim=1)  # (B, 1 + T, H, W)
    if x.shape[1] == 0:  # no tag and no background channel: nothing to walk
        return x.clone()
    x = F.pad(x, (0, w * s - ww, 0, h * s - hh))
    pooled = F.avg_pool2d(x, s) if s > 1 else x  # (B, C, h, w)
    walked = random_walk(pooled, affinity, radius=radius, beta=beta, steps=steps)
    up = F.interpolate(walked, scale_factor=s, mode="bilinear", align_corners=False) if s > 1 else walked
    return up[:, :, :hh, :ww].contiguous()
