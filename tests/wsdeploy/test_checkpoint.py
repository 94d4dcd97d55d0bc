"""Checkpoints: round trip, and every way an untrusted file can be wrong gives a ValueError."""
from __future__ import annotations

import argparse
import zipfile

import pytest
import torch

from wsdeploy.checkpoint import CARD_FORMAT_VERSION, ModelCard, load_checkpoint, read_checkpoint, save_checkpoint
from wsdeploy.models import build_model

ARCH_KWARGS = {"width": 16, "output_stride": 16}


@pytest.fixture()
def card() -> ModelCard:
    return ModelCard(
        arch="deeplabv3plus_resnet18",
        arch_kwargs=ARCH_KWARGS,
        classes=["background", "cat", "dog"],
        palette=[[0, 0, 0], [128, 0, 0], [0, 128, 0]],
        input_size=[64, 64],
        supervision="scribbles",
        losses={"pce": 1.0, "crf": 2e-9},
        evaluation={"miou": 0.5, "split": "val"},
    )


@pytest.fixture()
def model(card):
    torch.manual_seed(0)
    return build_model(card.arch, card.num_classes, **card.arch_kwargs).eval()


def test_round_trip_keeps_weights_and_card(tmp_path, model, card):
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, card)
    loaded, card2 = load_checkpoint(path)
    assert card2 == card
    assert card2.to_dict()["losses"] == {"pce": 1.0, "crf": 2e-9}
    for (k, v), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2
        torch.testing.assert_close(v, v2, rtol=0, atol=0)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), loaded(x), rtol=0, atol=0)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_pickled_object_is_refused(tmp_path, model):
    path = tmp_path / "evil.pt"
    torch.save({"format": "wsdeploy-checkpoint", "obj": argparse.Namespace(a=1)}, path)
    with pytest.raises(ValueError, match="unpickling") as info:
        load_checkpoint(path)
    assert "argparse.Namespace" in str(info.value) and "weights_only" not in str(info.value)  # no unsafe advice
    torch.save(model, tmp_path / "whole_model.pt")  # a pickled nn.Module
    with pytest.raises(ValueError, match="unpickling"):
        load_checkpoint(tmp_path / "whole_model.pt")


def test_truncated_file(tmp_path, model, card):
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, card)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"truncated checkpoint \(\d+ bytes") as info:
        load_checkpoint(path)
    assert len(str(info.value)) < 200 and "miniz" not in str(info.value)  # issue 16, item 10


def test_non_checkpoint_files(tmp_path, model):
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="an empty file"):
        load_checkpoint(tmp_path / "empty.pt")
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="not a wsdeploy checkpoint"):
        load_checkpoint(tmp_path / "bare.pt")
    with zipfile.ZipFile(tmp_path / "other.zip.pt", "w") as z:
        z.writestr("x.txt", "not torch")
    with pytest.raises(ValueError):
        load_checkpoint(tmp_path / "other.zip.pt")


def _write_raw(path, card_dict, state):
    torch.save({"format": "wsdeploy-checkpoint", "card": card_dict, "state_dict": state}, path)


def test_newer_format_version(tmp_path, model, card):
    d = card.to_dict()
    d["format_version"] = CARD_FORMAT_VERSION + 1
    _write_raw(tmp_path / "new.pt", d, model.state_dict())
    with pytest.raises(ValueError, match="newer than this wsdeploy supports"):
        load_checkpoint(tmp_path / "new.pt")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.pop("classes"), "missing required"),
        (lambda d: d.update(classes=[]), "classes"),
        (lambda d: d.update(supervision="magic"), "supervision"),
        (lambda d: d.update(palette=[[0, 0, 0]]), "palette"),
        (lambda d: d.update(std=[1.0, 0.0, 1.0]), "std"),
        (lambda d: d.update(surprise=1), "unknown fields"),
        (lambda d: d.update(arch="no_such_model"), "cannot be built"),
        (lambda d: d.update(arch_kwargs={"widht": 16}), "cannot be built"),
    ],
)
def test_bad_cards(tmp_path, model, card, change, message):
    d = card.to_dict()
    change(d)
    _write_raw(tmp_path / "bad.pt", d, model.state_dict())
    with pytest.raises(ValueError, match=message):
        load_checkpoint(tmp_path / "bad.pt")


def test_weights_that_do_not_match_the_card(tmp_path, model, card):
    d = card.to_dict()
    d["classes"] = ["a", "b", "c", "d"]  # 4 classes: the classifier's shape no longer fits
    d["palette"] = None
    _write_raw(tmp_path / "k.pt", d, model.state_dict())
    with pytest.raises(ValueError, match="wrong shapes"):
        load_checkpoint(tmp_path / "k.pt")
    state = dict(model.state_dict())
    state.pop(next(iter(state)))
    state["extra.weight"] = torch.zeros(1)
    _write_raw(tmp_path / "m.pt", card.to_dict(), state)
    with pytest.raises(ValueError, match="1 missing.*1 unexpected"):
        load_checkpoint(tmp_path / "m.pt")


def test_read_checkpoint_without_building(tmp_path, model, card):
    save_checkpoint(tmp_path / "m.pt", model, card)
    card2, state = read_checkpoint(tmp_path / "m.pt")
    assert card2.arch == "deeplabv3plus_resnet18" and len(state) == len(model.state_dict())
