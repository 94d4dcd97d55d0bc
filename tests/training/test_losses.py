"""Pairwise training losses (dense CRF, normalized cut, grid Potts) against the brute-force
references in `loss_reference`, on tiny generated images (float64 unless noted).

Tolerances: the dense losses run on the bilateral engine's permutohedral lattice, computed in
float32. Against the reference built on the *same* operator (its dense matrix) they agree to
float32 rounding (rtol 1e-5). Against the *exact* Gaussian kernel they differ by the lattice's
approximation: the mass normalisation cancels its overall scale (about 0.5), what is left is
measured at 0-2 % on the value and 3-15 % on the gradient (cosine >= 0.99) on photographs at
8x10 and 16x20; the tests allow 5 % and a cosine of 0.97. The grid loss is exact (rtol 1e-10).
"""

from __future__ import annotations

import functools

import pytest
import torch

from wsdeploy.training.losses import (
    DenseCRFLoss,
    GridPottsLoss,
    NormalizedCutLoss,
    dense_crf_loss,
    grid_potts_loss,
    kernel_mass,
    normalized_cut_loss,
)

from tests.training import loss_reference as R

H, W, K = 6, 7, 3
SIGMAS = {"sigma_xy": 4.0, "sigma_rgb": 20.0}


def make_image(b: int = 2, h: int = H, w: int = W, seed: int = 0) -> torch.Tensor:
    """(B, 3, H, W) float64 in 0-255: a colour ramp, a distinct block and noise."""
    g = torch.Generator().manual_seed(seed)
    yy = torch.linspace(0, 1, h)[:, None].expand(h, w)
    img = torch.stack([60 + 80 * yy, 90 + 0 * yy, 150 - 60 * yy])[None].repeat(b, 1, 1, 1)
    img[:, :, : h // 2, w // 2 :] = torch.tensor([200.0, 40.0, 30.0])[:, None, None]
    img = img + 6 * torch.randn(b, 3, h, w, generator=g)
    return img.clamp(0, 255).double()


def make_probs(b: int = 2, k: int = K, h: int = H, w: int = W, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (2 * torch.randn(b, k, h, w, generator=g, dtype=torch.float64)).softmax(1)


def make_valid(b: int = 2, h: int = H, w: int = W) -> torch.Tensor:
    """Padding (False) on the last column of image 0 and the last two rows of image 1."""
    valid = torch.ones(b, h, w, dtype=torch.bool)
    valid[0, :, -1] = False
    valid[-1, -2:, :] = False
    return valid


def value_and_grad(fn, probs):
    probs = probs.detach().clone().requires_grad_(True)
    out = fn(probs)
    (grad,) = torch.autograd.grad(out, probs)
    return out.detach(), grad


def centred(grad: torch.Tensor) -> torch.Tensor:
    """Drop the per-pixel component constant over K, which a softmax never sees."""
    return grad - grad.mean(1, keepdim=True)


# --- dense CRF and normalized cut on the engine's own operator: exact wiring ----------------


@pytest.mark.parametrize("relaxation", ["bilinear", "quadratic"])
@pytest.mark.parametrize("scale_factor", [1.0, 0.5])
def test_dense_crf_matches_reference_on_lattice_operator(relaxation, scale_factor):
    image, probs, valid = make_image(), make_probs(), make_valid()
    sig = {"sigma_xy": 4.0 * scale_factor, "sigma_rgb": 20.0}
    kernel = functools.partial(R.lattice_kernel, **sig)
    ref, g_ref = value_and_grad(
        lambda p: R.potts_loss(p, image, valid, kernel=kernel, relaxation=relaxation,
                               scale_factor=scale_factor), probs)
    out, g = value_and_grad(
        lambda p: dense_crf_loss(p, image, valid, **SIGMAS, scale_factor=scale_factor,
                                 relaxation=relaxation), probs)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("scale_factor", [1.0, 0.5])
def test_normalized_cut_matches_reference_on_lattice_operator(scale_factor):
    image, probs, valid = make_image(), make_probs(), make_valid()
    kernel = functools.partial(R.lattice_kernel, sigma_xy=4.0 * scale_factor, sigma_rgb=20.0)
    ref, g_ref = value_and_grad(
        lambda p: R.ncut_loss(p, image, valid, kernel=kernel, scale_factor=scale_factor), probs)
    out, g = value_and_grad(
        lambda p: normalized_cut_loss(p, image, valid, **SIGMAS, scale_factor=scale_factor), probs)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-6)


# --- ... and against the exact Gaussian kernel: the lattice's approximation -----------------


@pytest.mark.parametrize("relaxation", ["bilinear", "quadratic"])
@pytest.mark.parametrize("sigmas", [(100.0, 15.0), (4.0, 20.0)])
def test_dense_crf_close_to_exact_kernel(relaxation, sigmas):
    h, w = 8, 10
    image, probs, valid = make_image(h=h, w=w), make_probs(h=h, w=w), make_valid(h=h, w=w)
    kernel = functools.partial(R.gaussian_kernel, sigma_xy=sigmas[0], sigma_rgb=sigmas[1])
    ref, g_ref = value_and_grad(
        lambda p: R.potts_loss(p, image, valid, kernel=kernel, relaxation=relaxation), probs)
    out, g = value_and_grad(
        lambda p: dense_crf_loss(p, image, valid, sigma_xy=sigmas[0], sigma_rgb=sigmas[1],
                                 scale_factor=1.0, relaxation=relaxation), probs)
    torch.testing.assert_close(out, ref, rtol=0.05, atol=0.0)
    g, g_ref = centred(g), centred(g_ref)
    assert torch.nn.functional.cosine_similarity(g.flatten(), g_ref.flatten(), 0) > 0.97


def test_normalized_cut_close_to_exact_kernel():
    h, w = 8, 10
    image, probs, valid = make_image(h=h, w=w), make_probs(h=h, w=w), make_valid(h=h, w=w)
    kernel = functools.partial(R.gaussian_kernel, sigma_xy=100.0, sigma_rgb=15.0)
    ref, g_ref = value_and_grad(lambda p: R.ncut_loss(p, image, valid, kernel=kernel), probs)
    out, g = value_and_grad(
        lambda p: normalized_cut_loss(p, image, valid, sigma_xy=100.0, sigma_rgb=15.0,
                                      scale_factor=1.0), probs)
    torch.testing.assert_close(out, ref, rtol=0.05, atol=0.0)
    g, g_ref = centred(g), centred(g_ref)
    assert torch.nn.functional.cosine_similarity(g.flatten(), g_ref.flatten(), 0) > 0.97


def test_reference_gradients_gradcheck():
    image, probs, valid = make_image(1, 3, 4), make_probs(1, 2, 3, 4), make_valid(1, 3, 4)
    kernel = functools.partial(R.gaussian_kernel, **SIGMAS)
    for relaxation in ("bilinear", "quadratic"):
        fn = functools.partial(R.potts_loss, image=image, valid=valid, kernel=kernel,
                               relaxation=relaxation)
        assert torch.autograd.gradcheck(fn, probs.clone().requires_grad_(True))
    fn = functools.partial(R.ncut_loss, image=image, valid=valid, kernel=kernel)
    assert torch.autograd.gradcheck(fn, probs.clone().requires_grad_(True))


def test_reference_quadratic_forms_agree_for_symmetric_kernel():
    image, probs, valid = make_image(1), make_probs(1), make_valid(1)
    s, v = probs[0].reshape(K, -1), valid[0].reshape(-1).double()
    for kernel in (R.gaussian_kernel(image[0], **SIGMAS),
                   R.grid_kernel(image[0], neighbours=8, sigma_rgb=20.0)):
        cut, _ = R.potts_terms(s, kernel, v, "quadratic")
        torch.testing.assert_close(cut, R.quadratic_pairwise(s, kernel, v), rtol=1e-12, atol=0)


# --- grid Potts: exact -----------------------------------------------------------------------


@pytest.mark.parametrize("relaxation", ["bilinear", "quadratic"])
@pytest.mark.parametrize("neighbours", [4, 8])
def test_grid_potts_matches_reference(relaxation, neighbours):
    image, probs, valid = make_image(), make_probs(), make_valid()
    kernel = functools.partial(R.grid_kernel, neighbours=neighbours, sigma_rgb=20.0)
    ref, g_ref = value_and_grad(
        lambda p: R.potts_loss(p, image, valid, kernel=kernel, relaxation=relaxation), probs)
    out, g = value_and_grad(
        lambda p: grid_potts_loss(p, image, valid, neighbours=neighbours, sigma_rgb=20.0,
                                  relaxation=relaxation), probs)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("relaxation", ["bilinear", "quadratic"])
def test_grid_potts_gradcheck(relaxation):
    image, probs, valid = make_image(1, 4, 5), make_probs(1, 3, 4, 5), make_valid(1, 4, 5)
    fn = functools.partial(grid_potts_loss, image=image, valid=valid, neighbours=8,
                           relaxation=relaxation)
    assert torch.autograd.gradcheck(fn, probs.clone().requires_grad_(True))


# --- properties ------------------------------------------------------------------------------

LOSSES = {
    "dense_crf": functools.partial(dense_crf_loss, sigma_xy=100.0, sigma_rgb=15.0, scale_factor=1.0),
    "grid_potts": functools.partial(grid_potts_loss, neighbours=8),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("relaxation", ["bilinear", "quadratic"])
def test_constant_image_uniform_zero_split_positive(name, relaxation):
    image = torch.full((1, 3, 8, 10), 120.0)
    uniform = torch.zeros(1, 2, 8, 10)
    uniform[:, 0] = 1.0
    split = uniform.clone()
    split[:, :, :, 5:] = split[:, :, :, 5:].flip(1)
    fn = functools.partial(LOSSES[name], image=image, relaxation=relaxation)
    assert abs(fn(uniform).item()) < 1e-6
    assert fn(split).item() > 0.05
    # the two relaxations agree on one-hot labellings
    other = "quadratic" if relaxation == "bilinear" else "bilinear"
    torch.testing.assert_close(fn(split), LOSSES[name](split, image, relaxation=other))


def test_normalized_cut_constant_image():
    image = torch.full((1, 3, 8, 10), 120.0)
    uniform = torch.zeros(1, 2, 8, 10)
    uniform[:, 0] = 1.0
    split = uniform.clone()
    split[:, :, :, 5:] = split[:, :, :, 5:].flip(1)
    fn = functools.partial(normalized_cut_loss, image=image, scale_factor=1.0)
    assert abs(fn(uniform).item()) < 1e-6
    assert fn(split).item() > 0.5  # each half cuts about half its association


@pytest.mark.parametrize(
    "fn",
    [dense_crf_loss, functools.partial(dense_crf_loss, scale_factor=1.0), normalized_cut_loss,
     grid_potts_loss],
    ids=["dense-scale-0.5", "dense", "ncut-scale-0.5", "grid"],
)
def test_padding_takes_no_part(fn):
    image, probs, valid = make_image(b=2, h=12, w=14), make_probs(h=12, w=14), make_valid(h=12, w=14)
    target = torch.where(valid, 0, 254)  # as the trainer derives it: valid = target != 254
    valid = target != 254
    other = probs.clone()
    other[~valid[:, None].expand_as(probs)] = 1.0 / K  # anything on padded pixels
    out, g = value_and_grad(lambda p: fn(p, image, valid), probs)
    torch.testing.assert_close(fn(other, image, valid), out, rtol=1e-6, atol=1e-9)
    assert g.permute(1, 0, 2, 3)[:, ~valid].abs().max() == 0


def test_padded_equals_cropped():
    image, probs = make_image(1, 8, 10), make_probs(1, K, 8, 10)
    valid = torch.ones(1, 8, 10, dtype=torch.bool)
    valid[:, 6:, :] = False
    valid[:, :, 7:] = False
    crop = (slice(None), slice(None), slice(0, 6), slice(0, 7))
    grid = grid_potts_loss(probs, image, valid)
    torch.testing.assert_close(grid, grid_potts_loss(probs[crop], image[crop]), rtol=1e-12, atol=0)
    for fn in (dense_crf_loss, normalized_cut_loss):  # the lattice sees the padded colours too
        full = fn(probs, image, valid, scale_factor=1.0)
        torch.testing.assert_close(full, fn(probs[crop], image[crop], scale_factor=1.0), rtol=0.05, atol=0)


def test_no_valid_pixel_gives_zero():
    image, probs = make_image(), make_probs()
    valid = torch.zeros(2, H, W, dtype=torch.bool)
    for fn in (dense_crf_loss, normalized_cut_loss, grid_potts_loss):
        out, g = value_and_grad(lambda p: fn(p, image, valid), probs)
        assert out.item() == 0 and torch.isfinite(g).all()


# --- dtype, device, modules, errors ----------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize(
    "module",
    [DenseCRFLoss(0.25, scale_factor=1.0), NormalizedCutLoss(0.1, scale_factor=1.0),
     GridPottsLoss(0.25, neighbours=8), DenseCRFLoss(0.5, relaxation="quadratic")],
    ids=["dense", "ncut", "grid", "dense-quadratic"],
)
def test_modules_follow_dtype_and_weight(module, dtype):
    image, valid = make_image().to(torch.uint8), make_valid()
    probs = make_probs().to(dtype).requires_grad_(True)
    out = module(probs, image, valid)
    out.backward()
    assert out.dtype == dtype and out.shape == () and probs.grad.dtype == dtype
    ref = module.weight * {DenseCRFLoss: dense_crf_loss, NormalizedCutLoss: normalized_cut_loss,
                           GridPottsLoss: grid_potts_loss}[type(module)](
        make_probs(), image, valid, **{k: v for k, v in vars(module).items()
                                       if k in ("sigma_rgb", "sigma_xy", "scale_factor",
                                                "relaxation", "neighbours")})
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol * 1e-2)
    assert "weight=" in repr(module)


