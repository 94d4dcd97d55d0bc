"""Class activation maps (CAMs) of a tags-trained classifier, and the CAM files on disk.

Longer than the house's ~400 lines on purpose: computing CAMs and their file format (written,
read, looked up per image) change together.

    from wsdeploy.checkpoint import load_checkpoint
    from wsdeploy.data.datasets import SegmentationDataset
    from wsdeploy.training.tags.cam import compute_cams, write_cam

    model, card = load_checkpoint("runs/cls/model.pt")          # a classifier_* checkpoint
    data = SegmentationDataset("data/synthetic", split="train", labels=None)
    for image_id, cams, classes in compute_cams(model, card, data, device="cuda"):
        write_cam(f"cams/{image_id}.npz", cams, classes)     # (T, H, W) in [0, 1], (T,) indices

Provenance: the multi-scale, flip-averaged CAM of IRN (Ahn et al., CVPR 2019,
``make_cam.py``): ReLU of each scale's CAM, upsampled to the image and summed, then each class
divided by its maximum over the image; only the image's tagged classes are kept.

Classes. The classifier scores the dataset's classes minus its background class (if it has one):
`card.classes`. CAMs are matched to dataset classes by name, and every array that leaves this
module (CAM files, seeds) uses dataset class indices. A dataset's background class is
`index.background_index` when the layout sets it (VOC: 0), else a class literally named
"background" (any case), else none (the synthetic benchmark: every class, stuff included, is a
tag).

CAM file (``<CAM_DIR>/<id>.npz``, `np.savez_compressed`, written atomically)::

    cams     (T, H, W) float16 in [0, 1], one map per tagged class, at the image's size
    classes  (T,) int16, the dataset class index of each map, ascending

plus ``<CAM_DIR>/cams.json``, written last (a folder without it is an interrupted run): the
checkpoint, scales, flip, dataset, split, dataset classes, background index and versions.
"""
from __future__ import annotations

import json
import logging
import math
import os
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsdeploy.atomic import atomic_path, atomic_write_text
from wsdeploy.checkpoint import ModelCard
from wsdeploy.data.image_io import normalize
from wsdeploy.training.tags.targets import dataset_background_index

__all__ = [
    "CAM_MANIFEST",
    "cam_lookup",
    "class_mapping",
    "compute_cams",
    "multiscale_cam",
    "normalize_cams",
    "read_cam",
    "read_cam_manifest",
    "write_cam",
    "write_cam_manifest",
]

logger = logging.getLogger(__name__)

CAM_MANIFEST = "cams.json"
_EPS = 1e-5


def class_mapping(card_classes: Sequence[str], dataset_classes: Sequence[str], bg: int | None) -> np.ndarray:
    """Map the classifier's outputs to dataset classes by name.

    Args:
        card_classes: the classifier's K class names (`card.classes`).
        dataset_classes: the dataset's class names.
        bg: the dataset's background index, or None.

    Returns:
        (K,) int64, entry k = the dataset class index of classifier output k.

    Raises:
        ValueError: a card class is not a dataset class (or is its background), or a
            dataset class other than the background is not a card class.
    """
    where = {name: i for i, name in enumerate(dataset_classes)}
    unknown = [c for c in card_classes if c not in where]
    if unknown:
        raise ValueError(
            f"the classifier's classes {unknown} are not dataset classes; the dataset has "
            f"{list(dataset_classes)}"
        )
    if bg is not None and dataset_classes[bg] in card_classes:
        raise ValueError(
            f"the classifier scores the dataset's background class {dataset_classes[bg]!r}; a "
            "tags classifier scores the classes minus background"
        )
    foreground = [c for i, c in enumerate(dataset_classes) if i != bg]
    missing = [c for c in foreground if c not in set(card_classes)]
    if missing:
        raise ValueError(
            f"dataset classes {missing} have no classifier output; the classifier was trained "
            f"on {list(card_classes)} (the dataset's classes minus background must match)"
        )
    return np.array([where[c] for c in card_classes], dtype=np.int64)


def _scaled_size(h: int, w: int, scale: float, multiple: int) -> tuple[int, int]:
    """(round(h*s/m)*m, round(w*s/m)*m), rounded half up (not Python's half to even), >= m."""
    return (max(multiple, math.floor(h * scale / multiple + 0.5) * multiple),
            max(multiple, math.floor(w * scale / multiple + 0.5) * multiple))


