"""The trainer's tags tasks at tiny size: the affinity net from seeds, the classifier with
regional contrast (both resume exactly), and their config errors."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from wsdeploy.checkpoint import load_checkpoint, read_checkpoint
from wsdeploy.data.image_io import read_label_png, write_label_png
from wsdeploy.training.tags.affinity import load_affinity_checkpoint
from wsdeploy.training.tags.settings import AffinitySettings, ContrastSettings

from tests.training.test_self_training import _Interrupt, _interrupt_after_checkpoint
from tests.training.test_trainer import read_log, tiny
from tests.training.test_trainer_tags import tagged  # noqa: F401 (fixture)

pytest.importorskip("albumentations")


@pytest.fixture(scope="module")
def classifier(tagged, tmp_path_factory):
    from wsdeploy.training import train

    out = tmp_path_factory.mktemp("cls")
    return train(tiny(tagged, out, supervision="tags", model="classifier_resnet18", output_stride=8, val_split=""))


@pytest.fixture(scope="module")
def cam_like_seeds(tagged, tmp_path_factory) -> Path:
    """CAM-like seeds of the tagged images: the mask, with a 2-pixel ignore band at every edge."""
    out = tmp_path_factory.mktemp("cam_seeds")
    for path in sorted((tagged / "masks").glob("*.png")):
        mask = read_label_png(path)
        edge = np.zeros(mask.shape, bool)
        for dy, dx in ((0, 1), (1, 0), (0, 2), (2, 0)):
            diff = mask[dy:, dx:] != mask[: mask.shape[0] - dy, : mask.shape[1] - dx]
            edge[dy:, dx:] |= diff
            edge[: mask.shape[0] - dy, : mask.shape[1] - dx] |= diff
        write_label_png(out / path.name, np.where(edge, 255, mask).astype(np.uint8))
    return out


@pytest.mark.slow
def test_affinity_trains_from_seeds_and_resumes_exactly(tagged, classifier, cam_like_seeds, tmp_path):
    from wsdeploy.training import train

    settings = AffinitySettings(classifier=str(classifier), radius=3, stride=4, dim=4, background="background")
    config = tiny(tagged, tmp_path / "a", supervision="tags", method="affinity", seeds=str(cam_like_seeds),
                  affinity=settings, steps=4)
    path = train(config)
    net, card = load_affinity_checkpoint(path)
    assert card.arch == "affinity_classifier_resnet18" and card.classes == ["square", "disk"]
    assert card.training["affinity"] == {"radius": 3, "stride": 4, "dim": 4}
    assert card.training["affinity_background"] == ["background"] and card.losses == {"affinity": 1.0}
    assert card.evaluation["positive_pairs"] > 0 and 0 <= card.evaluation["pair_accuracy"] <= 1
    entries, _ = read_log(tmp_path / "a")
    assert all(e["loss"] == e["affinity"] and e["affinity"] > 0 for e in entries)
    frozen, _ = load_checkpoint(classifier)
    for name, value in frozen.state_dict().items():  # the classifier did not move, BN statistics included
        assert torch.equal(net.classifier.state_dict()[name], value), name
    # killed after the step-2 checkpoint and resumed: the same weights as the uninterrupted run
    short = dataclasses.replace(config, out_dir=str(tmp_path / "c"))
    with pytest.MonkeyPatch.context() as m:
        _interrupt_after_checkpoint(m, at_step=2)
        with pytest.raises(_Interrupt):
            train(short)
    resumed = train(short, resume=tmp_path / "c" / "last.pt")
    a, b = read_checkpoint(path)[1], read_checkpoint(resumed)[1]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_classifier_with_regional_contrast_trains_logs_and_resumes(tagged, tmp_path):
    from wsdeploy.training import train

    def config(out, **changes):
        return tiny(tagged, out, supervision="tags", model="classifier_resnet18", output_stride=8,
                    contrast=ContrastSettings(weight=0.5, dim=4, bank_size=3), steps=4, **changes)

    path = train(config(tmp_path / "a"))
    entries, _ = read_log(tmp_path / "a")
    assert all(set(e) >= {"soft_margin", "region_contrast"} for e in entries)
    assert entries[0]["region_contrast"] == 0.0  # the bank is empty before the first batch
    assert any(e["region_contrast"] > 0 for e in entries[1:])
    model, card = load_checkpoint(path)  # a plain classifier: no contrast module in model.pt
    assert not hasattr(model, "contrast") and card.losses == {"multilabel_soft_margin": 1.0, "region_contrast": 0.5}
    short = config(tmp_path / "b")
    with pytest.MonkeyPatch.context() as m:
        _interrupt_after_checkpoint(m, at_step=2)
        with pytest.raises(_Interrupt):
            train(short)
    resumed = train(short, resume=tmp_path / "b" / "last.pt")  # the bank comes back with last.pt
    a, b = read_checkpoint(path)[1], read_checkpoint(resumed)[1]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_tags_options_config_errors(tagged, tmp_path):
    with pytest.raises(ValueError, match="needs affinity_classifier"):
        tiny(tagged, tmp_path, supervision="tags", method="affinity", seeds="seeds")
    with pytest.raises(ValueError, match="option of classifier training"):
        tiny(tagged, tmp_path, contrast=ContrastSettings(weight=0.1))
    with pytest.raises(ValueError, match="rounds"):
        tiny(tagged, tmp_path, rounds=2)


def test_a_segmenter_given_as_the_affinity_classifier_is_refused(tagged, tmp_path):
    from wsdeploy.training import train

    seg = train(tiny(tagged, tmp_path / "seg", supervision="full", steps=2, val_split=""))
    config = tiny(tagged, tmp_path / "a", supervision="tags", method="affinity", seeds="seeds",
                  affinity=AffinitySettings(classifier=str(seg)))
    with pytest.raises(ValueError, match="must be a CAM classifier"):
        train(config)
