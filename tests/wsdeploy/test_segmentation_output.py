"""Issue 16, item 14: results you can look at: Segmentation.overlay() with a legend, .save(),
and the model's colours with class 0 not black unless it is a background class."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import wsdeploy
from wsdeploy.checkpoint import ModelCard, save_checkpoint
from wsdeploy.data.image_io import read_image, read_label_png
from wsdeploy.data.palette import palette
from wsdeploy.models import build_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    # the VOC map as the trainer used to write it: class 0 ("sky") black
    card = ModelCard(arch="lraspp_resnet18", arch_kwargs={"width": 8}, classes=["sky", "grass", "sand"],
                     palette=palette(3).tolist())
    path = tmp_path_factory.mktemp("m") / "m.pt"
    save_checkpoint(path, build_model(card.arch, 3, width=8), card)
    return wsdeploy.load(path, device="cpu")


def test_class_zero_of_an_old_card_is_not_drawn_black(model):
    assert model.palette[0].any() and model.palette.tolist() == palette(4)[1:].tolist()


def test_overlay_and_save(model, tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    seg = model.segment(image)
    plain = seg.overlay(image, legend=False)
    assert plain.shape == (40, 56, 3)
    with_legend = seg.overlay(image)
    assert with_legend.shape[1] > 56 and np.array_equal(with_legend[:40, :56], plain)
    np.testing.assert_array_equal(read_label_png(seg.save(tmp_path / "mask.png")), seg.labels)
    assert read_image(seg.save(tmp_path / "overlay.png", image)).shape == with_legend.shape
    with pytest.raises(ValueError, match="pass the image that was segmented"):
        seg.overlay(image[:10])