def test_under_autocast():
    image, valid = make_image().float(), make_valid()
    probs = make_probs().float().requires_grad_(True)
    for module in (DenseCRFLoss(1.0), NormalizedCutLoss(1.0), GridPottsLoss(1.0)):
        expected = module(probs, image, valid)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = module(probs, image, valid)
        out.backward()
        assert out.dtype == torch.float32 and torch.isfinite(probs.grad).all()
        torch.testing.assert_close(out, expected)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    image, probs, valid = make_image().float(), make_probs().float(), make_valid()
    for fn in (dense_crf_loss, normalized_cut_loss, grid_potts_loss):
        cpu = fn(probs, image, valid)
        gpu = fn(probs.cuda(), image.cuda(), valid.cuda())
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-6)


def test_kernel_mass_is_the_normaliser():
    image, probs, valid = make_image(), make_probs(), make_valid()
    mass = kernel_mass(image, valid, **SIGMAS, scale_factor=1.0)
    kernel = functools.partial(R.lattice_kernel, **SIGMAS)
    expected = [R.potts_terms(probs[i].reshape(K, -1), kernel(image[i]),
                              valid[i].reshape(-1).double(), "bilinear")[1] for i in range(2)]
    torch.testing.assert_close(mass.double(), torch.stack(expected), rtol=1e-5, atol=0)


