"""`wsdeploy cam` end to end at tiny size: CAM files, the sweep JSON, seed PNGs, errors."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from wsdeploy.training.tags.cam import read_cam, read_cam_manifest

from wsdeploy.checkpoint import ModelCard, save_checkpoint
from wsdeploy.cli.main import main
from wsdeploy.data.image_io import read_label_png
from wsdeploy.data.synthetic import CLASSES, generate_dataset
from wsdeploy.models import build_model


def _checkpoint(path: Path, classes: list[str], background: str | None) -> Path:
    torch.manual_seed(0)
    card = ModelCard(arch="classifier_resnet18", arch_kwargs={"width": 16}, classes=classes,
                     supervision="tags", training={"background": background})
    save_checkpoint(path, build_model(card.arch, len(classes), width=16), card)
    return path


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """The synthetic benchmark (no background class), 4 train + 1 val images of 48 x 48."""
    return generate_dataset(tmp_path_factory.mktemp("syn") / "ds", num_images=5, size=48, seed=1,
                            val_fraction=0.2, workers=0)


def _background_dataset(root: Path) -> Path:
    """Folder layout with a "background" class: 4 train images 32 x 40, masks and tags."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    tags = []
    for n in range(4):
        image = np.full((32, 40, 3), 60, np.uint8) + rng.integers(0, 10, (32, 40, 3), dtype=np.uint8)
        mask = np.zeros((32, 40), np.uint8)
        present = [c for c in (1, 2) if (n >> (c - 1)) & 1]  # im0: none, im1: cat, im2: dog, im3: both
        for c in present:
            mask[8 * c : 8 * c + 10, 5 * c : 5 * c + 20] = c
            image[mask == c] = (200, 40, 40) if c == 1 else (40, 200, 40)
        mask[0, 0] = 255
        cv2.imwrite(str(root / "images" / f"im{n}.png"), image[:, :, ::-1])
        cv2.imwrite(str(root / "masks" / f"im{n}.png"), mask)
        tags.append(f"im{n} " + " ".join(["cat", "dog"][c - 1] for c in present))
    (root / "classes.txt").write_text("background\ncat\ndog\n")
    (root / "tags.txt").write_text("\n".join(tags) + "\n")
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("im0\nim1\nim2\nim3\n")
    return root


def test_cam_sweep_and_seeds_on_the_synthetic_benchmark(synthetic, tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "cls.pt", list(CLASSES), None)
    cams, seeds = tmp_path / "cams", tmp_path / "seeds"
    code = main(["cam", "--model", str(ckpt), "--data", str(synthetic), "--out", str(cams), "--device", "cpu",
                 "--scales", "1,0.5", "--batch-size", "3", "--sweep", "--fg-thresholds", "0.2,0.5",
                 "--seeds-out", str(seeds)])
    out = capsys.readouterr().out
    assert code == 0, out
    train_ids = (synthetic / "splits" / "train.txt").read_text().split()
    assert sorted(p.stem for p in cams.glob("*.npz")) == sorted(train_ids)  # the train split only
    manifest = read_cam_manifest(cams)
    assert manifest["classes"] == list(CLASSES) and manifest["background_index"] is None
    assert manifest["split"] == "train" and manifest["scales"] == [1.0, 0.5] and manifest["flip"] is True
    assert "torch" in manifest["versions"]
    tags = {line.split()[0]: line.split()[1:] for line in (synthetic / "tags.txt").read_text().splitlines()}
    for image_id in train_ids:
        cam, classes = read_cam(cams / f"{image_id}.npz")
        assert [CLASSES[c] for c in classes] == sorted(tags[image_id], key=CLASSES.index)
        assert cam.shape == (len(classes), 48, 48) and cam.min() >= 0 and cam.max() <= 1
    sweep = json.loads((cams / "sweep_train.json").read_text())
    assert [r["fg_threshold"] for r in sweep["rows"]] == [0.2, 0.5] and sweep["picked_by"] == "miou_as_background"
    assert sweep["best"] == max(sweep["rows"], key=lambda r: r["miou_as_background"])
    assert "<- best" in out
    for image_id in train_ids:
        seed = read_label_png(seeds / f"{image_id}.png")
        assert seed.shape == (48, 48)
        allowed = {CLASSES.index(t) for t in tags[image_id]} | {255}
        assert set(np.unique(seed).tolist()) <= allowed
    assert json.loads((seeds / "seeds.json").read_text())["fg_threshold"] == sweep["best"]["fg_threshold"]


