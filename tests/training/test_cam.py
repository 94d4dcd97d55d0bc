"""CAMs: the classifier's CAM contract, multi-scale/flip CAMs, class mapping, CAM files."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn
from wsdeploy.training.tags.cam import (
    cam_lookup,
    class_mapping,
    compute_cams,
    multiscale_cam,
    normalize_cams,
    read_cam,
    write_cam,
    write_cam_manifest,
)
from wsdeploy.training.tags.targets import background_index, dataset_background_index

from wsdeploy.checkpoint import ModelCard
from wsdeploy.data.datasets import SegmentationDataset
from wsdeploy.data.image_io import normalize
from wsdeploy.models import build_model

VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]


def _classifier(num_classes: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("classifier_resnet18", num_classes, width=16).eval()


def _write_rgb(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(image[:, :, ::-1]))


def make_folder_dataset(root: Path, classes: list[str], tags: dict[str, list[str]], sizes: dict[str, tuple[int, int]]) -> Path:
    """Folder layout: random images of `sizes`, `tags` in tags.txt (ids not in it: untagged)."""
    rng = np.random.default_rng(0)
    for image_id, (h, w) in sizes.items():
        _write_rgb(root / "images" / f"{image_id}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    (root / "tags.txt").write_text("".join(f"{i} {' '.join(t)}\n" for i, t in tags.items()))
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("\n".join(sizes) + "\n")
    return root


def make_voc(root: Path) -> Path:
    """VOC2012 with 3 train images: masks with classes {0, 8}, {0, 12, 15}, {0} (no tag)."""
    voc = root / "VOCdevkit" / "VOC2012"
    rng = np.random.default_rng(1)
    masks = {"2007_000001": [8], "2007_000002": [12, 15], "2007_000003": []}
    for image_id, present in masks.items():
        _write_rgb(voc / "JPEGImages" / f"{image_id}.jpg", rng.integers(0, 256, (24, 40, 3), dtype=np.uint8))
        mask = np.zeros((24, 40), np.uint8)
        for k, c in enumerate(present):
            mask[4 + 8 * k : 10 + 8 * k, 5:30] = c
        (voc / "SegmentationClass").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(voc / "SegmentationClass" / f"{image_id}.png"), mask)
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(masks) + "\n")
    return root


# The CAM contract of the classifier.


def test_class_score_is_the_spatial_mean_of_the_cam():
    model = _classifier(3)
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        logits = model(x)  # (2, 3)
        cam = model.cam(x)  # (2, 3, 3, 4)
        features = model.backbone.forward_features(x)["layer4"]  # (2, C, 3, 4)
    weight = model.classifier.weight[:, :, 0, 0]  # (3, C), 1x1 conv without bias
    manual_cam = torch.einsum("kc,bchw->bkhw", weight, features)
    torch.testing.assert_close(cam, manual_cam, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits, cam.mean((2, 3)), rtol=0, atol=0)
    # linear conv and average pooling commute: classifying the pooled features gives the same
    torch.testing.assert_close(logits, features.mean((2, 3)) @ weight.t(), rtol=1e-5, atol=1e-5)


# multiscale_cam.


class _ConstantCam(nn.Module):
    """cam(x) = ones at stride 8; records the input sizes it saw."""

    input_multiple = 8

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.sizes: list[tuple[int, int]] = []

    def cam(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(tuple(x.shape[-2:]))
        b, _, h, w = x.shape
        return torch.ones(b, 2, h // 8, w // 8) + self.anchor


def test_multiscale_cam_resizes_to_multiples_and_sums_scales_and_flips():
    model = _ConstantCam()
    cams = multiscale_cam(model, torch.zeros(1, 3, 37, 50), scales=(0.25, 0.5, 1.0, 2.0), flip=True)
    # round(37 s / 8) * 8 and round(50 s / 8) * 8, at least 8
    assert model.sizes == [(8, 16), (16, 24), (40, 48), (72, 104)]
    assert cams.shape == (1, 2, 37, 50) and cams.dtype == torch.float32
    torch.testing.assert_close(cams, torch.full_like(cams, 8.0))  # 4 scales x (image + flip)
    model.sizes.clear()
    no_flip = multiscale_cam(model, torch.zeros(1, 3, 32, 32), scales=(1.0,), flip=False)
    assert model.sizes == [(32, 32)]
    torch.testing.assert_close(no_flip, torch.ones_like(no_flip))


def test_multiscale_cam_of_a_flipped_image_is_the_flipped_cam():
    model = _classifier(3)
    x = torch.randn(2, 3, 37, 50)  # sizes that are not multiples: every scale resizes
    cams = multiscale_cam(model, x)
    flipped = multiscale_cam(model, x.flip(-1))
    assert cams.shape == (2, 3, 37, 50) and bool((cams >= 0).all())
    # The flip-averaged CAM f(x) + flip(f(flip x)) is symmetric by construction, and bilinear
    # resizing (align_corners=False, no padding) commutes with a flip; what differs is float
    # rounding of the mirrored interpolation weights, ~1e-7 of the values.
    scale = float(cams.max())
    torch.testing.assert_close(flipped.flip(-1) / scale, cams / scale, rtol=0, atol=1e-5)


def test_multiscale_cam_rejects_bad_input():
    model = _ConstantCam()
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        multiscale_cam(model, torch.zeros(3, 16, 16))
    with pytest.raises(ValueError, match="scales"):
        multiscale_cam(model, torch.zeros(1, 3, 16, 16), scales=(1.0, 0.0))


def test_normalize_cams_scales_each_tagged_class_to_one_and_zeroes_the_others():
    cams = torch.rand(2, 3, 5, 6) * 7
    tags = torch.tensor([[True, False, True], [False, False, False]])
    out = normalize_cams(cams, tags)
    peaks = out.amax((2, 3))
    torch.testing.assert_close(peaks[0, [0, 2]], torch.ones(2), rtol=0, atol=1e-5)
    assert float(out[0, 1].abs().max()) == 0 and float(out[1].abs().max()) == 0
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        normalize_cams(cams, tags[:, :2])


# Classes, background and compute_cams.


def test_background_index_rule():
    assert background_index(["sky", "grass", "ball"]) is None
    assert background_index(["Background", "cat"]) == 0
    assert background_index(["cat", "BACKGROUND"]) == 1
    with pytest.raises(ValueError, match="more than one"):
        background_index(["background", "Background"])


def test_class_mapping_by_name_and_its_errors():
    assert class_mapping(["dog", "cat"], ["background", "cat", "dog"], 0).tolist() == [2, 1]
    assert class_mapping(["b", "a"], ["a", "b"], None).tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"\['horse'\] are not dataset classes"):
        class_mapping(["cat", "horse"], ["background", "cat", "dog"], 0)
    with pytest.raises(ValueError, match=r"dataset classes \['dog'\] have no classifier output"):
        class_mapping(["cat"], ["background", "cat", "dog"], 0)
    with pytest.raises(ValueError, match="background class 'background'"):
        class_mapping(["background", "cat", "dog"], ["background", "cat", "dog"], 0)


def _card(classes: list[str], background: str | None) -> ModelCard:
    return ModelCard(arch="classifier_resnet18", arch_kwargs={"width": 16}, classes=classes,
                     supervision="tags", training={"background": background})


def _reference(model: nn.Module, card: ModelCard, image: np.ndarray, channels: list[int]) -> np.ndarray:
    x = normalize(image, tuple(card.mean), tuple(card.std))
    cams = multiscale_cam(model, x, scales=(1.0, 0.5), flip=True)
    multihot = torch.zeros(1, card.num_classes, dtype=torch.bool)
    multihot[0, channels] = True
    return normalize_cams(cams, multihot)[0, channels].numpy()


def test_compute_cams_without_background_maps_classes_by_name(tmp_path):
    classes = ["sky", "grass", "ball", "star"]  # synthetic-style: no background, every class tagged
    sizes = {"a": (32, 48), "b": (32, 48), "c": (20, 30), "d": (32, 48)}
    tags = {"a": ["sky", "ball"], "b": ["star"], "c": ["grass", "sky", "star"], "d": []}
    data = SegmentationDataset(make_folder_dataset(tmp_path / "ds", classes, tags, sizes), labels=None)
    assert dataset_background_index(data) is None
    card = _card(["star", "ball", "grass", "sky"], None)  # the classifier's order differs
    model = _classifier(4)
    out = {i: (c, k) for i, c, k in compute_cams(model, card, data, batch_size=2, scales=(1.0, 0.5), device="cpu")}
    assert sorted(out) == ["a", "b", "c", "d"]
    expected_classes = {"a": [0, 2], "b": [3], "c": [0, 1, 3], "d": []}
    images = {s.id: cv2.imread(str(s.image))[:, :, ::-1].copy() for s in data.index.samples}
    for image_id, (cams, class_indices) in out.items():
        assert class_indices.tolist() == expected_classes[image_id]
        assert cams.dtype == np.float32 and cams.shape == (len(class_indices), *sizes[image_id])
        assert cams.size == 0 or (cams.min() >= 0 and cams.max() <= 1)
        channels = [card.classes.index(classes[c]) for c in class_indices]
        if channels:  # batched result == this image alone, channel chosen by name
            np.testing.assert_allclose(cams, _reference(model, card, images[image_id], channels), atol=1e-5)


def test_compute_cams_on_voc_leaves_background_out(tmp_path):
    data = SegmentationDataset(make_voc(tmp_path), split="train", labels=None)
    assert dataset_background_index(data) == 0
    card = _card(VOC_CLASSES[1:], "background")
    out = {i: k.tolist() for i, _, k in compute_cams(_classifier(20), card, data, scales=(1.0,), device="cpu")}
    assert out == {"2007_000001": [8], "2007_000002": [12, 15], "2007_000003": []}


def test_compute_cams_with_a_background_class_in_the_folder_layout(tmp_path):
    classes = ["background", "cat", "dog"]
    root = make_folder_dataset(tmp_path / "ds", classes, {"a": ["cat", "background"], "b": ["dog", "cat"]},
                               {"a": (16, 16), "b": (16, 16)})
    data = SegmentationDataset(root, labels=None)
    assert dataset_background_index(data) == 0
    out = {i: k.tolist() for i, _, k in compute_cams(_classifier(2), _card(["cat", "dog"], "background"), data,
                                                      scales=(1.0,), device="cpu")}
    assert out == {"a": [1], "b": [1, 2]}  # a "background" tag is no classifier output: dropped


def test_compute_cams_errors_name_the_problem(tmp_path):
    classes = ["sky", "ball"]
    root = make_folder_dataset(tmp_path / "ds", classes, {"a": ["ball"]}, {"a": (16, 16), "b": (16, 16)})
    data = SegmentationDataset(root, labels=None)
    model = _classifier(2)
    with pytest.raises(ValueError, match=r"no tags.*'b'"):
        next(compute_cams(model, _card(["sky", "ball"], None), data, device="cpu"))
    with pytest.raises(ValueError, match=r"\['crate'\] are not dataset classes"):
        next(compute_cams(model, _card(["sky", "crate"], None), data, device="cpu"))
    with pytest.raises(ValueError, match="has no cam"):
        next(compute_cams(nn.Linear(2, 2), _card(["sky", "ball"], None), data, device="cpu"))
    # an unknown class name in tags.txt fails when the dataset for the CAMs is opened
    (root / "tags.txt").write_text("a ball\nb frisbee\n")
    with pytest.raises(ValueError, match=r"unknown class name\(s\) \['frisbee'\] for image 'b'"):
        SegmentationDataset(root, labels=None)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_compute_cams_on_cuda_matches_cpu(tmp_path):
    classes = ["sky", "ball", "star"]
    root = make_folder_dataset(tmp_path / "ds", classes, {"a": ["sky", "star"], "b": ["ball"]},
                               {"a": (32, 48), "b": (40, 24)})
    data = SegmentationDataset(root, labels=None)
    card = _card(classes, None)
    cpu = {i: (c, k) for i, c, k in compute_cams(_classifier(3), card, data, device="cpu")}
    for image_id, cams, class_indices in compute_cams(_classifier(3), card, data, device="cuda"):
        np.testing.assert_array_equal(class_indices, cpu[image_id][1])
        np.testing.assert_allclose(cams, cpu[image_id][0], atol=1e-3)  # TF32 / cuDNN algorithms


class _ItemList:
    """A dataset without an index: tags come with the items only."""

    def __init__(self, items: list[dict]) -> None:
        self.classes = ["sky", "ball"]
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def test_compute_cams_item_without_tags_is_an_error_naming_it():
    image = np.zeros((16, 16, 3), np.uint8)
    data = _ItemList([{"id": "ok", "image": image, "tags": [1]}, {"id": "lost", "image": image, "tags": None}])
    with pytest.raises(ValueError, match="image 'lost' has no tags"):
        list(compute_cams(_classifier(2), _card(["sky", "ball"], None), data, device="cpu", scales=(1.0,)))


# CAM files.


def test_cam_file_round_trip_is_float16_and_atomic(tmp_path):
    rng = np.random.default_rng(0)
    cams = rng.random((2, 9, 11), dtype=np.float32)
    write_cam(tmp_path / "x.npz", cams, np.array([3, 7]))
    back, classes = read_cam(tmp_path / "x.npz")
    assert back.dtype == np.float32 and classes.dtype == np.int64 and classes.tolist() == [3, 7]
    np.testing.assert_allclose(back, cams, atol=5e-4)  # float16: 11 significant bits
    write_cam(tmp_path / "empty.npz", np.zeros((0, 4, 5), np.float32), np.zeros(0, np.int64))
    assert read_cam(tmp_path / "empty.npz")[0].shape == (0, 4, 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.npz", "x.npz"]  # no temp file left
    with pytest.raises(ValueError, match=r"cams \(T, H, W\) and class_indices \(T,\)"):
        write_cam(tmp_path / "bad.npz", cams, np.array([1]))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "x.npz").read_bytes()[:100])  # truncated zip
    for name in ("junk.npz", "cut.npz"):
        with pytest.raises(ValueError, match="not a readable CAM file"):
            read_cam(tmp_path / name)
    with pytest.raises(ValueError, match="CAM file not found"):
        read_cam(tmp_path / "missing.npz")


def test_cam_lookup_checks_the_manifest_against_the_dataset(tmp_path):
    root = make_folder_dataset(tmp_path / "ds", ["sky", "ball"], {"a": ["ball"]}, {"a": (8, 8)})
    data = SegmentationDataset(root, labels=None)
    cam_dir = tmp_path / "cams"
    with pytest.raises(ValueError, match="no cams.json"):
        cam_lookup(cam_dir, data)
    write_cam(cam_dir / "a.npz", np.ones((1, 8, 8)), np.array([1]))
    write_cam_manifest(cam_dir, {"classes": ["sky", "ball"], "background_index": None, "split": "train"})
    lookup = cam_lookup(cam_dir, data)
    assert lookup("a")[1].tolist() == [1]
    with pytest.raises(ValueError, match="no CAM file for image 'z'"):
        lookup("z")
    write_cam_manifest(cam_dir, {"classes": ["background", "ball"], "background_index": 0})
    with pytest.raises(ValueError, match="were computed for classes"):
        cam_lookup(cam_dir, data)