@torch.no_grad()
def multiscale_cam(
    model: nn.Module, x: Tensor, *, scales: Sequence[float] = (0.5, 1.0, 1.5, 2.0), flip: bool = True
) -> Tensor:
    """Multi-scale (and flipped) CAMs summed at the input's resolution.

    For each scale s, `x` is resized (bilinear, align_corners=False, no padding) to
    (round(H*s/m)*m, round(W*s/m)*m) (half up), m = `model.input_multiple` (at least m); its CAM,
    and with `flip` the CAM of its mirror image mirrored back, each after a ReLU, are upsampled
    to (H, W) (bilinear) and added up. Without padding every step commutes with a horizontal
    flip, so the result for a flipped image is the flipped result (up to float rounding).

    Args:
        model: a classifier with `cam(x) -> (B, K, h, w)` and `input_multiple`, in eval mode.
        x: (B, 3, H, W) float32, normalised with the model card's mean/std; any device (it is
            moved to the model's).
        scales: resize factors, each > 0.
        flip: also use the horizontally flipped input.

    Returns:
        (B, K, H, W) float32 on the model's device, >= 0: raw sums over scales and flips
        (un-normalised; see `normalize_cams`).
    """
    if x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
        raise ValueError(f"expected x of shape (B, 3, H, W) float, got {tuple(x.shape)} {x.dtype}")
    if not scales or any(not (isinstance(s, (int, float)) and math.isfinite(s) and s > 0) for s in scales):
        raise ValueError(f"scales must be a non-empty list of positive numbers, got {list(scales)}")
    multiple = int(getattr(model, "input_multiple", 1))
    device = next(model.parameters()).device
    x = x.to(device=device, dtype=torch.float32)
    b, _, h, w = x.shape
    total: Tensor | None = None
    for scale in scales:
        size = _scaled_size(h, w, scale, multiple)
        xs = x if size == (h, w) else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if flip:
            xs = torch.cat([xs, xs.flip(-1)], dim=0)  # (2B, 3, h', w')
        cam = F.relu(model.cam(xs).float())  # (B or 2B, K, h'/s, w'/s)
        if flip:
            cam = cam[:b] + cam[b:].flip(-1)  # (B, K, h'/s, w'/s)
        cam = F.interpolate(cam, size=(h, w), mode="bilinear", align_corners=False)  # (B, K, H, W)
        total = cam if total is None else total + cam
    assert total is not None  # scales is non-empty
    return total


def normalize_cams(cams: Tensor, tags_multihot: Tensor) -> Tensor:
    """Per image and class divide by the spatial maximum (+1e-5); zero untagged classes.

    Args:
        cams: (B, K, H, W) float, >= 0 (e.g. from `multiscale_cam`).
        tags_multihot: (B, K) bool or 0/1, the classes each image is tagged with.

    Returns:
        (B, K, H, W) float32 in [0, 1], same device as `cams`.
    """
    if cams.ndim != 4:
        raise ValueError(f"expected cams of shape (B, K, H, W), got {tuple(cams.shape)}")
    if tuple(tags_multihot.shape) != tuple(cams.shape[:2]):
        raise ValueError(
            f"expected tags_multihot of shape {tuple(cams.shape[:2])} (B, K), got {tuple(tags_multihot.shape)}"
        )
    cams = cams.float()
    peak = cams.amax(dim=(2, 3), keepdim=True)  # (B, K, 1, 1)
    keep = tags_multihot.to(device=cams.device, dtype=torch.bool)[:, :, None, None]  # (B, K, 1, 1)
    return torch.where(keep, cams / (peak + _EPS), torch.zeros((), device=cams.device))


