"""Affinity from seeds: pair labels on a hand-made seed map, the balanced loss, the head."""
from __future__ import annotations

import math

import pytest
import torch
from wsdeploy.training.tags.affinity import (
    AffinityNet,
    affinity_labels,
    affinity_loss,
    load_affinity_checkpoint,
    save_affinity_checkpoint,
    seeds_to_grid,
)

from wsdeploy.checkpoint import ModelCard, save_checkpoint
from wsdeploy.models import build_model

N = 255


def test_pair_labels_of_a_hand_made_seed_map():
    # radius 2: offsets (0, 1), (1, -1), (1, 0), (1, 1); class 0 is background, 5 an object
    seeds = torch.tensor([[[0, 0, 5, N],
                           [0, 5, 5, 5]]], dtype=torch.uint8)
    labels = affinity_labels(seeds, stride=1, radius=2, background_classes=[0])
    z = [[0, 0, 0, 0], [0, 0, 0, 0]]
    fg = [[[0, 0, 0, 0], [0, 1, 1, 0]],  # (0,1): 5-5 twice on row 1
          [[0, 0, 1, 0], [0, 0, 0, 0]],  # (1,-1): (0,2)-(1,1)
          [[0, 0, 1, 0], [0, 0, 0, 0]],  # (1,0): (0,2)-(1,2)
          [[0, 0, 1, 0], [0, 0, 0, 0]]]  # (1,1): (0,2)-(1,3)
    bg = [[[1, 0, 0, 0], [0, 0, 0, 0]],
          [[0, 1, 0, 0], [0, 0, 0, 0]],
          [[1, 0, 0, 0], [0, 0, 0, 0]],
          z]
    neg = [[[0, 1, 0, 0], [1, 0, 0, 0]],
           z,
           [[0, 1, 0, 0], [0, 0, 0, 0]],
           [[1, 1, 0, 0], [0, 0, 0, 0]]]
    assert labels.foreground[0].int().tolist() == fg
    assert labels.background[0].int().tolist() == bg
    assert labels.negative[0].int().tolist() == neg
    assert labels.counts() == {"foreground": 5, "background": 3, "negative": 5}
    # without background classes every positive pair is a foreground pair
    plain = affinity_labels(seeds, stride=1, radius=2)
    assert torch.equal(plain.foreground, labels.foreground | labels.background)
    assert not plain.background.any()


def test_grid_keeps_cells_whose_seeds_agree_and_pads_with_no_seed():
    seeds = torch.tensor([[[1, 1, 2, 2, 3],
                           [1, 1, 2, 9, 3],
                           [4, 4, N, 7, 3],
                           [4, 4, 7, 7, 254]]], dtype=torch.uint8)
    grid = seeds_to_grid(seeds, 2)
    # (0,1) mixes 2 and 9; (0,2) is two 3s and two padding pixels (half seeded: kept); (1,1) is
    # three 7s and the ignore band; (1,2) has a single seeded pixel (the 3)
    assert grid.tolist() == [[[1, N, 3], [4, 7, N]]]
    assert seeds_to_grid(seeds, 2, min_fraction=1.0).tolist() == [[[1, N, N], [4, N, N]]]
    assert seeds_to_grid(seeds, 1)[0, 2, 2] == N and seeds_to_grid(seeds, 1)[0, 3, 4] == N


def test_pairs_at_stride_and_radius_skip_impure_cells():
    seeds = torch.full((1, 8, 8), 3, dtype=torch.uint8)
    seeds[0, :, 4:] = 6
    seeds[0, 0, 0] = 6  # cell (0, 0) mixes 3 and 6 at stride 2: no label
    labels = affinity_labels(seeds, stride=2, radius=3, background_classes=[3])
    assert labels.foreground.shape == (1, 12, 4, 4)
    assert not (labels.foreground | labels.background | labels.negative)[0, :, 0, 0].any()
    # pairs touching cell (0, 0) from above-left are also gone: (1, 1) -> (0, 0) is stored at (0, 0)
    assert labels.background.sum() > 0 and labels.foreground.sum() > 0 and labels.negative.sum() > 0


def test_balanced_loss_hand_computed_value_and_gradient():
    aff = torch.tensor([[[[0.9, 0.5]], [[0.2, 0.8]]]], requires_grad=True)  # (1, 2, 1, 2)
    fg = torch.tensor([[[[True, False]], [[False, False]]]])
    bg = torch.tensor([[[[False, True]], [[False, False]]]])
    neg = torch.tensor([[[[False, False]], [[True, True]]]])
    from wsdeploy.training.tags.affinity import AffinityLabels

    loss = affinity_loss(aff, AffinityLabels(fg, bg, neg), eps=0.0)
    want = 0.25 * -math.log(0.9) + 0.25 * -math.log(0.5) + 0.5 * (-math.log(0.8) - math.log(0.2)) / 2
    assert loss.item() == pytest.approx(want, rel=1e-6)
    loss.backward()
    grad = aff.grad[0, :, 0].tolist()
    assert grad[0] == pytest.approx([-0.25 / 0.9, -0.25 / 0.5], rel=1e-6)
    assert grad[1] == pytest.approx([0.25 / 0.8, 0.25 / 0.2], rel=1e-6)
    # no background pair: the other two weights renormalise (1/4, 1/2) -> (1/3, 2/3)
    loss2 = affinity_loss(aff.detach(), AffinityLabels(fg, torch.zeros_like(bg), neg), eps=0.0)
    assert float(loss2) == pytest.approx(-math.log(0.9) / 3 + 2 / 3 * (-math.log(0.8) - math.log(0.2)) / 2, rel=1e-6)
    empty = torch.zeros_like(fg)
    assert affinity_loss(aff, AffinityLabels(empty, empty, empty)).item() == 0.0


def _classifier() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("classifier_resnet18", 3, width=8, output_stride=8)


def test_affinity_net_freezes_the_classifier_and_trains_the_head():
    net = AffinityNet(_classifier(), radius=3, stride=4, dim=4).train()
    assert not net.classifier.training and all(not p.requires_grad for p in net.classifier.parameters())
    x = torch.randn(2, 3, 32, 32)
    aff = net(x)
    assert aff.shape == (2, 12, 8, 8) and aff.max().item() <= 1.0 and aff.min().item() >= 0.0
    seeds = torch.randint(0, 3, (2, 32, 32), dtype=torch.uint8)
    affinity_loss(aff, affinity_labels(seeds, stride=4, radius=3, background_classes=[0])).backward()
    assert all(p.grad is not None for p in net.head.parameters())
    assert AffinityNet(_classifier(), radius=3, stride=8, dim=4)(x).shape == (2, 12, 4, 4)


def test_affinity_checkpoint_round_trip_and_wrong_kind(tmp_path):
    classifier = _classifier()
    card = ModelCard(arch="classifier_resnet18", classes=["a", "b", "c"],
                     arch_kwargs={"width": 8, "output_stride": 8}, supervision="tags")
    net = AffinityNet(classifier, radius=3, stride=4, dim=4).eval()
    save_affinity_checkpoint(tmp_path / "aff.pt", net, card, training={"steps": 1})
    loaded, loaded_card = load_affinity_checkpoint(tmp_path / "aff.pt")
    x = torch.randn(1, 3, 16, 16)
    torch.testing.assert_close(loaded(x), net(x))
    assert loaded_card.arch == "affinity_classifier_resnet18" and loaded_card.training["steps"] == 1
    save_checkpoint(tmp_path / "clf.pt", classifier, card)
    with pytest.raises(ValueError, match="is a classifier checkpoint"):
        load_affinity_checkpoint(tmp_path / "clf.pt")
