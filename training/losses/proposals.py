"""ADM proposals for the dense-CRF regularized loss (Marin, Tang, Ben Ayed, Boykov, "Beyond
Gradient Descent for Regularized Segmentation Losses", CVPR 2019).

Training on pCE + lambda * R(S) by gradient descent moves the network's softmax S only locally.
ADM splits the problem with an auxiliary labelling Y and alternates:

1. the proposal step (this module): with the network fixed,

       Y* = argmin_Y  E(Y) = U(Y) + lambda * R(Y)    subject to  Y_p = e_{y_p} on scribbled p

   where U(Y) = -sum_p sum_k Y_pk log S_pk / N is the fidelity to the network (the KL coupling
   of ADM up to Y's entropy; N = number of valid pixels), the scribbles are hard constraints
   (so pCE of the proposal is zero), and R is exactly the bilinear dense-CRF loss of
   `wsdeploy.training.losses.dense`:  R(Y) = sum_k Y~_k^T W (v - Y~_k) / (v^T W v), on the
   same `wsdeploy.crf.BilateralKernel` W (build it with `loss_kernel`);
2. the network step (the trainer): cross-entropy of the network against the proposal labels on
   every valid pixel, i.e. `partial_cross_entropy(logits, proposals.labels)`.

The proposal step minimises E by mean-field: the fixed point of
Q_pk ∝ exp(log S_pk + mu * (W Q~_k)_p), mu = 2 * lambda * N / (v^T W v) (the derivative of
N * E for a symmetric W; the label-independent W v drops out of the softmax), with the
scribbled pixels clamped. The discrete proposal is argmax_k Q. The step never returns a
labelling of higher energy than where it started (the network's own argmax with the scribbles
clamped): if mean-field ends higher, the start is kept, so an ADM round cannot go uphill in E.

    kernel = loss_kernel(image, sigma_rgb=30, sigma_xy=25, scale_factor=1.0)   # (B, 3, H, W)
    prop = crf_proposals(probs.detach(), scribbles, kernel, weight=1.0)        # probs (B, K, H, W)
    loss = partial_cross_entropy(logits, prop.labels)                          # train on Y*

In the trainer: `--losses pce,adm` (settings `--adm-*`, `training.losses.settings.ADMSettings`)
adds `ADMProposalLoss`, the cross-entropy to each batch's proposals, from
`--regularizers-from-step` on; the proposals are recomputed at every step from the network's
current output (one mean-field solve per batch, no gradient through it).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wsdeploy.crf import BilateralKernel
from wsdeploy.data.labels import IGNORE_LABEL, PAD_LABEL
from wsdeploy.training.losses.checks import (
    check_label_map,
    check_positive,
    check_probs,
    check_scale_factor,
    check_weight,
    downsample,
)
from wsdeploy.training.losses.pointwise import partial_cross_entropy

__all__ = ["ADMProposalLoss", "Proposals", "crf_proposals", "proposal_energy"]

_EPS = 1e-8  # probabilities are clamped here before the log


@dataclass(frozen=True)
class Proposals:
    """The result of one proposal step.

    Attributes:
        labels: (B, H, W) int64 proposal labels in [0, K); PAD_LABEL (254) on padding, so
            `partial_cross_entropy` skips it.
        probs: (B, K, H, W) float32, the mean-field marginals Q (one-hot on scribbles).
        energy_start: () float, E of the network's argmax with the scribbles clamped.
        energy_end: () float, E of `labels` (<= energy_start).
        iterations: mean-field iterations run.
    """

    labels: torch.Tensor
    probs: torch.Tensor
    energy_start: float
    energy_end: float
    iterations: int


def proposal_energy(
    labelling: torch.Tensor, probs: torch.Tensor, kernel: BilateralKernel, *, weight: float,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """E(Y) = U(Y) + weight * R(Y) of the module docstring, for a soft or one-hot labelling.

    Args:
        labelling: (B, K, H, W) float, Y: rows on the simplex (one-hot for a discrete labelling).
        probs: (B, K, H, W) float, the network's softmax S.
        kernel: the bilateral kernel of the batch at this resolution (`loss_kernel`).
        weight: lambda >= 0.
        valid: (B, H, W) bool, False on padding; None = every pixel valid.

    Returns:
        () float32 scalar.
    """
    check_probs(probs)
    if labelling.shape != probs.shape:
        raise ValueError(f"expected labelling {tuple(probs.shape)} like probs, got {tuple(labelling.shape)}")
    v = _rows(_valid(probs, valid)[:, None].float())  # (B*N, 1)
    log_s = _rows(probs.float()).clamp_min(_EPS).log()  # not in place: _rows may be a view
    with torch.autocast(probs.device.type, enabled=False):  # sparse products in float32
        return _energy(_rows(labelling.float()), log_s, v, kernel, weight=float(weight))


def _energy(y: torch.Tensor, log_s: torch.Tensor, v: torch.Tensor, kernel: BilateralKernel, *,
            weight: float) -> torch.Tensor:
    """`proposal_energy` on row-major values: y and log_s (B*N, K) float32 (log S clamped at
    _EPS), v (B*N, 1) float32 valid mask, on `kernel.operator()`'s pixel order."""
    y = y * v
    count = v.sum().clamp_min(1.0)
    unary = -(y * log_s).sum() / count
    out = kernel.operator()(torch.cat([v, y], 1))  # (B*N, 1 + K): W v, W Y~
    degree, wy = out[:, :1], out[:, 1:]
    mass = (v * degree).sum().clamp_min(torch.finfo(torch.float32).tiny)
    pairwise = (y * (degree - wy)).sum() / mass
    return unary + weight * pairwise