def test_rloss_weight_conversion():
    """rloss: weight_r * (-sum_k S~_k^T W S~_k) / B on the same operator; equal gradients
    w.r.t. the logits for weight = weight_r * mean(kernel_mass)."""
    from wsdeploy.crf import bilateral_filter

    image, valid = make_image(), make_valid()
    logits = make_probs().log().requires_grad_(True)
    weight_r = 2e-3
    s = logits.softmax(1) * valid[:, None]
    rloss = -weight_r * (s * bilateral_filter(s, image, **SIGMAS)).sum() / 2
    (g_r,) = torch.autograd.grad(rloss, logits)
    weight = weight_r * kernel_mass(image, valid, **SIGMAS, scale_factor=1.0).mean().item()
    ours = weight * dense_crf_loss(logits.softmax(1), image, valid, **SIGMAS, scale_factor=1.0)
    (g,) = torch.autograd.grad(ours, logits)
    torch.testing.assert_close(g, g_r, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("fn", [dense_crf_loss, normalized_cut_loss, grid_potts_loss])
def test_input_errors(fn):
    image, probs, valid = make_image(), make_probs(), make_valid()
    with pytest.raises(ValueError, match=r"\(2, 3, 6, 7\).*\(2, 3, 5, 7\)"):
        fn(probs, image[:, :, :5], valid)
    with pytest.raises(ValueError, match=r"\(2, 6, 7\).*\(2, 6, 6\)"):
        fn(probs, image, valid[:, :, :6])
    with pytest.raises(ValueError, match="K >= 2.*K=1"):
        fn(probs[:, :1], image, valid)
    with pytest.raises(ValueError, match=r"\(B, K, H, W\).*\(3, 6, 7\)"):
        fn(probs[0], image, valid)
    with pytest.raises(TypeError, match="bool"):
        fn(probs, image, valid.long())
    with pytest.raises(ValueError, match="sigma_rgb.*-1"):
        fn(probs, image, valid, sigma_rgb=-1)


def test_setting_errors():
    with pytest.raises(ValueError, match="relaxation.*'potts'"):
        DenseCRFLoss(1.0, relaxation="potts")
    with pytest.raises(ValueError, match=r"scale_factor.*\(0, 1\].*2"):
        DenseCRFLoss(1.0, scale_factor=2)
    with pytest.raises(ValueError, match="weight.*-1"):
        NormalizedCutLoss(-1)
    with pytest.raises(ValueError, match="neighbours must be 4 or 8, got 6"):
        GridPottsLoss(1.0, neighbours=6)
    with pytest.raises(TypeError, match="sigma_xy"):
        DenseCRFLoss(1.0, sigma_xy="100")
    with pytest.raises(ValueError, match="shrinks"):
        dense_crf_loss(make_probs(1, 2, 1, 7), make_image(1, 1, 7), scale_factor=0.5)
