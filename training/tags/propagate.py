"""Propagated CAMs of a dataset: a CAM folder walked over an affinity net's affinities.

    from wsdeploy.training.tags.affinity import load_affinity_checkpoint
    from wsdeploy.training.tags.propagate import propagate_dataset

    net, card = load_affinity_checkpoint("runs/affinity/model.pt")
    for image_id, cams, classes in propagate_dataset(net, card, data, "cams/train", beta=8, steps=256):
        write_cam(f"rw/{image_id}.npz", cams, classes)         # the CAM file format, same classes

The output is the CAM file format (`wsdeploy.training.tags.cam`): one map per tagged class in
[0, 1], each walked map divided by its own maximum over the image (the normalisation of the
CAMs themselves, so the seed rules, the threshold sweep and the CRF refinement of
`wsdeploy.training.tags.seeds` read propagated CAMs unchanged). As in IRN the background is not
walked: where a dataset has a background class, the seed rules' threshold plays IRN's
constant background score (`sem_seg_bg_thres`) on the walked maps.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from wsdeploy.checkpoint import ModelCard
from wsdeploy.data.image_io import normalize
from wsdeploy.training.tags.affinity import AffinityNet
from wsdeploy.training.tags.cam import CamSource, cam_lookup
from wsdeploy.training.tags.random_walk import propagate_cams

__all__ = ["propagate_dataset", "propagate_image"]

_EPS = 1e-5


@torch.no_grad()
def propagate_image(
    net: AffinityNet, card: ModelCard, images: np.ndarray | torch.Tensor, cams: torch.Tensor, *,
    beta: float, steps: int,
) -> torch.Tensor:
    """Walk the CAMs of a batch of same-size images; maps renormalised to a maximum of 1.

    Args:
        net: an `AffinityNet` in eval mode (its device is used).
        card: its card (mean/std of the input).
        images: (B, H, W, 3) uint8 RGB.
        cams: (B, T, H, W) float in [0, 1] (zero maps pad images with fewer tags).
        beta, steps: see `wsdeploy.training.tags.random_walk.random_walk`.

    Returns:
        (B, T, H, W) float32 in [0, 1] on the net's device; a zero map stays zero.
    """
    device = next(net.parameters()).device
    if cams.ndim == 4 and cams.shape[1] == 0:  # no tags: nothing to walk
        return torch.zeros(cams.shape, device=device)
    x = normalize(torch.as_tensor(images).to(device), tuple(card.mean), tuple(card.std))  # (B, 3, H, W)
    b, _, h, w = x.shape
    if cams.ndim != 4 or cams.shape[0] != b or tuple(cams.shape[2:]) != (h, w):
        raise ValueError(f"expected cams (B, T, H, W) = ({b}, T, {h}, {w}) for the images, got {tuple(cams.shape)}")
    m = net.input_multiple
    ph, pw = -(-h // m) * m, -(-w // m) * m
    x = F.pad(x, (0, pw - w, 0, ph - h))  # zero padding below and right, cropped again at the end
    affinity = net(x)  # (B, D, ph/s, pw/s)
    c = F.pad(cams.to(device=device, dtype=torch.float32), (0, pw - w, 0, ph - h))
    walked = propagate_cams(c, affinity.float(), radius=net.radius, beta=beta, steps=steps)[:, :, :h, :w]
    return walked / (walked.amax(dim=(2, 3), keepdim=True) + _EPS)


def propagate_dataset(
    net: AffinityNet,
    card: ModelCard,
    dataset: Any,
    cam_source: CamSource,
    *,
    beta: float,
    steps: int,
    batch_size: int = 8,
    device: str | torch.device = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Propagated CAMs for every image of `dataset` (consecutive images of one size batched).

    Args:
        net, card: from `load_affinity_checkpoint` (moved to `device`, eval mode).
        dataset: a `SegmentationDataset` without transform ("image" (H, W, 3) uint8, "id").
        cam_source: the CAMs of these images (a CAM folder whose classes match the dataset,
            a mapping or a function; see `cam_lookup`).
        beta, steps: the walk's settings.
        batch_size: images per affinity forward and walk.
        device: "auto", "cpu" or "cuda[:N]".
        progress: called as `progress(done, total)` after every batch.

    Yields:
        (id, cams (T, H, W) float32 in [0, 1], class_indices (T,) int64), T and classes as in
        the CAM file.

    Raises:
        ValueError: a CAM folder for other classes, a missing CAM file, or CAMs whose size is
            not the image's.
    """
    from wsdeploy.backends.torch_backend import resolve_device

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    lookup = cam_lookup(cam_source, dataset)
    net = net.to(resolve_device(device)).eval()
    total = len(dataset)
    batch: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []

    def flush() -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        t_max = max(c.shape[0] for _, _, c, _ in batch)
        h, w = batch[0][1].shape[:2]
        cams = torch.zeros(len(batch), t_max, h, w)
        for i, (_, _, c, _) in enumerate(batch):
            cams[i, : c.shape[0]] = torch.from_numpy(c)
        images = np.stack([img for _, img, _, _ in batch])
        out = propagate_image(net, card, images, cams, beta=beta, steps=steps).cpu().numpy()
        for i, (image_id, _, c, classes) in enumerate(batch):
            yield image_id, out[i, : c.shape[0]], classes
        batch.clear()

    for done in range(1, total + 1):
        item = dataset[done - 1]
        cams, classes = lookup(item["id"])
        image = item["image"]
        if cams.shape[1:] != image.shape[:2]:
            raise ValueError(
                f"image {item['id']!r}: CAMs are {cams.shape[1:]} but the image is {image.shape[:2]}; "
                "the CAM folder was computed for other images"
            )
        if batch and (len(batch) >= batch_size or batch[0][1].shape != image.shape):
            yield from flush()
            if progress is not None:
                progress(done - 1, total)
        batch.append((item["id"], image, cams, classes))
    if batch:
        yield from flush()
        if progress is not None:
            progress(total, total)
