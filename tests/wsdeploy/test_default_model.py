"""The bundled default model (street scenes, CamVid's 11 classes) and the demo data:
`wsdeploy.segment()` and `wsdeploy demo` work out of the box."""
from __future__ import annotations

import json
import sys
import threading

import numpy as np
import pytest

import wsdeploy
from wsdeploy import runtime
from wsdeploy.cli.demo import (
    DEFAULT_TRAIN_STEPS,
    DEMO_DATA_PATH,
    STREET_SAMPLES_PATH,
    demo_train_config,
)
from wsdeploy.cli.main import main
from wsdeploy.data.datasets import SegmentationDataset
from wsdeploy.metrics import SegmentationMetric

CAMVID_CLASSES = ["sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car",
                  "pedestrian", "bicyclist"]


@pytest.fixture(scope="module")
def val_data():
    """The four shipped CamVid val frames (never trained on), with masks."""
    return SegmentationDataset(STREET_SAMPLES_PATH, split="val", labels="masks")


def test_bundled_model_card_names_classes_palette_data_and_license(val_data):
    card = runtime._default().card
    assert card["classes"] == CAMVID_CLASSES == val_data.classes
    palette = card["palette"]
    assert len(palette) == 11 and palette[card["classes"].index("road")] == [128, 64, 128]  # SegNet's colours
    assert len({tuple(c) for c in palette}) == 11
    training, evaluation = card["training"], card["evaluation"]
    assert "CamVid" in training["data"] and "scribbles" in training["data"] and card["supervision"] == "scribbles"
    assert "non-commercial" in training["license"] and "Brostow" in training["license"]
    assert "street" in training["domain"]
    assert "/work/" not in json.dumps(card)  # no developer's absolute path
    row = evaluation["table_row"]
    assert evaluation["split"] == "val" and 0.35 < evaluation["miou"] < 1.0
    assert row["seeds"] == 2 and len(row["miou_per_seed"]) == 2 and row["miou_spread"] >= 0
    assert evaluation["miou"] == pytest.approx(row["miou_per_seed"]["0"])  # the shipped file is seed 0's run
    assert runtime.DEFAULT_MODEL_PATH.stat().st_size < 8 * 2**20  # a few MB, not tens


def test_module_level_segment_on_street_frames_returns_the_11_classes(val_data):
    metric = SegmentationMetric(len(val_data.classes))
    for i in range(len(val_data)):
        item = val_data[i]
        seg = wsdeploy.segment(item["image"])
        assert seg.classes == CAMVID_CLASSES
        assert seg.labels.shape == item["label"].shape == (360, 480)
        metric.update(seg.labels, item["label"])
    # CamVid val frames the model never trained on: it scores 0.437 on these four (0.447 on all
    # 101 val frames); chance is about 0.05 mIoU for 11 classes, the earlier 160-step model 0.265
    assert metric.miou() > 0.35
    counts = seg.class_pixel_counts()
    assert {"road", "building", "sky"} <= set(counts)  # the big classes of a street scene


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


def test_demo_without_training_segments_the_samples(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--train-steps", "0", "--limit", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "skipped: --train-steps 0" in out and "mIoU over 2 image(s)" in out
    assert "segment 2 street frames" in out and "knows 11 classes: sky, building" in out
    assert not (tmp_path / "train").exists()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["training"] is None and set(summary["stage_time_s"]) == {"segment"}
    assert len(summary["images"]) == 2 and summary["metrics"]["miou"] is not None
    first = summary["images"][0]["id"]
    assert first.startswith("0016E5_")
    assert (tmp_path / f"{first}_mask.png").is_file() and (tmp_path / f"{first}_overlay.png").is_file()


def test_demo_trains_evaluates_and_segments(tmp_path, capsys):
    # the whole story with a 2-step training: a few seconds on one CPU thread
    assert main(["demo", "--out", str(tmp_path), "--train-steps", "2", "--limit", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for heading in ("== 1/3 train 2 steps", "== 2/3 evaluate", "== 3/3 segment"):
        assert heading in out
    assert "mIoU over 2 image(s)" in out
    for name in ("model.pt", "last.pt", "train_log.jsonl", "config.yaml"):
        assert (tmp_path / "train" / name).is_file()
    summary = json.loads((tmp_path / "summary.json").read_text())
    training = summary["training"]
    assert training["steps"] == 2 and training["supervision"] == "scribbles"
    assert training["train_images"] == 48 and training["val_images"] == 16
    assert 0.0 <= training["val_miou"] <= 1.0 and training["time_s"] > 0
    # the bundled model knows CamVid's classes, not the synthetic demo data's: no side by side
    assert training["reference_val_miou"] is None and "knows other classes" in out
    assert set(summary["stage_time_s"]) == {"train", "evaluate", "segment"}
    assert len(summary["images"]) == 2
    brief = wsdeploy.load(training["model"], device="cpu")
    assert brief.card["supervision"] == "scribbles" and brief.card["training"]["steps"] == 2
    # the trainer's own final evaluation (in the card) scores the same images the same way
    assert brief.card["evaluation"]["miou"] == pytest.approx(training["val_miou"], abs=1e-3)


def test_demo_train_config_is_the_scribble_recipe():
    from tests.benchmarks.test_records import _load

    config = demo_train_config(data=str(DEMO_DATA_PATH), out_dir="unused", steps=DEFAULT_TRAIN_STEPS)
    # the synthetic scribble table's best row, pce+adm, with that row's proposal settings
    assert config.supervision == "scribbles" and list(config.loss_names) == ["pce", "adm"]
    flags = _load("scribble_table").RUN_FLAGS["pce+adm"]
    table = {flags[i]: float(flags[i + 1]) for i in range(0, len(flags), 2)}
    assert table == {"--adm-crf-weight": config.adm.crf_weight, "--adm-sigma-rgb": config.adm.sigma_rgb,
                     "--adm-sigma-xy": config.adm.sigma_xy}
    assert config.crop_size == 128 and config.val_split == "val"


def test_demo_without_the_train_extra_says_which_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "albumentations", None)  # find_spec -> None: not installed
    assert main(["demo", "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "wsdeploy[train]" in err and "--train-steps 0" in err
    assert not (tmp_path / "out").exists()  # failed before any work


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--train-steps", "-1"], "--train-steps must be >= 0"),
        (["--split", "train"], "the split the demo trains on"),
        (["--device", "cuda:1"], "runs on --device auto, cpu or cuda"),
    ],
)
def test_demo_rejects_bad_training_flags(tmp_path, capsys, argv, message):
    assert main(["demo", "--out", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_segment_cli_says_once_what_the_bundled_model_knows(tmp_path, capsys):
    frames = STREET_SAMPLES_PATH / "images"
    assert main(["segment", str(frames), "--out", str(tmp_path), "--device", "cpu", "--no-overlay"]) == 0
    out = capsys.readouterr().out
    assert out.count("the bundled model knows 11 classes: sky, building, pole, road") == 1
    assert "street scenes" in out and "wsdeploy annotate" in out  # and what to do for other photos
    assert "wrote 4 mask(s)" in out