def compute_cams(
    model: nn.Module,
    card: ModelCard,
    dataset: Any,
    *,
    batch_size: int = 8,
    scales: Sequence[float] = (0.5, 1.0, 1.5, 2.0),
    flip: bool = True,
    device: str | torch.device = "auto",
    num_workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Normalised CAMs of the tagged classes for every image of a dataset.

    Images of the same size are batched together (at most `batch_size`; a few sizes are held
    at once, so the order of the results is not the dataset's).

    Args:
        model: the classifier of `card` (`load_checkpoint`); moved to `device`, set to eval.
        card: its model card: `card.classes` are the classifier's outputs, `card.mean/std` the
            input normalisation.
        dataset: a `SegmentationDataset` without transform (items with "image" (H, W, 3)
            uint8, "tags" list of dataset class indices or None, "id"), with `classes`.
        batch_size: images per forward pass (>= 1).
        scales, flip: see `multiscale_cam`.
        device: "auto" (CUDA if available), "cpu", "cuda[:N]".
        num_workers: processes decoding images (torch DataLoader), 0 = in this process.
        progress: called as `progress(done, total)` after every batch.

    Yields:
        (id, cams (T, H, W) float32 in [0, 1], class_indices (T,) int64 dataset class indices,
        ascending): one map per tag; a tag naming the background class is dropped; T may be 0.

    Raises:
        ValueError: classes that do not match (see `class_mapping`), a model without `cam`, an
            image without tags (None; an empty list is fine).
    """
    from torch.utils.data import DataLoader

    from wsdeploy.backends.torch_backend import resolve_device

    if not hasattr(model, "cam"):
        raise ValueError(f"model {card.arch!r} has no cam(); CAMs need a classifier_* checkpoint")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    bg = dataset_background_index(dataset)
    to_dataset = class_mapping(card.classes, dataset.classes, bg)  # (K,)
    to_model = {int(d): k for k, d in enumerate(to_dataset)}
    _check_tags_present(dataset)
    dev = resolve_device(device)
    model = model.to(dev).eval()

    def run(items: list[dict[str, Any]]) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        images = torch.from_numpy(np.stack([it["image"] for it in items])).to(dev)  # (B, H, W, 3)
        x = normalize(images, tuple(card.mean), tuple(card.std))  # (B, 3, H, W)
        tags = [sorted({to_model[int(t)] for t in it["tags"] if t != bg}) for it in items]
        multihot = torch.zeros(len(items), len(to_dataset), dtype=torch.bool)  # (B, K)
        for row, t in enumerate(tags):
            multihot[row, t] = True
        cams = normalize_cams(multiscale_cam(model, x, scales=scales, flip=flip), multihot)
        for it, t, cam in zip(items, tags, cams):
            order = np.argsort(to_dataset[t], kind="stable")  # ascending dataset indices
            chosen = [t[i] for i in order]
            yield it["id"], cam[chosen].cpu().numpy(), to_dataset[chosen].astype(np.int64)

    loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=num_workers, collate_fn=_identity)
    total, done = len(dataset), 0
    pending: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for item in loader:
        _check_item(item, len(dataset.classes))
        pending.setdefault(item["image"].shape[:2], []).append(item)
        full = [k for k, v in pending.items() if len(v) >= batch_size]
        if not full and sum(len(v) for v in pending.values()) >= 4 * batch_size:
            full = [max(pending, key=lambda k: len(pending[k]))]  # many sizes: run the largest group
        for key in full:
            batch = pending.pop(key)
            yield from run(batch)
            done += len(batch)
            if progress is not None:
                progress(done, total)
    for batch in pending.values():
        yield from run(batch)
        done += len(batch)
        if progress is not None:
            progress(done, total)


def _identity(item: dict[str, Any]) -> dict[str, Any]:
    return item


def _check_tags_present(dataset: Any) -> None:
    """Fail before any computation when the index already shows images without tags."""
    index = getattr(dataset, "index", None)
    if index is None or getattr(index, "tags_from_masks", False):
        return  # tags come from masks: checked per item
    untagged = [s.id for s in index.samples if s.tags is None]
    if untagged:
        shown = ", ".join(repr(i) for i in untagged[:5]) + (", ..." if len(untagged) > 5 else "")
        raise ValueError(
            f"{len(untagged)} image(s) have no tags (not listed in tags.txt): {shown}; CAMs need "
            "image-level tags (list an image with no class names to say it has none)"
        )


def _check_item(item: dict[str, Any], num_classes: int) -> None:
    image = item.get("image")
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"image {item.get('id')!r}: expected an (H, W, 3) uint8 array (a dataset without "
            "transform), got " + (f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__)
        )
    if item.get("tags") is None:
        raise ValueError(f"image {item['id']!r} has no tags; CAMs need image-level tags")
    bad = [t for t in item["tags"] if not 0 <= int(t) < num_classes]
    if bad:
        raise ValueError(f"image {item['id']!r}: tags {bad} are not class indices 0..{num_classes - 1}")


def write_cam(path: str | os.PathLike, cams: np.ndarray, class_indices: np.ndarray) -> None:
    """Write one image's CAMs atomically.

    Args:
        path: the `.npz` file to write.
        cams: (T, H, W) float in [0, 1], stored as float16.
        class_indices: (T,) int dataset class indices, stored as int16.
    """
    cams = np.asarray(cams)
    classes = np.asarray(class_indices)
    if cams.ndim != 3 or classes.shape != (cams.shape[0],):
        raise ValueError(f"expected cams (T, H, W) and class_indices (T,), got {cams.shape} and {classes.shape}")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: numpy adds no suffix
        np.savez_compressed(f, cams=cams.astype(np.float16), classes=classes.astype(np.int16))


def read_cam(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a CAM file written by `write_cam`.

    Returns:
        (cams (T, H, W) float32 in [0, 1], class_indices (T,) int64).

    Raises:
        ValueError: a missing, unreadable or malformed file.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"CAM file not found: {str(path)!r}")
    try:
        with np.load(path, allow_pickle=False) as data:
            cams, classes = data["cams"], data["classes"]
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable CAM file (expected 'cams' and 'classes' arrays): {exc}") from None
    if cams.ndim != 3 or classes.shape != (cams.shape[0],):
        raise ValueError(f"{path}: expected cams (T, H, W) and classes (T,), got {cams.shape} and {classes.shape}")
    return cams.astype(np.float32), classes.astype(np.int64)


def write_cam_manifest(folder: str | os.PathLike, manifest: dict[str, Any]) -> None:
    """Write `<folder>/cams.json` (JSON-plain dict; library versions are added)."""
    from wsdeploy.environment import library_versions

    data = {**manifest, "versions": library_versions()}
    atomic_write_text(Path(folder) / CAM_MANIFEST, json.dumps(data, indent=2) + "\n")


def read_cam_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """Read `<folder>/cams.json`.

    Raises:
        ValueError: no folder, no manifest (an interrupted run), or a manifest without the
            dataset's `classes` and `background_index`.
    """
    path = Path(folder) / CAM_MANIFEST
    if not path.is_file():
        raise ValueError(
            f"no {CAM_MANIFEST} in {str(folder)!r}: not a CAM folder, or `wsdeploy cam` was "
            "interrupted before it finished (run it again)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list) or "background_index" not in data:
        raise ValueError(f"{path}: expected a JSON object with 'classes' and 'background_index'")
    return data


CamSource = str | os.PathLike | Mapping[str, tuple[np.ndarray, np.ndarray]] | Callable[[str], tuple[np.ndarray, np.ndarray]]


def cam_lookup(cam_source: CamSource, dataset: Any) -> Callable[[str], tuple[np.ndarray, np.ndarray]]:
    """A function image id -> (cams (T, H, W) float32, class_indices (T,) int64) for `dataset`.

    Args:
        cam_source: a CAM folder (its `cams.json` must list the dataset's classes and
            background index), a mapping id -> (cams, class_indices), or such a function.
        dataset: the dataset the CAMs belong to (`classes`, optionally `index`).

    Raises:
        ValueError: the folder's manifest does not match the dataset; later, from the returned
            function, an image with no CAM file.
    """
    if isinstance(cam_source, Mapping):
        source = cam_source

        def from_mapping(image_id: str) -> tuple[np.ndarray, np.ndarray]:
            if image_id not in source:
                raise ValueError(f"no CAM for image {image_id!r}")
            cams, classes = source[image_id]
            return np.asarray(cams, dtype=np.float32), np.asarray(classes, dtype=np.int64)

        return from_mapping
    if callable(cam_source):
        return cam_source
    folder = Path(cam_source)
    manifest = read_cam_manifest(folder)
    bg = dataset_background_index(dataset)
    if list(manifest["classes"]) != list(dataset.classes) or manifest["background_index"] != bg:
        raise ValueError(
            f"the CAMs in {str(folder)!r} were computed for classes {manifest['classes']} "
            f"(background {manifest['background_index']}); this dataset has {list(dataset.classes)} "
            f"(background {bg})"
        )

    def from_folder(image_id: str) -> tuple[np.ndarray, np.ndarray]:
        path = folder / f"{image_id}.npz"
        if not path.is_file():
            raise ValueError(
                f"no CAM file for image {image_id!r} in {str(folder)!r} (CAMs were computed for "
                f"split {manifest.get('split')!r}); run `wsdeploy cam --split ...` for this split"
            )
        return read_cam(path)

    return from_folder
