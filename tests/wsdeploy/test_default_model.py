"""The bundled default model and demo data: `wsdeploy.segment()` and `wsdeploy demo` work out of the box."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest

import wsdeploy
from wsdeploy import runtime
from wsdeploy.cli.demo import DEMO_DATA_PATH
from wsdeploy.cli.main import main
from wsdeploy.data.datasets import SegmentationDataset
from wsdeploy.metrics import SegmentationMetric


@pytest.fixture(scope="module")
def val_data():
    return SegmentationDataset(DEMO_DATA_PATH, split="val", labels="masks")


def test_bundled_model_card_matches_demo_data(val_data):
    model = runtime._default()
    card = model.card
    assert card["classes"] == val_data.classes
    assert card["evaluation"]["miou"] is not None
    assert runtime.DEFAULT_MODEL_PATH.stat().st_size < 8 * 2**20  # a few MB, not tens


def test_module_level_segment_on_every_demo_val_image(val_data):
    metric = SegmentationMetric(len(val_data.classes))
    for i in range(len(val_data)):
        item = val_data[i]
        seg = wsdeploy.segment(item["image"])
        assert seg.labels.shape == item["label"].shape
        metric.update(seg.labels, item["label"])
    # The demo's val images are never seen in training (different generator seed). Chance level
    # for 9 classes is about 0.1 mIoU; the shipped model scores well above that.
    assert metric.miou() > 0.35


def test_default_model_loads_once_under_concurrent_first_use(monkeypatch, val_data):
    monkeypatch.setattr(runtime, "_default_segmenter", None)
    calls = []
    real_load = runtime.load
    monkeypatch.setattr(runtime, "load", lambda *a, **k: calls.append(1) or real_load(*a, **k))
    image = val_data[0]["image"]
    results = []
    threads = [threading.Thread(target=lambda: results.append(wsdeploy.segment(image).labels)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(results) == 4
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_demo_command_writes_outputs(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--limit", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "mIoU over 2 image(s)" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary["images"]) == 2 and summary["metrics"]["miou"] is not None
    first = summary["images"][0]["id"]
    assert (tmp_path / f"{first}_mask.png").is_file() and (tmp_path / f"{first}_overlay.png").is_file()
