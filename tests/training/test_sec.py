"""SEC's losses (training/losses/sec.py) on hand-computed cases and a brute-force GWRP (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from wsdeploy.training.losses import sec
from wsdeploy.training.losses.sec import (
    SEC_CRF_PARAMS,
    SECLoss,
    constrain_loss,
    expansion_loss,
    gwrp,
    rescale_decay,
    seeding_loss,
)


def brute_gwrp(scores, decay, valid=None):
    """(B, K, H, W), (K,) decays, (B, H, W) valid -> (B, K), by Python loops and sorted()."""
    b, k = scores.shape[:2]
    out = torch.zeros(b, k, dtype=torch.float64)
    for i in range(b):
        for c in range(k):
            vals = scores[i, c].flatten().tolist()
            if valid is not None:
                vals = [v for v, ok in zip(vals, valid[i].flatten().tolist()) if ok]
            vals = sorted(vals, reverse=True)
            d = float(decay[c])
            num = sum(d**j * v for j, v in enumerate(vals))
            den = sum(d**j for j in range(len(vals)))
            out[i, c] = num / den if vals else 0.0
    return out


def distinct_scores(b=2, k=3, h=4, w=5, seed=0):
    """(B, K, H, W) float64 in (0, 1), all values distinct (sort stays smooth)."""
    g = torch.Generator().manual_seed(seed)
    n = b * k * h * w
    return ((torch.randperm(n, generator=g).double() + 0.5) / n).reshape(b, k, h, w)


def some_valid(b=2, h=4, w=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    valid = torch.rand(b, h, w, generator=g) < 0.6
    valid[0, 0, 0] = True
    return valid


# ---------------------------------------------------------------- gwrp


def test_gwrp_matches_brute_force_with_and_without_valid():
    s = distinct_scores()
    decay = torch.tensor([0.5, 0.9, 0.996], dtype=torch.float64)
    torch.testing.assert_close(gwrp(s, decay), brute_gwrp(s, decay), rtol=1e-12, atol=1e-12)
    valid = some_valid()
    torch.testing.assert_close(
        gwrp(s, decay, valid=valid), brute_gwrp(s, decay, valid), rtol=1e-12, atol=1e-12
    )
    # a float decay is the same for every class; (B, K, N) scores with (B, N) valid likewise
    torch.testing.assert_close(gwrp(s, 0.7), brute_gwrp(s, [0.7] * 3))
    torch.testing.assert_close(
        gwrp(s.flatten(2), decay, valid=valid.flatten(1)), brute_gwrp(s, decay, valid)
    )


def test_gwrp_decay_one_is_mean_and_zero_is_max():
    s, valid = distinct_scores(), some_valid()
    v = valid[:, None].double()
    torch.testing.assert_close(gwrp(s, 1.0), s.mean((2, 3)))
    torch.testing.assert_close(gwrp(s, 1.0, valid=valid), (s * v).sum((2, 3)) / v.sum((2, 3)))
    torch.testing.assert_close(gwrp(s, 0.0), s.amax((2, 3)))
    masked_max = torch.where(valid[:, None], s, -1.0).amax((2, 3))
    torch.testing.assert_close(gwrp(s, 0.0, valid=valid), masked_max)
    torch.testing.assert_close(gwrp(s, 1e-9, valid=valid), masked_max, rtol=1e-7, atol=0)


def test_gwrp_gradcheck_and_zero_gradient_on_invalid():
    s, valid = distinct_scores(1, 2, 3, 4), some_valid(1, 3, 4)
    decay = torch.tensor([0.6, 0.95], dtype=torch.float64)
    x = s.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: gwrp(t, decay), (x,))
    assert torch.autograd.gradcheck(lambda t: gwrp(t, decay, valid=valid), (x,))
    gwrp(x, decay, valid=valid).sum().backward()
    assert x.grad.permute(1, 0, 2, 3)[:, ~valid].abs().max() == 0


def test_gwrp_image_without_valid_pixel_is_zero_and_dtype_kept():
    s = distinct_scores().float()
    valid = torch.ones(2, 4, 5, dtype=torch.bool)
    valid[1] = False
    out = gwrp(s, 0.9, valid=valid)
    assert out.dtype == torch.float32 and out.shape == (2, 3)
    assert torch.equal(out[1], torch.zeros(3))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"decay": 1.5}, "decay must be in"),
        ({"decay": torch.tensor([0.5, -0.1, 0.5])}, "decay must lie in"),
        ({"decay": torch.tensor([0.5, 0.5])}, r"\(K,\) = \(3,\)"),
        ({"decay": 0.9, "valid": torch.ones(2, 4, 4, dtype=torch.bool)}, r"\(2, 4, 5\)"),
        ({"decay": 0.9, "valid": torch.ones(2, 4, 5)}, "bool"),
    ],
)
def test_gwrp_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gwrp(distinct_scores(), **kwargs)


def test_rescale_decay():
    assert rescale_decay(0.996, 41 * 41) == pytest.approx(0.996)
    assert rescale_decay(0.996, 32 * 32) == pytest.approx(0.996 ** (1681 / 1024))
    # the same weight at the same rank fraction
    assert rescale_decay(0.999, 1024) ** 512 == pytest.approx(0.999 ** (1681 / 2))
    with pytest.raises(ValueError, match="num_pixels"):
        rescale_decay(0.9, 0)


# ---------------------------------------------------------------- seeding


def test_seeding_loss_hand_case_and_batch_normaliser():
    # one 2x2 image, K = 2: seeds 0 at (0, 0), 1 at (1, 1), unseeded and padding elsewhere
    fg = torch.tensor([[0.2, 0.9], [0.5, 0.7]], dtype=torch.float64)
    probs = torch.stack([1 - fg, fg])[None]  # (1, 2, 2, 2)
    seeds = torch.tensor([[[0, 255], [254, 1]]])
    expected = -(math.log(0.8) + math.log(0.7)) / 2
    assert seeding_loss(probs, seeds).item() == pytest.approx(expected, rel=1e-12)
    # a second image with one seed: one normaliser for the batch (3 seeds), not per image
    seeds2 = torch.cat([seeds, torch.tensor([[[255, 1], [255, 255]]])])
    expected2 = -(math.log(0.8) + math.log(0.7) + math.log(0.9)) / 3
    out = seeding_loss(torch.cat([probs, probs]), seeds2)
    assert out.item() == pytest.approx(expected2, rel=1e-12)


def test_seeding_loss_without_seeds_is_zero_with_graph():
    probs = torch.full((2, 3, 4, 4), 1 / 3, requires_grad=True)
    seeds = torch.full((2, 4, 4), 255)
    seeds[:, :, 0] = 254
    out = seeding_loss(probs, seeds)
    assert out.item() == 0 and out.requires_grad
    out.backward()
    assert torch.equal(probs.grad, torch.zeros_like(probs))


def test_seeding_loss_gradient_and_errors():
    probs = torch.tensor([[[[0.25]], [[0.75]]]], dtype=torch.float64, requires_grad=True)
    seeding_loss(probs, torch.tensor([[[1]]])).backward()
    torch.testing.assert_close(probs.grad[0, :, 0, 0], torch.tensor([0, -1 / 0.75]).double())
    with pytest.raises(ValueError, match=r"\(1, 1, 1\)"):
        seeding_loss(probs, torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        seeding_loss(probs, torch.zeros(1, 1, 1))


# ---------------------------------------------------------------- expansion

# three pixels (1 x 3), K = 3; per pixel (c0, c1, c2), each sums to 1
PIXELS = [(0.7, 0.2, 0.1), (0.1, 0.6, 0.3), (0.2, 0.3, 0.5)]
HALF = {"fg_decay": 0.5, "bg_decay": 0.5}
Z = 1 + 0.5 + 0.25  # GWRP normaliser for three pixels at d = 0.5


def tiny_probs(batch=2):
    p = torch.tensor(PIXELS, dtype=torch.float64).t()[:, None, :]  # (3, 1, 3)
    return p[None].repeat(batch, 1, 1, 1)  # (B, 3, 1, 3)


def test_expansion_loss_with_background_hand_case():
    probs = tiny_probs()
    tags = torch.tensor([[0.0, 1, 0], [0, 0, 0]])
    # G by hand, scores sorted descending: c0 0.7 0.2 0.1, c1 0.6 0.3 0.2
    g_bg = (0.7 + 0.5 * 0.2 + 0.25 * 0.1) / Z
    g_1 = (0.6 + 0.5 * 0.3 + 0.25 * 0.2) / Z
    image0 = -math.log(g_1) - math.log(1 - 0.5) - math.log(g_bg)  # T = {1}, absent {2}
    image1 = -(math.log(1 - 0.6) + math.log(1 - 0.5)) / 2 - math.log(g_bg)  # no tag
    out = expansion_loss(probs, tags, background_index=0, **HALF)
    assert out.item() == pytest.approx((image0 + image1) / 2, rel=1e-12)
    # the background's column of the tags is ignored; bool tags work too
    tags_bg = tags.clone()
    tags_bg[:, 0] = 1
    torch.testing.assert_close(expansion_loss(probs, tags_bg, background_index=0, **HALF), out)
    torch.testing.assert_close(expansion_loss(probs, tags > 0, background_index=0, **HALF), out)


def test_expansion_loss_without_background_hand_case():
    probs = tiny_probs()
    tags = torch.tensor([[1.0, 0, 0], [1, 1, 1]])
    g = [
        (0.7 + 0.5 * 0.2 + 0.25 * 0.1) / Z,
        (0.6 + 0.5 * 0.3 + 0.25 * 0.2) / Z,
        (0.5 + 0.5 * 0.3 + 0.25 * 0.1) / Z,
    ]
    image0 = -math.log(g[0]) - (math.log(1 - 0.6) + math.log(1 - 0.5)) / 2
    image1 = -sum(math.log(x) for x in g) / 3  # every class tagged: no absent term
    out = expansion_loss(probs, tags, background_index=None, **HALF)
    assert out.item() == pytest.approx((image0 + image1) / 2, rel=1e-12)


def test_expansion_loss_uses_valid_pixels_only_and_decays():
    probs = tiny_probs()
    tags = torch.tensor([[0.0, 1, 0], [0, 1, 0]])
    valid = torch.tensor([[[True, True, False]], [[False, False, False]]])
    z2 = 1 + 0.9
    g_bg = (0.7 + 0.9 * 0.1) / z2  # bg_decay 0.9 on pixels 0 and 1
    g_1 = (0.6 + 0.5 * 0.2) / (1 + 0.5)  # fg_decay 0.5
    expected = -math.log(g_1) - math.log(1 - 0.3) - math.log(g_bg)  # max of c2 over valid: 0.3
    out = expansion_loss(probs, tags, background_index=0, fg_decay=0.5, bg_decay=0.9, valid=valid)
    assert out.item() == pytest.approx(expected, rel=1e-12)  # image 1 has no pixel: left out
    x = probs.clone().requires_grad_(True)
    expansion_loss(x, tags, background_index=0, valid=valid).backward()
    assert x.grad[1].abs().max() == 0 and x.grad[0, :, 0, 2].abs().max() == 0


def test_expansion_loss_errors():
    probs = tiny_probs()
    with pytest.raises(ValueError, match=r"\(B, K\) = \(2, 3\)"):
        expansion_loss(probs, torch.zeros(2, 4), background_index=0)
    with pytest.raises(ValueError, match="background_index"):
        expansion_loss(probs, torch.zeros(2, 3), background_index=3)
    with pytest.raises(ValueError, match="bg_decay"):
        expansion_loss(probs, torch.zeros(2, 3), background_index=0, bg_decay=1.1)
    with pytest.raises(TypeError, match="tags"):
        expansion_loss(probs, torch.zeros(2, 3, dtype=torch.long), background_index=0)


# ---------------------------------------------------------------- constrain


def smooth_probs(b=2, k=3, h=6, w=7, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, k, h, w, generator=g, dtype=dtype).softmax(1)  # all >> 1e-5


def test_constrain_loss_against_fixed_q_gradient_ignores_q(monkeypatch):
    f = smooth_probs()
    q = smooth_probs(seed=5).float()
    valid = some_valid(2, 6, 7)
    seen = {}

    def fake_crf(image, probs, **kwargs):
        seen.update(image=image, probs=probs, kwargs=kwargs)
        return q

    monkeypatch.setattr(sec, "dense_crf", fake_crf)
    rgb = torch.rand(2, 3, 6, 7, dtype=torch.float64) * 255
    x = f.clone().requires_grad_(True)
    out = constrain_loss(x, rgb, valid=valid, crf_kwargs={"iterations": 3})
    qd, n = q.double(), valid.sum()
    expected = ((qd * (qd / f).log()).sum(1) * valid).sum() / n
    torch.testing.assert_close(out, expected)
    out.backward()
    torch.testing.assert_close(x.grad, -qd / f / n * valid[:, None])  # no gradient through Q
    assert seen["image"].dtype == torch.uint8 and seen["image"].shape == (2, 6, 7, 3)
    assert not seen["probs"].requires_grad
    assert seen["kwargs"] == {**SEC_CRF_PARAMS.as_dict(), "iterations": 3}
    monkeypatch.setattr(sec, "dense_crf", lambda image, probs, **kw: probs)
    assert constrain_loss(f, rgb).item() == 0  # Q == f


def test_constrain_loss_real_crf():
    f = smooth_probs(dtype=torch.float32)
    rgb = torch.rand(2, 3, 6, 7) * 255
    # 0 iterations returns f (clipped at 1e-5 and renormalised, computed in float32)
    assert abs(constrain_loss(f, rgb, crf_kwargs={"iterations": 0}).item()) < 1e-6
    out = constrain_loss(f, rgb.to(torch.uint8))
    assert math.isfinite(out.item()) and out.item() > 1e-3
    with pytest.raises(ValueError, match="unknown CRF parameter"):
        constrain_loss(f, rgb, crf_kwargs={"iteration": 3})


# ---------------------------------------------------------------- SECLoss


def sec_inputs(b=2, k=4, size=32, stride=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, k, size // stride, size // stride, generator=g)
    seeds = torch.randint(0, k, (b, size, size), generator=g)
    seeds[torch.rand(b, size, size, generator=g) < 0.5] = 255
    seeds[:, :, -6:] = 254  # padding: logit column 7 all, column 6 half
    tags = torch.zeros(b, k)
    tags[0, 1] = tags[1, 2] = tags[1, 3] = 1
    rgb = torch.rand(b, 3, size, size, generator=g) * 255
    return logits, seeds, tags, rgb


def test_sec_loss_end_to_end_and_padding():
    logits, seeds, tags, rgb = sec_inputs()
    module = SECLoss(4, background_index=0, expand_weight=2.0)
    x = logits.clone().requires_grad_(True)
    terms = module(x, seeds, tags, rgb)
    assert set(terms) == {"seed", "expand", "constrain"}
    for t in terms.values():
        assert t.shape == () and t.dtype == torch.float32 and math.isfinite(t.item())
    sum(terms.values()).backward()
    assert torch.isfinite(x.grad).all() and x.grad[..., :6].abs().sum() > 0
    assert x.grad[..., 6:].abs().max() == 0  # logit pixels touching padding take no part
    # the terms are the pure losses on the downsampled inputs, weighted
    probs = logits.softmax(1)
    small = seeds[:, 2::4, 2::4].clone()  # nearest-exact: cell centres
    small[..., 6:] = 255
    valid = torch.ones(2, 8, 8, dtype=torch.bool)
    valid[..., 6:] = False
    torch.testing.assert_close(terms["seed"], seeding_loss(probs, small))
    torch.testing.assert_close(
        terms["expand"], 2.0 * expansion_loss(probs, tags, background_index=0, valid=valid)
    )
    rgb_small = torch.nn.functional.avg_pool2d(rgb, 4)
    torch.testing.assert_close(terms["constrain"], constrain_loss(probs, rgb_small, valid=valid))


def test_sec_loss_without_background_explicit_valid_and_no_crf(monkeypatch):
    logits, seeds, tags, rgb = sec_inputs()
    valid = seeds != 254
    module = SECLoss(4, background_index=None, constrain_weight=0.0)
    monkeypatch.setattr(sec, "dense_crf", None)  # a zero constrain weight must skip the CRF
    terms = module(logits.requires_grad_(True), seeds, tags, rgb, valid)
    assert terms["constrain"].item() == 0 and terms["constrain"].requires_grad
    sum(terms.values()).backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize(
    "change, error, match",
    [
        ({"logits": torch.zeros(2, 3, 8, 8)}, ValueError, "num_classes = 4"),
        ({"seeds": torch.zeros(2, 32, dtype=torch.long)}, ValueError, r"seeds \(B, H, W\)"),
        ({"seeds": torch.zeros(2, 32, 32)}, TypeError, "integer"),
        ({"tags": torch.zeros(2, 3)}, ValueError, r"tags \(B, K\)"),
        ({"rgb": torch.zeros(2, 3, 16, 16)}, ValueError, r"\(2, 3, 32, 32\)"),
        ({"valid": torch.ones(2, 32, 32)}, TypeError, "bool"),
    ],
)
def test_sec_loss_validates_shapes(change, error, match):
    logits, seeds, tags, rgb = sec_inputs()
    args = {"logits": logits, "seeds": seeds, "tags": tags, "rgb": rgb, "valid": None, **change}
    with pytest.raises(error, match=match):
        SECLoss(4, background_index=0)(**args)


def test_sec_loss_validates_settings():
    with pytest.raises(ValueError, match="num_classes"):
        SECLoss(1, background_index=None)
    with pytest.raises(ValueError, match="background_index"):
        SECLoss(4, background_index=4)
    with pytest.raises(ValueError, match="weight"):
        SECLoss(4, background_index=0, seed_weight=-1.0)
    with pytest.raises(ValueError, match="fg_decay"):
        SECLoss(4, background_index=0, fg_decay=2.0)
    with pytest.raises(ValueError, match="unknown CRF parameter"):
        SECLoss(4, background_index=0, crf_kwargs={"sigma": 3.0})
