"""Training losses for scribble supervision: partial cross-entropy plus regularizers on the
network's softmax.

    from wsdeploy.training.losses import partial_cross_entropy, DenseCRFLoss, GridPottsLoss, \\
        NormalizedCutLoss, EntropyLoss

    loss = partial_cross_entropy(logits, target)            # logits (B, K, H, W), target (B, H, W)
    probs = logits.float().softmax(1)
    valid = target != 254                                   # padding takes no part
    loss = loss + DenseCRFLoss(0.25)(probs, image_0_255, valid)

Every regularizer is a pure function (`dense_crf_loss`, `grid_potts_loss`, `normalized_cut_loss`,
`entropy_loss`) plus an `nn.Module` holding `weight` and the settings, called as
`module(probs (B, K, H, W), image (B, 3, H, W) RGB 0-255, valid (B, H, W) bool)` and returning a
scalar already multiplied by `weight`. All follow the device and dtype of their input (sums in
float32 or wider) and differentiate with respect to the probabilities only.

Normalisation (so a weight means the same at any image size): the Potts losses (dense CRF, grid)
are divided by the kernel mass over valid pairs, v^T W v, which makes them the kernel-weighted
fraction of pixel pairs whose labels disagree, in [0, 1]; the normalized cut is, per image, in
[0, K], averaged over images; the entropy and the cross-entropy are means over pixels.

Suggested starting weights (scribbles, alongside the partial cross-entropy at weight 1):
DenseCRFLoss 0.25 (what rloss's published 2e-9 amounts to on natural photographs, see
`dense`), GridPottsLoss 0.25, NormalizedCutLoss 0.1, EntropyLoss 0.1 or less. At equal
weight the regularizers' gradients (w.r.t. the logits, on the GrabCut photographs with smooth
synthetic predictions, K = 2) are within a factor of about two of each other: grid Potts 0.7x,
entropy 0.9x, normalized cut 1.4-1.9x, quadratic dense CRF 0.4-0.8x the bilinear dense CRF's;
the partial cross-entropy's is 5-8x. These are gradient-matched starting points, not tuned.
"""

from __future__ import annotations

from wsdeploy.training.losses.dense import (
    DenseCRFLoss,
    NormalizedCutLoss,
    dense_crf_loss,
    kernel_mass,
    loss_kernel,
    normalized_cut_loss,
)
from wsdeploy.training.losses.grid import GridPottsLoss, grid_potts_loss
from wsdeploy.training.losses.pointwise import EntropyLoss, entropy_loss, partial_cross_entropy

__all__ = [
    "DenseCRFLoss",
    "EntropyLoss",
    "GridPottsLoss",
    "NormalizedCutLoss",
    "dense_crf_loss",
    "entropy_loss",
    "grid_potts_loss",
    "kernel_mass",
    "loss_kernel",
    "normalized_cut_loss",
    "partial_cross_entropy",
]
