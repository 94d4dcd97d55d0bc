"""Partial cross-entropy and entropy against pixel-by-pixel references (exact, float64)."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from wsdeploy.training.losses import EntropyLoss, entropy_loss, partial_cross_entropy

from tests.training import loss_reference as R


def make_logits(b=2, k=4, h=5, w=6, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (2 * torch.randn(b, k, h, w, generator=g, dtype=torch.float64)).to(dtype)


def make_scribbles(b=2, k=4, h=5, w=6, seed=1):
    """(B, H, W) int64: about a third labelled, the rest 255, a padded band of 254."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (b, h, w), generator=g)
    keep = torch.rand(b, h, w, generator=g) < 0.35
    target = torch.where(keep, labels, 255)
    target[:, :, -1] = 254
    return target


def grad_of(fn, x):
    x = x.detach().clone().requires_grad_(True)
    out = fn(x)
    (g,) = torch.autograd.grad(out, x)
    return out.detach(), g


def test_pce_matches_reference_and_skips_255_and_254():
    logits, target = make_logits(), make_scribbles()
    out, g = grad_of(lambda z: partial_cross_entropy(z, target), logits)
    ref, g_ref = grad_of(lambda z: R.partial_ce(z, target), logits)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)
    unlabelled = (target == 255) | (target == 254)
    assert g.permute(1, 0, 2, 3)[:, unlabelled].abs().max() == 0


def test_pce_equals_cross_entropy_on_full_labels():
    logits = make_logits()
    target = torch.randint(0, 4, (2, 5, 6), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(partial_cross_entropy(logits, target), F.cross_entropy(logits, target))
    target[0, 0] = 255  # full mask with VOC's ignore label
    torch.testing.assert_close(
        partial_cross_entropy(logits, target), F.cross_entropy(logits, target, ignore_index=255)
    )


def test_pce_custom_indices_and_integer_dtypes():
    logits, target = make_logits(), make_scribbles()
    other = target.clone()
    other[target == 255] = 100
    other[target == 254] = 101
    expected = partial_cross_entropy(logits, target)
    out = partial_cross_entropy(logits, other, ignore_index=100, pad_index=101)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(partial_cross_entropy(logits, target.to(torch.uint8)), expected)


def test_pce_without_labels_is_zero_with_graph():
    logits = make_logits(dtype=torch.float32).requires_grad_(True)
    target = torch.full((2, 5, 6), 255)
    target[:, :, :2] = 254
    out = partial_cross_entropy(logits, target)
    assert out.item() == 0 and out.requires_grad
    out.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_pce_gradcheck_and_dtypes():
    target = make_scribbles(1, 3, 3, 4)
    fn = functools.partial(partial_cross_entropy, target=target)
    assert torch.autograd.gradcheck(fn, make_logits(1, 3, 3, 4).requires_grad_(True))
    ref = partial_cross_entropy(make_logits(), make_scribbles())
    for dtype, tol in ((torch.float32, 1e-6), (torch.bfloat16, 2e-2)):
        logits = make_logits(dtype=dtype).requires_grad_(True)
        out = partial_cross_entropy(logits, make_scribbles())
        out.backward()
        assert out.dtype == dtype and logits.grad.dtype == dtype
        torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)


def test_pce_errors():
    logits, target = make_logits(), make_scribbles()
    with pytest.raises(ValueError, match=r"\(2, 5, 6\).*\(2, 4, 5, 6\).*\(2, 10, 12\).*upsample"):
        partial_cross_entropy(logits, torch.zeros(2, 10, 12, dtype=torch.long))
    with pytest.raises(TypeError, match="integer.*float32"):
        partial_cross_entropy(logits, target.float())
    with pytest.raises(ValueError, match="K=1"):
        partial_cross_entropy(logits[:, :1], target)
    with pytest.raises(TypeError, match="float tensor"):
        partial_cross_entropy(target[:, None].repeat(1, 4, 1, 1), target)


def test_entropy_matches_reference():
    probs = make_logits().softmax(1)
    probs[0, :, 0, 0] = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)  # 0 log 0 = 0
    valid = torch.ones(2, 5, 6, dtype=torch.bool)
    valid[1, :2] = False
    out, g = grad_of(lambda p: entropy_loss(p, valid), probs)
    ref, g_ref = grad_of(lambda p: R.entropy(p, valid), probs)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    assert torch.isfinite(g).all()
    keep = probs > 0  # where the reference's gradient is defined
    torch.testing.assert_close(g[keep], g_ref[keep], rtol=1e-12, atol=1e-12)
    assert g[1, :, :2].abs().max() == 0


def test_entropy_module_gradcheck_dtypes():
    probs = make_logits(1, 3, 3, 4).softmax(1).requires_grad_(True)
    valid = torch.rand(1, 3, 4, generator=torch.Generator().manual_seed(0)) < 0.7
    assert torch.autograd.gradcheck(functools.partial(entropy_loss, valid=valid), probs)
    module = EntropyLoss(0.5)
    assert "weight=0.5" in repr(module)
    ref = 0.5 * entropy_loss(make_logits().softmax(1))
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-6), (torch.bfloat16, 2e-2)):
        p = make_logits().softmax(1).to(dtype).requires_grad_(True)
        out = module(p, None, torch.ones(2, 5, 6, dtype=torch.bool))
        out.backward()
        assert out.dtype == dtype and p.grad.dtype == dtype
        torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)
    assert module(make_logits().softmax(1), None, torch.zeros(2, 5, 6, dtype=torch.bool)).item() == 0


def test_entropy_errors():
    probs = make_logits().softmax(1)
    with pytest.raises(ValueError, match=r"\(2, 5, 6\).*\(2, 4, 5, 6\).*\(2, 5, 5\)"):
        entropy_loss(probs, torch.ones(2, 5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="K=1"):
        entropy_loss(probs[:, :1])
    with pytest.raises(ValueError, match="weight must be finite"):
        EntropyLoss(float("nan"))
