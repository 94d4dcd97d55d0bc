"""Self-training rounds at tiny size: outputs per round, resume = uninterrupted, re-labelling."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from wsdeploy.checkpoint import ModelCard, read_checkpoint, save_checkpoint
from wsdeploy.data.image_io import read_label_png, write_image, write_label_png
from wsdeploy.models import build_model
from wsdeploy.training.tags.relabel import load_segmenter, relabel_images
from wsdeploy.training.tags.self_training import round_paths, self_train
from wsdeploy.training.tags.settings import RelabelSettings

from tests.training.test_trainer import CLASSES, _scene, tiny

pytest.importorskip("albumentations")


@pytest.fixture(scope="module")
def tagged(tmp_path_factory) -> Path:
    """4 train + 1 val images (32x32), masks, tags.txt and pseudo/ (round 1's labels)."""
    root = tmp_path_factory.mktemp("selftrain")
    rng = np.random.default_rng(2)
    lines = []
    names = ["t0", "t1", "t2", "t3", "v0"]
    for name in names:
        image, mask, seeds = _scene(rng, 32, 32)
        write_image(root / "images" / f"{name}.png", image)
        write_label_png(root / "masks" / f"{name}.png", mask)
        write_label_png(root / "pseudo" / f"{name}.png", seeds)
        lines.append(" ".join([name, *(CLASSES[c] for c in np.unique(mask) if c != 0)]))
    (root / "tags.txt").write_text("\n".join(lines) + "\n")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("t0\nt1\nt2\nt3\n")
    (root / "splits" / "val.txt").write_text("v0\n")
    return root


def _base(data: Path, out: Path, rounds: int = 2, **changes):
    return tiny(data, out, supervision="tags", method="seeds-rloss", seeds=str(data / "pseudo"), losses="pce",
                steps=3, checkpoint_every=2, rounds=rounds, **changes)


class _Interrupt(Exception):
    pass


def _interrupt_after_checkpoint(monkeypatch, at_step: int) -> None:
    """Make the trainer stop right after it wrote last.pt at `at_step` (a killed run)."""
    from wsdeploy.training import state

    original = state.save_train_state

    def save_then_stop(*args, **kwargs):
        original(*args, **kwargs)
        if kwargs.get("step") == at_step:
            raise _Interrupt

    for module in list(sys.modules.values()):  # wherever the trainer imported it from
        if getattr(module, "__name__", "").startswith("wsdeploy.training") and \
                getattr(module, "save_train_state", None) is original:
            monkeypatch.setattr(module, "save_train_state", save_then_stop)


@pytest.mark.slow
def test_interrupted_rounds_resume_to_the_uninterrupted_result(tagged, tmp_path, monkeypatch):
    full = self_train(_base(tagged, tmp_path / "a"))
    assert [p.parent.parent.name for p in full] == ["round1", "round2"]
    for r in (1, 2):
        train_dir, label_dir = round_paths(tmp_path / "a", r)
        assert (train_dir / "model.pt").is_file() and (label_dir / "labels.json").is_file()
        assert sorted(p.stem for p in label_dir.glob("*.png")) == ["t0", "t1", "t2", "t3"]
    card, _ = read_checkpoint(full[1])
    assert card.training["seeds"] == str(round_paths(tmp_path / "a", 1)[1].resolve())  # round 2 reads round 1's

    self_train(_base(tagged, tmp_path / "b", rounds=1))
    with monkeypatch.context() as m:  # round 2 killed after its step-2 checkpoint
        _interrupt_after_checkpoint(m, at_step=2)
        with pytest.raises(_Interrupt):
            self_train(_base(tagged, tmp_path / "b"))
    train_b, labels_b = round_paths(tmp_path / "b", 2)
    assert (train_b / "last.pt").is_file() and not (train_b / "model.pt").exists()
    resumed = self_train(_base(tagged, tmp_path / "b"))
    assert read_checkpoint(resumed[1])[0].training["resumed_from"] == str(train_b / "last.pt")
    for a, b in zip(full, resumed):
        state_a, state_b = read_checkpoint(a)[1], read_checkpoint(b)[1]
        assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    for name in ("t0", "t1", "t2", "t3"):
        a = read_label_png(round_paths(tmp_path / "a", 2)[1] / f"{name}.png")
        assert np.array_equal(a, read_label_png(labels_b / f"{name}.png"))
    # a finished driver called again with other settings refuses instead of mixing rounds
    with pytest.raises(ValueError, match="other settings"):
        self_train(_base(tagged, tmp_path / "b", relabel=RelabelSettings(confidence=0.9)))


def test_relabel_keeps_to_the_tags_and_leaves_unsure_pixels_out():
    torch.manual_seed(0)
    model = build_model("lraspp_resnet18", 3, width=8).eval()
    card = ModelCard(arch="lraspp_resnet18", classes=list(CLASSES), arch_kwargs={"width": 8})
    images = np.random.default_rng(0).integers(0, 255, (2, 30, 34, 3), dtype=np.uint8)  # padded inside
    allowed = torch.tensor([[True, False, True], [True, True, True]])
    labels = relabel_images(model, card, images, allowed)
    assert labels.shape == (2, 30, 34) and 1 not in np.unique(labels[0])
    unsure = relabel_images(model, card, images, allowed, confidence=0.999)
    assert (unsure == 255).any() and np.array_equal(unsure[unsure != 255], labels[unsure != 255])


def test_a_classifier_checkpoint_is_refused_where_a_segmenter_is_expected(tmp_path):
    card = ModelCard(arch="classifier_resnet18", classes=["square", "disk"], arch_kwargs={"width": 8},
                     supervision="tags")
    save_checkpoint(tmp_path / "cls.pt", build_model("classifier_resnet18", 2, width=8), card)
    with pytest.raises(ValueError, match="is a CAM classifier checkpoint .* re-labelling needs a segmenter"):
        load_segmenter(tmp_path / "cls.pt")