def test_cam_reuse_with_background_crf_seeds_and_sweep_json(tmp_path, capsys):
    data = _background_dataset(tmp_path / "ds")
    ckpt = _checkpoint(tmp_path / "cls.pt", ["dog", "cat"], "background")
    cams = tmp_path / "cams"
    assert main(["cam", "--model", str(ckpt), "--data", str(data), "--out", str(cams), "--device", "cpu",
                 "--scales", "1", "--no-flip"]) == 0
    assert read_cam(cams / "im0.npz")[1].tolist() == [] and read_cam(cams / "im3.npz")[1].tolist() == [1, 2]
    sweep_json = tmp_path / "sweep.json"
    code = main(["cam", "--cams", str(cams), "--data", str(data), "--sweep", "--sweep-json", str(sweep_json),
                 "--fg-thresholds", "0.3,0.6", "--bg-thresholds", "0.05,0.3", "--seeds-out", str(tmp_path / "s1"),
                 "--fg-threshold", "0.5", "--bg-threshold", "0.1", "--crf", "--crf-iterations", "2"])
    assert code == 0, capsys.readouterr().err
    rows = json.loads(sweep_json.read_text())["rows"]
    assert [(r["fg_threshold"], r["bg_threshold"]) for r in rows] == [(0.3, 0.05), (0.3, 0.3), (0.6, 0.05), (0.6, 0.3)]
    meta = json.loads((tmp_path / "s1" / "seeds.json").read_text())
    assert (meta["fg_threshold"], meta["bg_threshold"], meta["crf"]["iterations"]) == (0.5, 0.1, 2)
    assert read_label_png(tmp_path / "s1" / "im0.png").tolist() == np.zeros((32, 40)).tolist()  # no tag: background
    assert set(np.unique(read_label_png(tmp_path / "s1" / "im1.png")).tolist()) <= {0, 1, 255}


@pytest.mark.parametrize("argv, message", [
    (["--model", "m.pt", "--cams", "c"], "exactly one of --model"),
    (["--model", "m.pt"], "--model needs --out"),
    (["--cams", "c"], "nothing to do"),
    (["--cams", "c", "--seeds-out", "s"], "needs --fg-threshold"),
    (["--cams", "c", "--sweep", "--fg-threshold", "0.3"], "--fg-threshold applies to --seeds-out"),
])
def test_cam_argument_errors(argv, message, tmp_path, capsys):
    assert main(["cam", "--data", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wsdeploy cam: error:") and message in err


def test_cam_dataset_errors_are_one_line_messages(synthetic, tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "cls.pt", list(CLASSES), None)
    base = ["cam", "--model", str(ckpt), "--out", str(tmp_path / "cams"), "--device", "cpu", "--scales", "1"]
    assert main([*base, "--data", str(synthetic), "--seeds-out", str(tmp_path / "s"), "--fg-threshold", "0.3",
                 "--bg-threshold", "0.1"]) == 2
    assert "has no background class" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("images", "masks", "splits", "classes.txt"):
        src = synthetic / name
        (bad / name).symlink_to(src, target_is_directory=src.is_dir())
    lines = (synthetic / "tags.txt").read_text().splitlines()
    (bad / "tags.txt").write_text("\n".join(lines[1:]) + "\n")  # the first train image untagged
    assert main([*base, "--data", str(bad)]) == 2
    assert f"no tags (not listed in tags.txt): '{lines[0].split()[0]}'" in capsys.readouterr().err
    (bad / "tags.txt").write_text(lines[0].split()[0] + " sky frisbee\n")
    assert main([*base, "--data", str(bad)]) == 2
    assert "unknown class name(s) ['frisbee']" in capsys.readouterr().err
    other = _checkpoint(tmp_path / "other.pt", ["sky", "grass"], None)
    assert main(["cam", "--model", str(other), "--out", str(tmp_path / "c2"), "--data", str(synthetic)]) == 2
    assert "have no classifier output" in capsys.readouterr().err
