"""`wsdeploy cam --propagate` at tiny size: propagated CAM files, pseudo-masks, errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from wsdeploy.training.tags.affinity import AffinityNet, save_affinity_checkpoint
from wsdeploy.training.tags.cam import read_cam, read_cam_manifest

from wsdeploy.checkpoint import load_checkpoint
from wsdeploy.cli.main import main
from wsdeploy.data.image_io import read_label_png
from wsdeploy.data.synthetic import CLASSES

from tests.cli.test_cam_cli import _background_dataset, _checkpoint, synthetic  # noqa: F401 (fixture)


def _affinity(path: Path, classifier_ckpt: Path) -> Path:
    classifier, card = load_checkpoint(classifier_ckpt)
    torch.manual_seed(1)
    save_affinity_checkpoint(path, AffinityNet(classifier, radius=3, stride=4, dim=4), card)
    return path


def test_propagate_then_sweep_and_pseudo_masks(synthetic, tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "cls.pt", list(CLASSES), None)
    aff = _affinity(tmp_path / "aff.pt", ckpt)
    cams, rw, pseudo = tmp_path / "cams", tmp_path / "rw", tmp_path / "pseudo"
    assert main(["cam", "--model", str(ckpt), "--data", str(synthetic), "--out", str(cams), "--device", "cpu",
                 "--scales", "1"]) == 0
    code = main(["cam", "--cams", str(cams), "--data", str(synthetic), "--propagate", str(aff), "--propagate-out",
                 str(rw), "--beta", "4", "--steps", "16", "--device", "cpu", "--sweep", "--fg-thresholds", "0.2,0.5",
                 "--seeds-out", str(pseudo)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    train_ids = (synthetic / "splits" / "train.txt").read_text().split()
    assert sorted(p.stem for p in rw.glob("*.npz")) == sorted(train_ids)
    manifest = read_cam_manifest(rw)
    assert manifest["classes"] == list(CLASSES) and manifest["background_index"] is None
    assert manifest["propagation"]["beta"] == 4.0 and manifest["propagation"]["steps"] == 16
    assert manifest["source_cams"] == str(cams.resolve())
    for image_id in train_ids:
        walked, classes = read_cam(rw / f"{image_id}.npz")
        original, original_classes = read_cam(cams / f"{image_id}.npz")
        assert walked.shape == original.shape and np.array_equal(classes, original_classes)
        peaks = np.where(original.max(axis=(1, 2)) > 0, 1.0, 0.0)  # renormalised; a zero CAM stays zero
        assert np.allclose(walked.max(axis=(1, 2)), peaks, atol=1e-2)  # (float16 on disk)
        labels = read_label_png(pseudo / f"{image_id}.png")
        assert labels.shape == original.shape[1:] and set(np.unique(labels)) <= set(classes.tolist()) | {255}
    sweep = json.loads((rw / "sweep_train.json").read_text())
    assert [r["fg_threshold"] for r in sweep["rows"]] == [0.2, 0.5]
    assert json.loads((pseudo / "seeds.json").read_text())["cams"] == str(rw)


def test_propagate_errors_are_one_line_messages(synthetic, tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "cls.pt", list(CLASSES), None)
    cams = tmp_path / "cams"
    assert main(["cam", "--model", str(ckpt), "--data", str(synthetic), "--out", str(cams), "--device", "cpu",
                 "--scales", "1"]) == 0
    capsys.readouterr()
    base = ["cam", "--cams", str(cams), "--propagate-out", str(tmp_path / "rw"), "--device", "cpu"]
    # a classifier checkpoint where the affinity net is expected
    assert main([*base, "--data", str(synthetic), "--propagate", str(ckpt)]) == 2
    assert "is a classifier checkpoint ('classifier_resnet18'); propagation needs an affinity" in capsys.readouterr().err
    aff = _affinity(tmp_path / "aff.pt", ckpt)
    # a CAM folder that does not match the data: other classes, or another split
    other = _background_dataset(tmp_path / "bg")
    assert main([*base, "--data", str(other), "--propagate", str(aff)]) == 2
    assert "were computed for classes" in capsys.readouterr().err
    assert main([*base, "--data", str(synthetic), "--split", "val", "--propagate", str(aff)]) == 2
    err = capsys.readouterr().err
    assert "no CAM file for image" in err and "split 'train'" in err
    assert main(["cam", "--cams", str(cams), "--data", str(synthetic), "--propagate", str(aff)]) == 2
    assert "--propagate AFFINITY_CKPT and --propagate-out RW_DIR go together" in capsys.readouterr().err
    assert main([*base, "--data", str(synthetic), "--propagate", str(aff), "--steps", "-1"]) == 2
    assert "--steps >= 0" in capsys.readouterr().err


def test_sweep_picks_by_precision_above_a_coverage_floor(synthetic, tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "cls.pt", list(CLASSES), None)
    cams = tmp_path / "cams"
    base = ["cam", "--cams", str(cams), "--data", str(synthetic), "--sweep", "--fg-thresholds", "0.1,0.3,0.5,0.7,0.9"]
    assert main(["cam", "--model", str(ckpt), "--data", str(synthetic), "--out", str(cams), "--device", "cpu",
                 "--scales", "1"]) == 0
    assert main([*base, "--pick-by", "precision", "--min-coverage", "0.4"]) == 0
    sweep = json.loads((cams / "sweep_train.json").read_text())
    eligible = [r for r in sweep["rows"] if r["coverage"] >= 0.4]
    assert sweep["picked_by"] == "precision" and sweep["min_coverage"] == 0.4
    assert sweep["best"]["precision"] == max(r["precision"] for r in eligible)
    capsys.readouterr()
    assert main([*base, "--min-coverage", "1.01"]) == 2
    assert "--min-coverage must be in [0, 1]" in capsys.readouterr().err
