"""Brute-force references for `wsdeploy.training.losses`: dense (N, N) kernel matrices and the
losses written pair by pair, for tiny images (N = H * W of a few dozen pixels) in float64.

Written from the formulas, not from the fast code: the pairwise losses sum over explicit
pixel pairs, the cross-entropy loops over labelled pixels.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from wsdeploy.crf import bilateral_filter

Kernel = Callable[[torch.Tensor], torch.Tensor]  # image (3, H, W) -> W (N, N) float64


def _positions(h: int, w: int) -> torch.Tensor:
    """(N, 2) float64 pixel coordinates (y, x), raster order."""
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    return torch.stack([yy.reshape(-1), xx.reshape(-1)], 1)


def gaussian_kernel(image: torch.Tensor, *, sigma_xy: float, sigma_rgb: float) -> torch.Tensor:
    """Exact bilateral kernel, self term included: image (3, H, W) -> (N, N) float64."""
    _, h, w = image.shape
    pos = _positions(h, w)
    rgb = image.reshape(3, -1).t().double()
    d_xy = ((pos[:, None] - pos[None]) ** 2).sum(-1)
    d_rgb = ((rgb[:, None] - rgb[None]) ** 2).sum(-1)
    return torch.exp(-d_xy / (2 * sigma_xy**2) - d_rgb / (2 * sigma_rgb**2))


def lattice_kernel(image: torch.Tensor, *, sigma_xy: float, sigma_rgb: float) -> torch.Tensor:
    """The bilateral engine's operator as a dense matrix (filter of every basis vector)."""
    _, h, w = image.shape
    n = h * w
    basis = torch.eye(n, dtype=torch.float32).reshape(1, n, h, w)
    out = bilateral_filter(basis, image[None].float(), sigma_xy=sigma_xy, sigma_rgb=sigma_rgb)
    return out.reshape(n, n).t().double()  # column j = W e_j


def grid_kernel(image: torch.Tensor, *, neighbours: int, sigma_rgb: float) -> torch.Tensor:
    """Contrast-sensitive 4- or 8-neighbour weights, zero diagonal: (3, H, W) -> (N, N)."""
    _, h, w = image.shape
    pos = _positions(h, w)
    rgb = image.reshape(3, -1).t().double()
    n = h * w
    out = torch.zeros(n, n, dtype=torch.float64)
    for p in range(n):
        for q in range(n):
            dy, dx = (pos[p] - pos[q]).abs().tolist()
            near = dy + dx == 1 if neighbours == 4 else max(dy, dx) == 1
            if near:
                c = ((rgb[p] - rgb[q]) ** 2).sum()
                out[p, q] = torch.exp(-c / (2 * sigma_rgb**2)) / math.hypot(dy, dx)
    return out


def potts_terms(s: torch.Tensor, kernel: torch.Tensor, v: torch.Tensor, relaxation: str):
    """(cut, mass) for one image, pair by pair.

    Args:
        s: (K, N) probabilities; kernel: (N, N); v: (N,) 0/1 valid mask.

    The quadratic one is the Laplacian form sum_k S~_k^T (diag(W v) - W) S~_k, which the fast
    path computes for any W; for a symmetric W it equals `quadratic_pairwise` (tested), but
    the lattice's operator is only nearly symmetric.
    """
    st = s * v  # S~
    if relaxation == "bilinear":  # sum_pq W_pq sum_k S~_pk (v_q - S~_qk)
        cut = (kernel * (st.sum(0)[:, None] * v[None] - st.t() @ st)).sum()
    else:
        laplacian = torch.diag(kernel @ v) - kernel
        cut = sum(st[c] @ laplacian @ st[c] for c in range(s.shape[0]))
    mass = (kernel * v[:, None] * v[None]).sum()
    return cut, mass


def quadratic_pairwise(s: torch.Tensor, kernel: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """1/2 sum_pq W_pq v_p v_q |S_p - S_q|^2, pair by pair: s (K, N), kernel (N, N), v (N,)."""
    diff = ((s.t()[:, None, :] - s.t()[None, :, :]) ** 2).sum(-1)  # (N, N)
    return 0.5 * (kernel * v[:, None] * v[None] * diff).sum()


def _resize(probs, image, valid, scale_factor):
    if scale_factor == 1.0:
        return probs, image.double(), valid
    probs = F.interpolate(probs, scale_factor=scale_factor, mode="bilinear", align_corners=False)
    image = F.interpolate(image.double(), scale_factor=scale_factor, mode="nearest")
    # valid where no padded pixel has a bilinear weight above 1e-3
    padding = F.interpolate((~valid[:, None]).double(), scale_factor=scale_factor,
                            mode="bilinear", align_corners=False)
    return probs, image, padding[:, 0] <= 1e-3


def potts_loss(probs, image, valid, *, kernel: Kernel, relaxation: str, scale_factor: float = 1.0):
    """Sum of cuts over the batch divided by the sum of kernel masses; `kernel` builds W per image."""
    probs, image, valid = _resize(probs, image, valid, scale_factor)
    b, k = probs.shape[:2]
    cut = mass = 0.0
    for i in range(b):
        c, m = potts_terms(
            probs[i].reshape(k, -1), kernel(image[i]), valid[i].reshape(-1).double(), relaxation
        )
        cut, mass = cut + c, mass + m
    return cut / mass


def ncut_loss(probs, image, valid, *, kernel: Kernel, scale_factor: float = 1.0):
    """sum_k S~_k^T W (v - S~_k) / (d^T S~_k), d = W v, mean over images with a valid pixel."""
    probs, image, valid = _resize(probs, image, valid, scale_factor)
    b, k = probs.shape[:2]
    total, images = 0.0, 0
    for i in range(b):
        w = kernel(image[i])
        v = valid[i].reshape(-1).double()
        if v.sum() == 0:
            continue
        st = probs[i].reshape(k, -1) * v
        d = w @ v
        for c in range(k):
            total = total + st[c] @ w @ (v - st[c]) / (d @ st[c])
        images += 1
    return total / max(images, 1)


def entropy(probs: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over valid pixels of -sum_k p log p, pixel by pixel."""
    b, k, h, w = probs.shape
    terms = []
    for i in range(b):
        for y in range(h):
            for x in range(w):
                if valid[i, y, x]:
                    p = probs[i, :, y, x]
                    terms.append(-sum(p[c] * torch.log(p[c]) for c in range(k) if p[c] > 0))
    return torch.stack(terms).mean()


def partial_ce(logits: torch.Tensor, target: torch.Tensor, ignore=(255, 254)) -> torch.Tensor:
    """Mean over labelled pixels of -log softmax(logits)[label], pixel by pixel."""
    b, _, h, w = logits.shape
    terms = []
    for i in range(b):
        for y in range(h):
            for x in range(w):
                t = int(target[i, y, x])
                if t not in ignore:
                    z = logits[i, :, y, x]
                    terms.append(torch.logsumexp(z, 0) - z[t])
    return torch.stack(terms).mean()
