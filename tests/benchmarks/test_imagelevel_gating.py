"""benchmarks/imagelevel_gating.py's arithmetic on hand-made probabilities (nothing trained)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.benchmarks.test_records import _load


@pytest.fixture(scope="module")
def gating():
    return _load("imagelevel_gating")


def test_tag_quality_counts_hits_misses_and_exact_sets(gating):
    probs = torch.tensor([[0.9, 0.6, 0.1], [0.2, 0.7, 0.4]])
    tags = torch.tensor([[True, False, False], [False, True, True]])
    q = gating.tag_quality(probs, tags, ["a", "b", "c"])
    # predicted {a, b} and {b}: tp 2 (a, b), fp 1 (b in image 0), fn 1 (c in image 1)
    assert (q["precision"], q["recall"], q["f1"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert q["exact_set"] == 0.0 and q["per_class"]["a"]["f1"] == 1.0 and q["per_class"]["c"]["recall"] == 0.0


def test_gates_restrict_or_reweight_the_segmenters_classes(gating):
    # one 1x2 image whose truth is class 0 on both pixels; the segmenter prefers class 1 on both
    seg = [torch.tensor([[[0.40, 0.45]], [[0.60, 0.55]]])]  # (K=2, H=1, W=2) softmax
    labels = [np.zeros((1, 2), dtype=np.uint8)]
    tags = torch.tensor([[True, False]])
    cls = torch.tensor([[0.9, 0.55]])  # class 1 wrongly predicted present: the hard gate keeps it
    s = gating.gate_scores(seg, labels, tags, cls, [0.5, 1.0], k=2)
    assert s["all"] == 0.0 and s["true_tags"] == 1.0 and s["hard"] == 0.0
    # soft, a = 1: 0.40 * 0.9 = 0.36 > 0.60 * 0.55 = 0.33 and 0.405 > 0.3025: both pixels class 0
    assert s["soft_1"] == 1.0
    # a = 0.5: 0.40 * 0.949 = 0.380 < 0.60 * 0.742 = 0.445, 0.427 > 0.408: class 0 IoU 1/2, class 1 0/1
    assert s["soft_0.5"] == pytest.approx(0.25)


def test_named_paths_keeps_names_and_numbers_bare_paths(gating):
    assert gating.named_paths("sec=a/model.pt,b.pt", "seg") == {"sec": "a/model.pt", "seg1": "b.pt"}


def test_an_ensemble_is_its_members_joined_by_plus_and_each_member_is_checked(gating, tmp_path, capsys):
    assert gating.members("a.pt+b.pt") == ["a.pt", "b.pt"] and gating.members("a.pt") == ["a.pt"]
    assert gating.named_paths("ens=a.pt+b.pt", "classifier") == {"ens": "a.pt+b.pt"}
    present = tmp_path / "a.pt"
    present.write_bytes(b"x")
    parser = __import__("argparse").ArgumentParser()
    with pytest.raises(SystemExit):
        gating.checked_paths(parser, f"ens={present}+{tmp_path / 'b.pt'}", "classifier")
    err = capsys.readouterr().err
    assert "no such file" in err and "b.pt" in err and str(present) not in err


def test_an_ensembles_probabilities_are_its_members_mean(gating, monkeypatch):
    class Constant(torch.nn.Module):  # logits that give sigmoid probabilities `p` on any image
        def __init__(self, p):
            super().__init__()
            self.logits = torch.logit(torch.tensor([p]))

        def forward(self, x):
            return self.logits.expand(len(x), -1)

    card = type("Card", (), {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)})
    models = {"a.pt": Constant([0.2, 0.9]), "b.pt": Constant([0.6, 0.5])}
    monkeypatch.setattr("wsdeploy.checkpoint.load_checkpoint", lambda path: (models[path], card))
    items = [{"image": np.zeros((4, 4, 3), dtype=np.uint8)}] * 3
    probs = gating.classifier_probs("a.pt+b.pt", items)
    assert probs.shape == (3, 2)
    assert torch.allclose(probs, torch.tensor([[0.4, 0.7]] * 3), atol=1e-6)
    assert torch.allclose(gating.classifier_probs("a.pt", items), torch.tensor([[0.2, 0.9]] * 3), atol=1e-6)


def test_cam_labels_take_the_argmax_over_the_allowed_classes_only():
    segmenter = _load("imagelevel_cam_segmenter")
    cams = torch.tensor([[[[4.0, 1.0]], [[2.0, 2.0]], [[9.0, 9.0]]]])  # (1, K=3, 1, 2)
    # classes 0 and 1 allowed; normalised per class: c0 (1, .25), c1 (1, 1); class 2 is excluded
    labels = segmenter.cam_labels(cams, torch.tensor([[True, True, False]]))
    assert labels.tolist() == [[0, 1]]
    # one allowed class with an all-zero CAM still labels every pixel with it
    zero = segmenter.cam_labels(torch.zeros(1, 3, 1, 2), torch.tensor([[False, False, True]]))
    assert zero.tolist() == [[2, 2]]
    # an ensemble averages the members' normalised CAMs: member 2 (c0 (.5, 1), c1 (1, .25))
    # with member 1 gives c0 (.75, .625), c1 (1, .625): pixel 0 class 1, pixel 1 a tie -> class 0
    other = torch.tensor([[[[1.0, 2.0]], [[4.0, 1.0]], [[0.0, 0.0]]]])
    both = segmenter.cam_labels([cams, other], torch.tensor([[True, True, False]]))
    assert both.tolist() == [[1, 0]]


def test_predicted_tags_are_those_over_one_half_and_at_least_the_top_class(gating):
    probs = torch.tensor([[0.9, 0.6, 0.1], [0.2, 0.4, 0.3]])
    assert gating.predicted_tags(probs).tolist() == [[True, True, False], [False, True, False]]


@pytest.mark.parametrize("script", ["imagelevel_gating", "imagelevel_cam_segmenter"])
@pytest.mark.parametrize("bad", ["no_data", "no_models", "missing_model"])
def test_bad_arguments_are_usage_errors_before_anything_runs(script, bad, tmp_path, monkeypatch, capsys):
    module = _load(script)
    model = tmp_path / "model.pt"
    model.write_bytes(b"x")
    data = tmp_path / "data"
    data.mkdir()
    paths = {"no_data": (tmp_path / "absent", str(model)), "no_models": (data, ""),
             "missing_model": (data, str(tmp_path / "absent.pt"))}[bad]
    argv = [script, "--data", str(paths[0]), "--classifiers", paths[1]]
    if script == "imagelevel_gating":
        argv += ["--segmenters", str(model)]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        module.main()
    assert exit_info.value.code == 2
    assert {"no_data": "no such folder", "no_models": "names no model.pt",
            "missing_model": "no such file"}[bad] in capsys.readouterr().err
