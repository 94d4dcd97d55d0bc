"""Issue 16, item 14: `wsdeploy eval MODEL --data DIR` scores with the runtime's own
post-processing and writes the metrics, per-class IoU and confusion matrix (JSON + PNG)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import wsdeploy
from wsdeploy.checkpoint import ModelCard, save_checkpoint
from wsdeploy.cli.main import main
from wsdeploy.data.datasets import SegmentationDataset
from wsdeploy.data.image_io import read_image
from wsdeploy.data.synthetic import CLASSES, generate_dataset
from wsdeploy.metrics import SegmentationMetric
from wsdeploy.models import build_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("eval")
    data = generate_dataset(root / "ds", num_images=4, size=48, seed=2, val_fraction=0.5, workers=0)
    torch.manual_seed(0)
    card = ModelCard(arch="lraspp_resnet18", arch_kwargs={"width": 8}, classes=list(CLASSES))
    model = build_model(card.arch, len(CLASSES), width=8)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
    save_checkpoint(root / "m.pt", model, card)
    return data, root / "m.pt"


def test_eval_matches_segment_and_writes_json_and_png(setup, tmp_path, capsys):
    data, ckpt = setup
    out = tmp_path / "ev"
    assert main(["eval", str(ckpt), "--data", str(data), "--out", str(out), "--device", "cpu"]) == 0
    report = json.loads((out / "eval.json").read_text())
    segmenter = wsdeploy.load(ckpt, device="cpu")
    expected = SegmentationMetric(len(CLASSES))
    masks = SegmentationDataset(data, split="val", labels="masks")
    for i in range(len(masks)):
        expected.update(segmenter.segment(masks[i]["image"]).labels, masks[i]["label"])
    assert report["miou"] == pytest.approx(expected.miou())
    assert np.array_equal(np.array(report["confusion_matrix"]), expected.confusion_matrix)
    assert set(report["per_class_iou"]) == set(CLASSES) and report["images"] == len(masks)
    assert {"machine", "versions", "command"} <= set(report)
    png = read_image(out / "confusion.png")
    assert png.shape[0] > 9 * 30 and png.shape[1] > 9 * 30
    assert f"mIoU {100 * expected.miou():.1f}" in capsys.readouterr().out


def test_eval_refuses_other_classes(setup, tmp_path, capsys):
    data, _ = setup
    card = ModelCard(arch="lraspp_resnet18", arch_kwargs={"width": 8}, classes=["a", "b"])
    save_checkpoint(tmp_path / "other.pt", build_model(card.arch, 2, width=8), card)
    assert main(["eval", str(tmp_path / "other.pt"), "--data", str(data), "--out", str(tmp_path / "e")]) == 2
    assert "differ from the dataset's" in capsys.readouterr().err
