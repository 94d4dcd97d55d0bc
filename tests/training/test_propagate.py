"""Propagated CAMs of a dataset: batching by size, the CAM file's conventions, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from wsdeploy.training.tags.affinity import AffinityNet
from wsdeploy.training.tags.propagate import propagate_dataset, propagate_image

from wsdeploy.checkpoint import ModelCard
from wsdeploy.models import build_model


class _Images:
    classes = ["a", "b", "c"]

    def __init__(self, sizes: list[tuple[int, int]]) -> None:
        rng = np.random.default_rng(0)
        self.items = [{"id": f"im{i}", "image": rng.integers(0, 255, (h, w, 3), dtype=np.uint8)}
                      for i, (h, w) in enumerate(sizes)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def _net() -> tuple[AffinityNet, ModelCard]:
    torch.manual_seed(0)
    classifier = build_model("classifier_resnet18", 3, width=8, output_stride=8)
    card = ModelCard(arch="affinity_classifier_resnet18", classes=["a", "b", "c"])
    return AffinityNet(classifier, radius=3, stride=4, dim=4).eval(), card


def test_dataset_propagation_batches_by_size_and_matches_one_image_at_a_time():
    net, card = _net()
    data = _Images([(24, 32), (24, 32), (20, 28)])  # 20 x 28 is padded to 24 x 32 inside
    rng = np.random.default_rng(1)
    cams = {"im0": (rng.random((2, 24, 32), dtype=np.float32), np.array([0, 2])),
            "im1": (rng.random((1, 24, 32), dtype=np.float32), np.array([1])),
            "im2": (np.zeros((0, 20, 28), np.float32), np.zeros(0, np.int64))}
    seen = []
    out = {i: (c, k) for i, c, k in propagate_dataset(net, card, data, cams, beta=4.0, steps=10, batch_size=2,
                                                     device="cpu", progress=lambda d, t: seen.append((d, t)))}
    assert seen[-1] == (3, 3) and sorted(out) == ["im0", "im1", "im2"]
    for image_id, (walked, classes) in out.items():
        assert np.array_equal(classes, cams[image_id][1]) and walked.shape == cams[image_id][0].shape
        if walked.shape[0]:
            alone = propagate_image(net, card, data.items[int(image_id[2])]["image"][None],
                                    torch.from_numpy(cams[image_id][0])[None], beta=4.0, steps=10)[0]
            np.testing.assert_allclose(walked, alone.numpy(), rtol=0, atol=1e-6)
            np.testing.assert_allclose(walked.max(axis=(1, 2)), 1.0, atol=1e-4)
            assert walked.min() >= 0


def test_cams_of_other_images_are_refused():
    net, card = _net()
    data = _Images([(24, 32)])
    with pytest.raises(ValueError, match="CAMs are .* but the image is"):
        list(propagate_dataset(net, card, data, {"im0": (np.zeros((1, 16, 16), np.float32), np.array([0]))},
                               beta=4.0, steps=1, device="cpu"))
    with pytest.raises(ValueError, match="no CAM for image 'im0'"):
        list(propagate_dataset(net, card, data, {}, beta=4.0, steps=1, device="cpu"))
