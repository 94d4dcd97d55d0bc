"""Mosaic classifier training (`--mosaic k`): tiling, per-tile scores against each tile's own
tags, determinism and resume, and the config's checks."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wsdeploy.training.config import TrainConfig
from wsdeploy.training.tags.mosaic import MosaicAugmentation, tile_scores

from tests.training.test_trainer import read_log, tiny, train_crashed_then_resumed
from tests.training.test_trainer_tags import tagged  # noqa: F401  (the fixture)


class _Numbered:
    """Stand-in for SeededAugmentation: item (index, slot) is an 8x8 image filled with index,
    its slot in the green channel, tags [index % 3] and id f"i{index}"."""

    def __init__(self, n: int, label: bool = False, size: int = 8) -> None:
        self.n, self.label, self.size, self.keys = n, label, size, []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key):
        self.keys.append(key)
        index, slot = key
        image = np.zeros((self.size, self.size, 3), np.uint8)
        image[..., 0], image[..., 1] = index, slot % 256
        label = np.zeros((self.size, self.size), np.uint8) if self.label else None
        return {"image": image, "label": label, "tags": [index % 3], "id": f"i{index}"}


def test_tile_scores_are_the_mean_of_each_tile_in_tile_order():
    cams = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    scores = tile_scores(cams, 2)
    assert scores.shape == (8, 3)
    for b in range(2):
        for r in range(2):
            for c in range(2):  # brute force, tile t = r * k + c of mosaic b
                expected = cams[b, :, 3 * r : 3 * r + 3, 3 * c : 3 * c + 3].mean(dim=(1, 2))
                torch.testing.assert_close(scores[b * 4 + r * 2 + c], expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(tile_scores(cams, 1), cams.mean(dim=(2, 3)))
    with pytest.raises(ValueError, match="does not split into 4x4"):
        tile_scores(cams, 4)


def test_mosaic_tiles_the_sampler_image_first_and_unions_the_tags():
    base = _Numbered(10)
    mosaic = MosaicAugmentation(base, grid=2, seed=5)
    item = mosaic[(7, 3)]
    assert item["image"].shape == (16, 16, 3) and item["label"] is None
    indices = [int(item["image"][8 * r, 8 * c, 0]) for r in range(2) for c in range(2)]
    assert indices[0] == 7  # tile 0 is the sampler's image
    assert [int(item["image"][8 * r + 4, 8 * c + 4, 1]) for r in range(2) for c in range(2)] == [12, 13, 14, 15]
    assert item["tile_tags"] == [[i % 3] for i in indices]
    assert item["tags"] == sorted({i % 3 for i in indices})
    assert item["id"] == "+".join(f"i{i}" for i in indices)
    # the same key rebuilds the same mosaic (resume); other slots draw other images
    again = MosaicAugmentation(_Numbered(10), grid=2, seed=5)[(7, 3)]
    np.testing.assert_array_equal(again["image"], item["image"])
    draws = {tuple(int(mosaic[(0, s)]["image"][8 * r, 8 * c, 0]) for r in range(2) for c in range(2)) for s in range(20)}
    assert len(draws) > 10


def test_mosaic_refuses_labels_bad_grids_and_mixed_sizes():
    with pytest.raises(ValueError, match="no label"):
        MosaicAugmentation(_Numbered(4, label=True), grid=2, seed=0)[(0, 0)]
    for grid in (1, 5, 2.0, True):
        with pytest.raises(ValueError, match="grid must be"):
            MosaicAugmentation(_Numbered(4), grid=grid, seed=0)

    class Mixed(_Numbered):
        def __getitem__(self, key):
            item = super().__getitem__(key)
            if key[1] % 4 == 1:
                item["image"] = item["image"][:4]
            return item

    with pytest.raises(ValueError, match="share one size"):
        MosaicAugmentation(Mixed(4), grid=2, seed=0)[(0, 0)]


def test_config_allows_mosaic_for_classifiers_only(tmp_path):
    ok = dict(data="d", supervision="tags", model="classifier_resnet18", out_dir=str(tmp_path))
    assert TrainConfig(**ok, mosaic=2).mosaic == 2
    for bad in (0, 5, 1.5):
        with pytest.raises(ValueError, match="mosaic must be"):
            TrainConfig(**ok, mosaic=bad)
    with pytest.raises(ValueError, match="option of classifier training"):
        TrainConfig(data="d", supervision="scribbles", out_dir=str(tmp_path), mosaic=2)


def test_mosaic_loss_scores_each_tile_against_its_own_tags(tagged, tmp_path):  # noqa: F811
    from wsdeploy.data.datasets import SegmentationDataset
    from wsdeploy.training.collate import collate_segmentation, network_input
    from wsdeploy.training.tasks import make_task

    config = tiny(tagged, tmp_path, supervision="tags", model="classifier_resnet18", output_stride=8, mosaic=2)
    task = make_task(config)
    train_set = SegmentationDataset(str(tagged), split="train", labels=None)
    task.bind(train_set)
    model = task.build_model({"output_stride": 8, "width": 8}).eval()
    items = [{"image": train_set[i]["image"], "tags": train_set[i]["tags"]} for i in range(4)]
    # one 2x2 mosaic of images 0..3, tiled as MosaicAugmentation does
    image = np.concatenate([np.concatenate([items[0]["image"], items[1]["image"]], 1),
                            np.concatenate([items[2]["image"], items[3]["image"]], 1)], 0)
    batch = collate_segmentation([{"image": image, "label": None, "tags": [], "id": "m",
                                   "tile_tags": [item["tags"] for item in items]}])
    with torch.no_grad():
        out = model(network_input(batch["image"]))
        cams = model.cam(network_input(batch["image"]))
        loss, terms = task.loss(out, batch, step=1)
    h, w = cams.shape[2] // 2, cams.shape[3] // 2
    scores = torch.stack([cams[0, :, r * h : (r + 1) * h, c * w : (c + 1) * w].mean(dim=(1, 2))
                          for r in range(2) for c in range(2)])
    classes = [train_set.classes.index(name) for name in task.classes]
    target = torch.tensor([[float(k in item["tags"]) for k in classes] for item in items])
    expected = F.multilabel_soft_margin_loss(scores, target)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-7)
    assert terms == {"soft_margin": loss}


def test_mosaic_training_resumes_exactly(tagged, tmp_path, monkeypatch):  # noqa: F811
    from wsdeploy.training import train

    settings = dict(supervision="tags", model="classifier_resnet18", output_stride=8, mosaic=2, steps=4)
    train(tiny(tagged, tmp_path / "full", **settings))
    reference, _ = read_log(tmp_path / "full")

    train_crashed_then_resumed(tiny(tagged, tmp_path / "crash", **settings), monkeypatch, step=2)
    resumed, _ = read_log(tmp_path / "crash")
    assert [e["step"] for e in resumed] == [1, 2, 3, 4]
    for a, b in zip(reference, resumed):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=1e-9), a["step"]
    # a mosaic run is not the plain run: the losses differ from step 1
    train(tiny(tagged, tmp_path / "plain", **{**settings, "mosaic": 1}))
    plain, _ = read_log(tmp_path / "plain")
    assert plain[0]["loss"] != pytest.approx(reference[0]["loss"], rel=1e-6)
