"""ADM proposals (training/losses/proposals.py): the proposal step lowers the regularized energy."""
from __future__ import annotations

import pytest
import torch

from wsdeploy.training.losses import dense_crf_loss, loss_kernel, partial_cross_entropy
from wsdeploy.training.losses.proposals import crf_proposals, proposal_energy


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


def test_adm_loss_trains_on_the_proposals():
    from wsdeploy.training.losses.proposals import ADMProposalLoss

    image, truth, probs, scribbles = _scene()
    loss_fn = ADMProposalLoss(0.5, crf_weight=2.0, sigma_rgb=20.0, sigma_xy=6.0, scale_factor=1.0)
    logits = probs.log().clone().requires_grad_(True)
    loss = loss_fn(logits, scribbles, image)
    kernel = loss_kernel(image, sigma_rgb=20.0, sigma_xy=6.0, scale_factor=1.0)
    expected = crf_proposals(probs, scribbles, kernel, weight=2.0)
    assert torch.equal(loss_fn.last.labels, expected.labels)
    torch.testing.assert_close(loss, 0.5 * partial_cross_entropy(logits, expected.labels))
    loss.backward()
    assert logits.grad.abs().sum() > 0
    half = ADMProposalLoss(1.0, crf_weight=2.0, sigma_rgb=20.0, sigma_xy=6.0, scale_factor=0.5)
    half(logits.detach(), scribbles, image)  # proposals at half resolution, labels back at full
    assert half.last.labels.shape == (1, 12, 12)


def test_trainer_runs_adm_from_the_switch_on_step(tmp_path):
    pytest.importorskip("albumentations")
    import json

    from wsdeploy.data.synthetic import generate_dataset
    from wsdeploy.training import TrainConfig, train
    from wsdeploy.training.config import config_from_dict

    data = generate_dataset(tmp_path / "data", num_images=4, seed=0, size=64, val_fraction=0.25, workers=0)
    config = TrainConfig(
        data=str(data), supervision="scribbles", losses="pce,adm", model="lraspp_resnet18", width=8,
        crop_size=64, batch_size=2, steps=3, regularizers_from_step=1, workers=0, log_every=1,
        checkpoint_every=0, val_split="", out_dir=str(tmp_path / "run"), device="cpu", progress=False,
        tensorboard=False, optimizer="adamw", lr=3e-3,
    )
    assert config_from_dict({"data": str(data), "adm_crf_weight": 2.0, "losses": "pce,adm"}).adm.crf_weight == 2.0
    train(config)
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    entries = [e for e in log if "split" not in e]
    assert entries[0]["adm"] == 0 and all(e["adm"] > 0 for e in entries[1:])
