"""Regional contrast: the loss and its gradient on a hand-computed case, pooling, the bank."""
from __future__ import annotations

import math

import pytest
import torch
from wsdeploy.training.tags.contrast import RegionContrast, region_contrast_loss, region_embeddings


def _bank() -> tuple[torch.Tensor, torch.Tensor]:
    bank = torch.zeros(2, 2, 2)
    filled = torch.zeros(2, 2, dtype=torch.bool)
    bank[0, 0] = torch.tensor([0.6, 0.8])  # the only class-0 entry; slot (0, 1) stays empty
    bank[1, 0] = torch.tensor([0.0, 1.0])
    bank[1, 1] = torch.tensor([-1.0, 0.0])
    filled[0, 0] = filled[1, 0] = filled[1, 1] = True
    bank[0, 1] = torch.tensor([1.0, 0.0])  # not filled: must be ignored although it matches e
    return bank, filled


def test_loss_value_and_gradient_hand_computed():
    tau = 0.5
    bank, filled = _bank()
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    classes = torch.tensor([0, 1])
    loss = region_contrast_loss(e, classes, bank, filled, temperature=tau)
    # region 0 (class 0): s+ = 0.6/tau = 1.2, negatives s = 0 and -2
    z0 = math.exp(1.2) + math.exp(0.0) + math.exp(-2.0)
    l0 = -math.log(math.exp(1.2) / z0)
    # region 1 (class 1): positives (0, 1) -> s = 2 and (-1, 0) -> s = 0; negative (0.6, 0.8) -> 1.6
    l1 = 0.5 * (-math.log(math.exp(2) / (math.exp(2) + math.exp(1.6))) - math.log(1 / (1 + math.exp(1.6))))
    assert loss.item() == pytest.approx((l0 + l1) / 2, rel=1e-6)
    loss.backward()
    # d l0 / d e0 = (-k+ + (e^1.2 k+ + e^0 n1 + e^-2 n2) / z0) / tau, halved by the mean
    kp, n1, n2 = torch.tensor([0.6, 0.8]), torch.tensor([0.0, 1.0]), torch.tensor([-1.0, 0.0])
    g0 = (-kp + (math.exp(1.2) * kp + n1 + math.exp(-2.0) * n2) / z0) / tau / 2
    torch.testing.assert_close(e.grad[0], g0, rtol=1e-5, atol=1e-6)
    # region 1, pair p: d/de [-s_p + log(e^s_p + e^s_n)] = (-p + (e^s_p p + e^s_n n) / (e^s_p + e^s_n)) / tau
    g1 = torch.zeros(2)
    for p, sp in ((n1, 2.0), (n2, 0.0)):
        z = math.exp(sp) + math.exp(1.6)
        g1 += (-p + (math.exp(sp) * p + math.exp(1.6) * kp) / z) / tau
    torch.testing.assert_close(e.grad[1], g1 / 2 / 2, rtol=1e-5, atol=1e-6)


def test_regions_without_positive_or_negative_are_skipped():
    bank, filled = _bank()
    filled[0] = False  # class 0 has no entry: region of class 0 unusable, class 1 has no negative
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    loss = region_contrast_loss(e, torch.tensor([0, 1]), bank, filled)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(e.grad, torch.zeros(2, 2))


def test_region_embeddings_weight_features_by_the_normalised_cam():
    features = torch.tensor([[[[2.0, 4.0]]]], requires_grad=True)  # (1, 1, 1, 2)
    cams = torch.tensor([[[[3.0, -1.0]], [[1.0, 1.0]], [[5.0, 0.0]]]])  # (1, 3, 1, 2)
    tags = torch.tensor([[True, True, False]])
    regions, classes = region_embeddings(features, cams, tags)
    assert classes.tolist() == [0, 1]
    assert regions[0, 0].item() == pytest.approx(2.0, abs=1e-4)  # ReLU removes the -1
    assert regions[1, 0].item() == pytest.approx(3.0, abs=1e-6)
    regions.sum().backward()
    assert features.grad is not None and features.grad.sum().item() == pytest.approx(2.0, abs=1e-5)


def test_bank_is_fifo_per_class_and_restored_with_the_state_dict():
    torch.manual_seed(0)
    rc = RegionContrast(num_classes=2, in_channels=3, dim=2, bank_size=2)
    a, b, c = (torch.nn.functional.normalize(torch.randn(1, 2), dim=1) for _ in range(3))
    rc.push(torch.cat([a, b, c]), torch.tensor([1, 1, 1]))
    torch.testing.assert_close(rc.bank[1], torch.cat([c, b]))  # slot 0 overwritten by the third
    assert rc.filled.tolist() == [[False, False], [True, True]]
    copy = RegionContrast(num_classes=2, in_channels=3, dim=2, bank_size=2)
    copy.load_state_dict(rc.state_dict())
    assert torch.equal(copy.bank, rc.bank) and torch.equal(copy.cursor, rc.cursor)
    feats, cams = torch.randn(2, 3, 4, 4), torch.randn(2, 2, 4, 4)
    tags = torch.tensor([[1, 1], [0, 1]])
    rc.train()(feats, cams, tags)
    assert rc.filled[0].sum() == 1 and int(rc.cursor[1]) == 1  # one class-0 region; 3 + 2 class-1 ones, M = 2
    before = rc.bank.clone()
    rc.eval()(feats, cams, tags)
    assert torch.equal(rc.bank, before)  # evaluation never writes the bank