@torch.no_grad()
def crf_proposals(
    probs: torch.Tensor,
    scribbles: torch.Tensor,
    kernel: BilateralKernel,
    *,
    weight: float = 1.0,
    iterations: int = 10,
    valid: torch.Tensor | None = None,
    ignore_index: int = IGNORE_LABEL,
    pad_index: int = PAD_LABEL,
) -> Proposals:
    """The ADM proposal step: mean-field minimisation of pCE (hard) + weight * dense-CRF on W.

    Args:
        probs: (B, K, H, W) float, the network's softmax S (no gradient is taken), at the
            kernel's resolution.
        scribbles: (B, H, W) integer, class indices on scribbled pixels, `ignore_index` (255)
            elsewhere, `pad_index` (254) on padding.
        kernel: `loss_kernel(image, ...)` of the same batch, (B, H, W) like probs.
        weight: lambda, the dense-CRF weight (as in `DenseCRFLoss`), >= 0.
        iterations: mean-field iterations, >= 1.
        valid: (B, H, W) bool, False on padding; default: scribbles != pad_index.

    Returns:
        `Proposals` (labels, marginals, energy before and after).

    The iterations run on row-major (B*N, K) float32 values, the lattice operator's own layout,
    so each one is a splat, a blur and a slice fused with the unary (no transposes), then a
    softmax over contiguous rows.
    """
    check_probs(probs)
    check_label_map(scribbles, probs, name="scribbles", like_name="probs")
    weight = check_weight(weight)
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be an int >= 1, got {iterations!r}")
    if (kernel.batch, kernel.height, kernel.width) != (probs.shape[0], *probs.shape[2:]):
        raise ValueError(
            f"the kernel was built for {kernel.batch} images of {kernel.height}x{kernel.width}, "
            f"probs are {tuple(probs.shape)}; build it with loss_kernel at the probs' resolution"
        )
    scribbles = scribbles.long()
    if valid is None:
        valid = scribbles != pad_index
    valid = _valid(probs, valid)
    b, k, h, w = probs.shape
    seeded = valid & (scribbles != ignore_index) & (scribbles != pad_index)  # (B, H, W)
    if bool(((scribbles < 0) | (scribbles >= k))[seeded].any()):
        raise ValueError(f"scribble labels must lie in [0, {k}) or be {ignore_index}/{pad_index}")
    clamp = seeded.reshape(-1, 1)  # (B*N, 1), the operator's pixel order (raster per image)
    seed_onehot = F.one_hot(scribbles.reshape(-1).clamp(0, k - 1), k).float()  # (B*N, K)
    s_rows = _rows(probs.float())  # (B*N, K)
    log_s = s_rows.clamp_min(_EPS).log_()
    v = valid.reshape(-1, 1).float()  # (B*N, 1)
    op = kernel.operator()

    def clamped(q: torch.Tensor) -> torch.Tensor:
        return torch.where(clamp, seed_onehot, q)

    with torch.autocast(probs.device.type, enabled=False):  # sparse products in float32
        mass = (v * op(v)).sum().clamp_min(torch.finfo(torch.float32).tiny)  # v^T W v
        mu = 2.0 * weight * float(v.sum()) / float(mass)
        mv = v * mu  # (B*N, 1): the message mu * W (Q v) is W applied to Q * (mu v)
        start = clamped(_onehot(s_rows.argmax(1), k))
        q = clamped(s_rows)
        for _ in range(iterations):
            q = clamped(torch.softmax(op(q * mv, add_to=log_s), dim=1))  # log S + mu W Q~
        end = clamped(_onehot(q.argmax(1), k))
        e_start = float(_energy(start, log_s, v, kernel, weight=weight))
        e_end = float(_energy(end, log_s, v, kernel, weight=weight))
    if e_end > e_start:  # never uphill: keep the start
        end, e_end = start, e_start
    labels = torch.where(valid, end.argmax(1).reshape(b, h, w), torch.full_like(scribbles, pad_index))
    return Proposals(labels=labels, probs=_images(q, b, h, w), energy_start=e_start, energy_end=e_end,
                     iterations=iterations)


