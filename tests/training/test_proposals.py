"""ADM proposals (training/losses/proposals.py): the proposal step lowers the regularized energy."""
from __future__ import annotations

import pytest
import torch

from wsdeploy.training.losses import dense_crf_loss, loss_kernel, partial_cross_entropy
from wsdeploy.training.losses.proposals import crf_proposals, proposal_energy


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _scene(h: int = 24, w: int = 24):
    """Red left half, blue right half; a noisy network that is wrong on ~30% of pixels; two
    short scribbles, one per half. Returns image (1, 3, H, W) uint8, truth (1, H, W), probs
    (1, 2, H, W), scribbles (1, H, W)."""
    g = torch.Generator().manual_seed(0)
    truth = torch.zeros(1, h, w, dtype=torch.long)
    truth[:, :, w // 2:] = 1
    colours = torch.tensor([[200.0, 30.0, 30.0], [30.0, 30.0, 200.0]])
    image = colours[truth].permute(0, 3, 1, 2) + torch.randn(1, 3, h, w, generator=g) * 8
    image = image.clamp(0, 255).to(torch.uint8)
    wrong = torch.rand(1, h, w, generator=g) < 0.3
    noisy = torch.where(wrong, 1 - truth, truth)
    probs = torch.full((1, 2, h, w), 0.35)
    probs.scatter_(1, noisy[:, None], 0.65)
    scribbles = torch.full((1, h, w), 255, dtype=torch.long)
    scribbles[0, h // 2, 2:6] = 0
    scribbles[0, h // 2, w - 6 : w - 2] = 1
    return image, truth, probs, scribbles


def test_proposal_step_lowers_the_regularized_energy_and_fixes_the_noise():
    image, truth, probs, scribbles = _scene()
    kernel = loss_kernel(image, sigma_rgb=20.0, sigma_xy=6.0, scale_factor=1.0)
    prop = crf_proposals(probs, scribbles, kernel, weight=2.0, iterations=10)
    assert prop.labels.shape == truth.shape and prop.labels.dtype == torch.int64
    assert prop.energy_end < prop.energy_start - 0.05  # strictly and clearly downhill
    onehot = torch.nn.functional.one_hot(prop.labels, 2).permute(0, 3, 1, 2).float()
    assert proposal_energy(onehot, probs, kernel, weight=2.0).item() == pytest.approx(prop.energy_end, rel=1e-5)
    seeded = scribbles != 255
    assert torch.equal(prop.labels[seeded], scribbles[seeded])  # the scribbles are hard constraints
    before = (probs.argmax(1) == truth).float().mean().item()
    after = (prop.labels == truth).float().mean().item()
    assert before < 0.75 and after > 0.95, (before, after)
    torch.testing.assert_close(prop.probs.sum(1), torch.ones_like(truth, dtype=torch.float32))


def test_energy_pairwise_term_is_the_dense_crf_loss():
    image, truth, probs, _ = _scene()
    kernel = loss_kernel(image, sigma_rgb=20.0, sigma_xy=6.0, scale_factor=1.0)
    y = torch.nn.functional.one_hot(probs.argmax(1), 2).permute(0, 3, 1, 2).float()
    unary = proposal_energy(y, probs, kernel, weight=0.0)
    pairwise = (proposal_energy(y, probs, kernel, weight=3.0) - unary) / 3.0
    torch.testing.assert_close(pairwise, dense_crf_loss(y, None, kernel=kernel, scale_factor=1.0))
    torch.testing.assert_close(unary, -(y * probs.log()).sum(1).mean())


def test_zero_weight_keeps_the_networks_argmax_and_padding_is_skipped():
    image, truth, probs, scribbles = _scene()
    scribbles[0, :2] = 254  # two padded rows
    kernel = loss_kernel(image, sigma_rgb=20.0, sigma_xy=6.0, scale_factor=1.0)
    prop = crf_proposals(probs, scribbles, kernel, weight=0.0, iterations=2)
    assert prop.energy_end == pytest.approx(prop.energy_start)
    assert (prop.labels[0, :2] == 254).all()
    inside = (scribbles == 255)
    assert torch.equal(prop.labels[inside], probs.argmax(1)[inside])
    logits = torch.randn(1, 2, *truth.shape[1:], requires_grad=True)
    partial_cross_entropy(logits, prop.labels).backward()  # the network step trains on it
    assert logits.grad[0, :, :2].abs().sum() == 0  # padding takes no part


def test_bad_inputs_raise_clear_errors():
    image, _, probs, scribbles = _scene()
    kernel = loss_kernel(image, sigma_rgb=20.0, sigma_xy=6.0, scale_factor=1.0)
    with pytest.raises(ValueError, match="iterations"):
        crf_proposals(probs, scribbles, kernel, iterations=0)
    with pytest.raises(ValueError, match="kernel was built"):
        crf_proposals(probs[..., :12], scribbles[..., :12], kernel)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        crf_proposals(probs, torch.where(scribbles == 0, 7, scribbles), kernel)
    with pytest.raises(ValueError, match="scribbles"):
        crf_proposals(probs, scribbles[0], kernel)
