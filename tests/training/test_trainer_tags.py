"""The trainer on image-level tags: the CAM classifier, and segmenters trained on seeds
(pCE + regularizers, and SEC)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from wsdeploy.checkpoint import read_checkpoint
from wsdeploy.data.image_io import write_image, write_label_png
from wsdeploy.training.tags.evaluate import average_precision

from tests.training.test_trainer import CLASSES, _scene, read_log, tiny

pytest.importorskip("albumentations")


@pytest.fixture(scope="module")
def tagged(tmp_path_factory) -> Path:
    """5 train + 2 val images (32x32) with masks, tags.txt (background never tagged) and a
    seeds/ folder of partial labels standing in for CAM seeds."""
    root = tmp_path_factory.mktemp("tagged")
    rng = np.random.default_rng(1)
    lines = []
    names = [f"t{i}" for i in range(5)] + ["v0", "v1"]
    for name in names:
        image, mask, seeds = _scene(rng, 32, 32)
        write_image(root / "images" / f"{name}.png", image)
        write_label_png(root / "masks" / f"{name}.png", mask)
        write_label_png(root / "seeds" / f"{name}.png", seeds)
        lines.append(" ".join([name, *(CLASSES[c] for c in np.unique(mask) if c != 0)]))
    (root / "tags.txt").write_text("\n".join(lines) + "\n")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("\n".join(names[:5]) + "\n")
    (root / "splits" / "val.txt").write_text("v0\nv1\n")
    return root


def test_classifier_trains_on_tags_and_reports_map(tagged, tmp_path):
    from wsdeploy.training import train

    config = tiny(tagged, tmp_path, supervision="tags", model="classifier_resnet18")
    card, _ = read_checkpoint(train(config))
    entries, _ = read_log(tmp_path)
    assert [e["step"] for e in entries] == [1, 2, 3]
    assert all(np.isfinite(e["soft_margin"]) and e["loss"] == e["soft_margin"] for e in entries)
    assert card.classes == ["square", "disk"]  # foreground only: background is never tagged
    assert card.supervision == "tags" and card.losses == {"multilabel_soft_margin": 1.0}
    assert card.training["method"] == "classifier" and card.training["background"] == "background"
    assert set(card.evaluation) >= {"map", "f1", "per_class_ap"} and card.evaluation["images"] == 2


@pytest.mark.parametrize("method, losses", [("seeds-rloss", "pce,crf,entropy"), ("sec", "pce")])
def test_segmenter_trains_on_seeds(tagged, tmp_path, method, losses):
    from wsdeploy.training import train

    config = tiny(tagged, tmp_path, supervision="tags", method=method, seeds="seeds", losses=losses)
    card, _ = read_checkpoint(train(config))
    entries, evals = read_log(tmp_path)
    terms = ["seed", "expand", "constrain"] if method == "sec" else config.loss_names
    for e in entries:
        assert all(np.isfinite(e[t]) for t in terms)
        assert e["loss"] == pytest.approx(sum(e[t] for t in terms), rel=1e-5)
    assert card.classes == CLASSES and card.training["method"] == method
    assert card.training["seeds"] == str((tagged / "seeds").resolve())
    assert 0 <= evals[-1]["miou"] <= 1


def test_missing_or_background_tags_are_clear_errors(tagged, tmp_path):
    from wsdeploy.training import train

    data = tmp_path / "data"
    shutil.copytree(tagged, data)
    lines = (data / "tags.txt").read_text().splitlines()
    (data / "tags.txt").write_text("\n".join(lines[1:]) + "\n")  # t0 has no line
    with pytest.raises(ValueError, match=r"1 image\(s\) of split 'train' have no tags: 't0'"):
        train(tiny(data, tmp_path / "run", supervision="tags", model="classifier_resnet18"))
    (data / "tags.txt").write_text("\n".join(["t0 background square", *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match="tagged with the background class"):
        train(tiny(data, tmp_path / "run", supervision="tags", model="classifier_resnet18"))
    (data / "tags.txt").write_text("\n".join(["t0 sqare", *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match="sqare"):
        train(tiny(data, tmp_path / "run", supervision="tags", model="classifier_resnet18"))
    with pytest.raises(ValueError, match="partial-label folder not found"):
        train(tiny(tagged, tmp_path / "run", supervision="tags", method="sec", seeds="nope"))


def test_average_precision_by_hand():
    # ranks: 0.9 (pos), 0.8 (neg), 0.7 (pos): precisions at the positives 1/1 and 2/3
    scores, targets = np.array([0.7, 0.9, 0.8]), np.array([1, 1, 0])
    assert average_precision(scores, targets) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(scores, np.zeros(3)) is None


def test_a_classifier_checkpoint_is_refused_by_load_with_a_hint(tagged, tmp_path):
    import wsdeploy
    from wsdeploy.training import train

    path = train(tiny(tagged, tmp_path, supervision="tags", model="classifier_resnet18", steps=2))
    with pytest.raises(ValueError, match="image classifier, not a segmenter: use it with `wsdeploy cam"):
        wsdeploy.load(path)