class ADMProposalLoss(nn.Module):
    """`weight` * cross-entropy of the network against this batch's ADM proposals.

    Each call solves the proposal step on the detached softmax at `scale_factor` (probabilities
    bilinear, scribbles and padding nearest, the kernel as `loss_kernel` builds it), upsamples
    the proposal labels (nearest) to the labels' resolution, puts the scribbles back where they
    are, and returns `weight * partial_cross_entropy(logits, proposals)`.

    Args:
        weight: multiplier of the cross-entropy, >= 0.
        crf_weight: lambda of the proposals' dense-CRF term (as `DenseCRFLoss`'s weight).
        sigma_rgb, sigma_xy, scale_factor: the kernel's settings (as `DenseCRFLoss`).
        iterations: mean-field iterations per proposal step.

    Shape:
        logits (B, K, H, W) float at the labels' resolution; target (B, H, W) int64 (255
        unlabelled, 254 padding); image (B, 3, H, W) RGB 0-255, or `kernel=` from `loss_kernel`
        with the same settings. Output () scalar. `last` holds the latest `Proposals`.
    """

    def __init__(self, weight: float = 1.0, *, crf_weight: float = 1.0, sigma_rgb: float = 15.0,
                 sigma_xy: float = 100.0, scale_factor: float = 0.5, iterations: int = 10) -> None:
        super().__init__()
        self.weight = check_weight(weight)
        self.crf_weight = check_weight(crf_weight)
        self.sigma_rgb = check_positive("sigma_rgb", sigma_rgb)
        self.sigma_xy = check_positive("sigma_xy", sigma_xy)
        self.scale_factor = check_scale_factor(scale_factor)
        if not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"iterations must be an int >= 1, got {iterations!r}")
        self.iterations = iterations
        self.last: Proposals | None = None

    def forward(self, logits: torch.Tensor, target: torch.Tensor, image: torch.Tensor | None = None, *,
                kernel: BilateralKernel | None = None) -> torch.Tensor:
        check_probs(logits, "logits")
        check_label_map(target, logits, name="target", like_name="logits")
        if kernel is None:
            if image is None:
                raise ValueError("give the image (B, 3, H, W) or a prebuilt kernel (loss_kernel)")
            from wsdeploy.training.losses.dense import loss_kernel  # dense imports nothing from here

            kernel = loss_kernel(image, sigma_rgb=self.sigma_rgb, sigma_xy=self.sigma_xy,
                                 scale_factor=self.scale_factor)
        target = target.long()
        valid = target != PAD_LABEL
        probs = torch.softmax(logits.detach().float(), dim=1)  # (B, K, H, W)
        small_probs, _, small_valid = downsample(probs, None, valid, self.scale_factor)
        small_target = F.interpolate(target[:, None].float(), size=small_probs.shape[2:], mode="nearest")[:, 0].long()
        small_target = torch.where(small_valid, small_target, torch.full_like(small_target, PAD_LABEL))
        prop = crf_proposals(small_probs, small_target, kernel, weight=self.crf_weight,
                             iterations=self.iterations, valid=small_valid)
        self.last = prop
        labels = F.interpolate(prop.labels[:, None].float(), size=target.shape[1:], mode="nearest")[:, 0].long()
        scribbled = valid & (target != IGNORE_LABEL)
        labels = torch.where(scribbled, target, labels)
        labels = torch.where(valid & (labels != PAD_LABEL), labels, torch.full_like(labels, PAD_LABEL))
        return self.weight * partial_cross_entropy(logits, labels, ignore_index=IGNORE_LABEL, pad_index=PAD_LABEL)

    def extra_repr(self) -> str:
        return (f"weight={self.weight}, crf_weight={self.crf_weight}, sigma_rgb={self.sigma_rgb}, "
                f"sigma_xy={self.sigma_xy}, scale_factor={self.scale_factor}, iterations={self.iterations}")


def _onehot(labels: torch.Tensor, k: int) -> torch.Tensor:
    """(B*N,) int -> (B*N, K) float32 one-hot."""
    return F.one_hot(labels, k).float()


def _rows(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B*N, C) row-major, the lattice operator's layout (a copy, or a view when C = 1)."""
    b, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(b * h * w, c)


def _images(rows: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
    """(B*N, C) row-major -> (B, C, H, W) contiguous."""
    return rows.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()


def _valid(probs: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    b, _, h, w = probs.shape
    if valid is None:
        return torch.ones((b, h, w), dtype=torch.bool, device=probs.device)
    if tuple(valid.shape) != (b, h, w) or valid.dtype != torch.bool:
        raise ValueError(f"expected valid (B, H, W) = {(b, h, w)} bool, got {tuple(valid.shape)} {valid.dtype}")
    return valid
