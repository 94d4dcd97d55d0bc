"""Dense CRF engine: lattice filter vs the exact kernel, dense_crf outputs and validation.

The pydensecrf comparisons on GrabCut photographs are in test_crf_pydensecrf.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsdeploy.crf import BilateralKernel, CRFParams, bilateral_filter, dense_crf
from wsdeploy.crf._grid import build_separable_gaussian
from wsdeploy.crf._lattice import build_lattice, concat_lattices
from wsdeploy.crf._operator import lattice_norm, make_operator
from wsdeploy.crf._reference import exact_bilateral_filter, exact_dense_crf, exact_filter
from wsdeploy.crf.kernel import pixel_features

# Stated accuracy of the lattice against the exact Gaussian kernel (relative L2 error over the
# image after the best single scale; the scale itself is data-dependent, see filter.py).
REL_ERROR_BILATERAL = 0.12
REL_ERROR_SPATIAL = 0.03
REL_ERROR_NORMALISED = 0.05


def _smooth_image(h: int, w: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8: a few flat regions with soft edges and mild noise, photograph-like."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.float32)
    for _ in range(4):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.2, 0.6) * max(h, w)
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r)[..., None]
        img = np.where(mask, rng.uniform(0, 255, 3), img)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _probs(k: int, h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (k, h, w)).astype(np.float32)
    p = np.exp(logits - logits.max(0))
    return (p / p.sum(0)).astype(np.float32)


def _scaled_rel_error(approx: torch.Tensor, exact: torch.Tensor) -> tuple[float, float]:
    a, e = approx.double(), exact.double()
    scale = float((a * e).sum() / (a * a).sum())
    return float((scale * a - e).norm() / e.norm()), 1.0 / scale


# ---------------------------------------------------------------- the filter vs exact


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "sigma_xy, sigma_rgb, tol",
    [(10.0, 13.0, REL_ERROR_BILATERAL), (4.0, 30.0, REL_ERROR_BILATERAL), (3.0, None, REL_ERROR_SPATIAL)],
)
def test_lattice_matches_exact_kernel(seed: int, sigma_xy: float, sigma_rgb: float | None, tol: float) -> None:
    h, w = 30, 40
    img = torch.from_numpy(_smooth_image(h, w, seed))
    feats = pixel_features(img if sigma_rgb else None, h, w, sigma_xy=sigma_xy, sigma_rgb=sigma_rgb, device=torch.device("cpu"))
    torch.manual_seed(seed)
    values = torch.rand(h * w, 3)
    op = make_operator([build_lattice(feats)], weights=[1.0], pixel_scales=[None])
    out = op(values)
    exact = exact_filter(feats, values)
    err, scale = _scaled_rel_error(out, exact)
    assert err < tol, f"relative error {err:.4f} >= {tol}"
    assert 0.4 < scale < 1.0, f"lattice scale {scale:.3f} outside (0.4, 1)"
    normalised = out / op(torch.ones(h * w, 1))
    exact_normalised = exact / exact_filter(feats, torch.ones(h * w, 1))
    err_n = float((normalised.double() - exact_normalised).norm() / exact_normalised.norm())
    assert err_n < REL_ERROR_NORMALISED


@pytest.mark.parametrize("h, w, sigma", [(30, 40, 3.0), (25, 33, 1.5), (1, 23, 3.0), (19, 1, 3.0), (1, 1, 3.0)])
def test_separable_smoothness_kernel_matches_exact(h: int, w: int, sigma: float) -> None:
    """The CRF's smoothness kernel D K D (symmetric normalisation) against the exact one."""
    feats = pixel_features(None, h, w, sigma_xy=sigma, sigma_rgb=None, device=torch.device("cpu"))
    torch.manual_seed(0)
    values = torch.rand(h * w, 4)
    scale = exact_filter(feats, torch.ones(h * w, 1)).rsqrt()
    exact = scale * exact_filter(feats, scale * values)
    out = build_separable_gaussian(h, w, sigma=sigma, weight=2.0, device=torch.device("cpu"))(values)
    err = float((out.double() / 2.0 - exact).norm() / exact.norm())
    assert err < REL_ERROR_NORMALISED, err


def test_batch_lattice_is_the_block_diagonal_union_of_single_builds() -> None:
    """A (B, N, d) build equals B (N, d) builds bit for bit: the same vertices (offset by the
    earlier images' counts), weights, splat entries in the same order and blur neighbours, so a
    batch kernel filters each image exactly as a kernel of its own."""
    images = [_smooth_image(23, 31, seed) for seed in range(3)]
    feats = [pixel_features(torch.from_numpy(im), 23, 31, sigma_xy=6.0, sigma_rgb=15.0, device="cpu") for im in images]
    batch = build_lattice(torch.stack(feats))
    singles = [build_lattice(f) for f in feats]
    assert batch.num_vertices == sum(s.num_vertices for s in singles) and batch.num_pixels == 3 * 23 * 31
    joined = concat_lattices(singles)
    for field in ("vertex", "weight", "splat_crow", "splat_pixel", "splat_weight", "neighbours"):
        assert getattr(joined, field).dtype == getattr(batch, field).dtype, field
        assert torch.equal(getattr(joined, field), getattr(batch, field)), field
    # by hand for the second image: its vertices follow the first image's, its pixels too
    m0, n = singles[0].num_vertices, 23 * 31
    assert torch.equal(batch.vertex[n:2 * n], singles[1].vertex + m0)
    assert torch.equal(batch.splat_weight[n * 6:2 * n * 6], singles[1].splat_weight)
    image = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    values = torch.from_numpy(np.stack([_probs(4, 23, 31, seed) for seed in range(3)]))
    together = BilateralKernel(image, sigma_xy=6.0, sigma_rgb=15.0)(values)
    alone = torch.cat([BilateralKernel(image[b:b + 1], sigma_xy=6.0, sigma_rgb=15.0)(values[b:b + 1]) for b in range(3)])
    assert torch.equal(together, alone)


def test_batch_kernel_falls_back_to_joined_single_builds(monkeypatch) -> None:
    """When the batch's joint hash codes do not fit (build_lattice raises), the kernel builds
    each image alone and joins them: the same filter, bit for bit."""
    import wsdeploy.crf.kernel as kernel_module

    image = torch.from_numpy(np.stack([_smooth_image(17, 19, seed) for seed in range(2)])).permute(0, 3, 1, 2)
    values = torch.from_numpy(np.stack([_probs(3, 17, 19, seed) for seed in range(2)]))
    expected = BilateralKernel(image, sigma_xy=5.0, sigma_rgb=20.0)(values)

    def single_only(features: torch.Tensor):
        if features.ndim == 3:
            raise ValueError("feature range too large for the lattice hash")
        return build_lattice(features)

    monkeypatch.setattr(kernel_module, "build_lattice", single_only)
    assert torch.equal(BilateralKernel(image, sigma_xy=5.0, sigma_rgb=20.0)(values), expected)

    def never(features: torch.Tensor):
        raise ValueError("feature range too large for the lattice hash")

    monkeypatch.setattr(kernel_module, "build_lattice", never)
    with pytest.raises(ValueError, match="feature range"):  # one image: nothing to fall back to
        BilateralKernel(image[:1], sigma_xy=5.0, sigma_rgb=20.0)


def test_large_cpu_batch_joins_single_builds_with_the_same_filter() -> None:
    """Past 64k pixels the CPU kernel joins single-image builds (faster there) instead of the
    joint build: the same lattice, so the same filter bit for bit."""
    image = torch.from_numpy(np.stack([_smooth_image(190, 180, seed) for seed in range(2)])).permute(0, 3, 1, 2)
    assert 2 * 190 * 180 > 1 << 16
    values = torch.from_numpy(np.stack([_probs(2, 190, 180, seed) for seed in range(2)]))
    kernel = BilateralKernel(image, sigma_xy=20.0, sigma_rgb=20.0)
    pixels = image.permute(0, 2, 3, 1)
    feats = torch.stack([pixel_features(pixels[b], 190, 180, sigma_xy=20.0, sigma_rgb=20.0, device="cpu") for b in range(2)])
    joint = build_lattice(feats)
    for field in ("vertex", "splat_crow", "splat_pixel", "splat_weight", "neighbours"):
        assert torch.equal(getattr(kernel.lattice, field), getattr(joint, field)), field
    alone = torch.cat([BilateralKernel(image[b:b + 1], sigma_xy=20.0, sigma_rgb=20.0)(values[b:b + 1]) for b in range(2)])
    assert torch.equal(kernel(values), alone)


def test_lattice_ties_keep_pixel_order() -> None:
    """Pixels of one simplex are splatted in pixel order (stable sorts), so the summation order,
    and with it every rounding, does not depend on the sort algorithm or the array's length."""
    feats = torch.zeros(50, 2)  # every pixel in the same simplex
    feats[25:] = 0.01
    lat = build_lattice(feats)
    for v in range(lat.num_vertices):
        cols = lat.splat_pixel[lat.splat_crow[v]:lat.splat_crow[v + 1]]
        assert torch.equal(cols, torch.sort(cols).values)


def test_lattice_norm_matches_filter_of_ones() -> None:
    img = torch.from_numpy(_smooth_image(20, 25, 3))
    lat = build_lattice(pixel_features(img, 20, 25, sigma_xy=5.0, sigma_rgb=10.0, device=torch.device("cpu")))
    op = make_operator([lat], weights=[1.0], pixel_scales=[None])
    torch.testing.assert_close(lattice_norm(lat), op(torch.ones(500, 1))[:, 0], rtol=1e-5, atol=1e-5)


def test_fused_operator_equals_sum_of_parts() -> None:
    h, w = 24, 32
    img = torch.from_numpy(_smooth_image(h, w, 4))
    cpu = torch.device("cpu")
    bil = build_lattice(pixel_features(img, h, w, sigma_xy=8.0, sigma_rgb=13.0, device=cpu))
    spa = build_lattice(pixel_features(None, h, w, sigma_xy=3.0, sigma_rgb=None, device=cpu))
    s1, s2 = torch.rand(h * w) + 0.5, torch.rand(h * w) + 0.5
    v = torch.rand(h * w, 5)
    fused = make_operator([bil, spa], weights=[2.0, 3.0], pixel_scales=[s1, s2])(v)
    one = make_operator([bil], weights=[1.0], pixel_scales=[None])
    two = make_operator([spa], weights=[1.0], pixel_scales=[None])
    expected = 2.0 * s1[:, None] * one(s1[:, None] * v) + 3.0 * s2[:, None] * two(s2[:, None] * v)
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- bilateral_filter


def test_bilateral_filter_dtypes_and_reference() -> None:
    h, w = 20, 30
    img = torch.from_numpy(np.stack([_smooth_image(h, w, s) for s in (5, 6)])).permute(0, 3, 1, 2)  # (2, 3, H, W)
    values = torch.rand(2, 4, h, w)
    out = bilateral_filter(values, img, sigma_xy=6.0, sigma_rgb=15.0)
    assert out.shape == values.shape and out.dtype == values.dtype
    as_float = bilateral_filter(values, img.float(), sigma_xy=6.0, sigma_rgb=15.0)
    assert torch.equal(out, as_float)
    half = bilateral_filter(values.half(), img, sigma_xy=6.0, sigma_rgb=15.0)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), out, rtol=2e-2, atol=2e-2)
    exact = exact_bilateral_filter(values[1], img[1].permute(1, 2, 0), sigma_xy=6.0, sigma_rgb=15.0)
    err, _ = _scaled_rel_error(out[1], exact)
    assert err < REL_ERROR_BILATERAL


def test_bilateral_kernel_built_once_applies_like_the_filter() -> None:
    h, w = 14, 17
    img = torch.from_numpy(np.stack([_smooth_image(h, w, s) for s in (3, 4, 5)])).permute(0, 3, 1, 2)
    kernel = BilateralKernel(img, sigma_xy=4.0, sigma_rgb=12.0)
    first, second = torch.rand(3, 2, h, w), torch.rand(3, 5, h, w)
    assert torch.equal(kernel(first), bilateral_filter(first, img, sigma_xy=4.0, sigma_rgb=12.0))
    assert torch.equal(kernel(second), bilateral_filter(second, img, sigma_xy=4.0, sigma_rgb=12.0))
    assert torch.equal(kernel.degree, kernel(torch.ones(3, 1, h, w)))
    with pytest.raises(ValueError, match=r"expected values \(3, C, 14, 17\)"):
        kernel(torch.rand(2, 2, h, w))
    with pytest.raises(ValueError, match=r"expected image \(B, 3, H, W\)"):
        BilateralKernel(img.permute(0, 2, 3, 1), sigma_xy=4.0, sigma_rgb=12.0)  # channels last
    with pytest.raises(ValueError, match="sigma_rgb must be finite and > 0"):
        BilateralKernel(img, sigma_xy=4.0, sigma_rgb=0.0)


def test_bilateral_filter_gradient_is_adjoint_filter() -> None:
    h, w = 16, 18
    hwc = torch.from_numpy(_smooth_image(h, w, 7))[None]  # (1, H, W, 3)
    img = hwc.permute(0, 3, 1, 2)
    torch.manual_seed(0)
    values = torch.rand(1, 3, h, w, requires_grad=True)
    weights = torch.rand(1, 3, h, w)
    (bilateral_filter(values, img, sigma_xy=5.0, sigma_rgb=20.0) * weights).sum().backward()
    # The gradient is the adjoint filter F* u (F is not exactly symmetric: the blur axes run
    # in reverse order in F*, which matters at the lattice's border).
    feats = pixel_features(hwc[0], h, w, sigma_xy=5.0, sigma_rgb=20.0, device=torch.device("cpu"))
    op = make_operator([build_lattice(feats)], weights=[1.0], pixel_scales=[None])
    adjoint = op(weights[0].reshape(3, h * w).t().contiguous(), transpose=True).t().reshape(1, 3, h, w)
    torch.testing.assert_close(values.grad, adjoint)
    # <F v, u> = <v, F* u>
    lhs = (bilateral_filter(values.detach(), img, sigma_xy=5.0, sigma_rgb=20.0) * weights).sum()
    torch.testing.assert_close((values.grad * values.detach()).sum(), lhs, rtol=1e-5, atol=1e-4)


def test_bilateral_filter_rejects_bad_input() -> None:
    v = torch.rand(1, 2, 8, 9)
    img = torch.zeros(1, 3, 8, 9, dtype=torch.uint8)
    with pytest.raises(ValueError, match="expected image of shape"):
        bilateral_filter(v, torch.zeros(1, 3, 9, 8), sigma_xy=5.0, sigma_rgb=5.0)
    with pytest.raises(ValueError, match="expected image of shape"):  # channels last is not guessed
        bilateral_filter(v, torch.zeros(1, 8, 9, 3), sigma_xy=5.0, sigma_rgb=5.0)
    with pytest.raises(ValueError, match="sigma_xy"):
        bilateral_filter(v, img, sigma_xy=0.0, sigma_rgb=5.0)
    with pytest.raises(ValueError, match="batch"):
        bilateral_filter(v, img.expand(2, -1, -1, -1), sigma_xy=5.0, sigma_rgb=5.0)
    with pytest.raises(TypeError):
        bilateral_filter(v.numpy(), img, sigma_xy=5.0, sigma_rgb=5.0)


# ---------------------------------------------------------------- dense_crf


def _assert_distribution(q: np.ndarray | torch.Tensor, atol: float = 1e-4) -> None:
    q = torch.as_tensor(q).float()
    assert bool(torch.isfinite(q).all())
    assert float(q.min()) >= 0.0
    k_axis = q.ndim - 3
    torch.testing.assert_close(q.sum(k_axis), torch.ones_like(q.sum(k_axis)), rtol=0, atol=atol)


def test_dense_crf_matches_exact_mean_field() -> None:
    h, w = 36, 48
    img = _smooth_image(h, w, 8)
    p = _probs(3, h, w, 9)
    params = CRFParams(bilateral_sigma_xy=20.0, iterations=5)
    ours = dense_crf(img, p, **params.as_dict())
    exact = exact_dense_crf(torch.from_numpy(img), torch.from_numpy(p), params).numpy()
    agree = float((ours.argmax(0) == exact.argmax(0)).mean())
    assert agree >= 0.97, agree
    assert float(np.abs(ours - exact).mean()) < 0.03


@pytest.mark.parametrize(
    "case", ["one_hot", "uniform", "absent_class", "single_class", "constant_image", "1x1", "1xN", "Nx1"]
)
def test_dense_crf_returns_distributions_on_extreme_inputs(case: str) -> None:
    rng = np.random.default_rng(0)
    h, w, k = {"1x1": (1, 1, 4), "1xN": (1, 37, 4), "Nx1": (29, 1, 4), "single_class": (12, 13, 1)}.get(case, (24, 31, 5))
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if case == "constant_image":
        img[:] = 128
    p = _probs(k, h, w, 1)
    if case == "one_hot":
        p = np.eye(k, dtype=np.float32)[rng.integers(0, k, (h, w))].transpose(2, 0, 1).copy()
    elif case == "uniform":
        p = np.full((k, h, w), 1.0 / k, np.float32)
    elif case == "absent_class":
        p[2] = 0.0
        p /= p.sum(0)
    q = dense_crf(img, p)
    assert isinstance(q, np.ndarray) and q.shape == p.shape and q.dtype == np.float32
    _assert_distribution(q)
    if case == "uniform":
        np.testing.assert_allclose(q, 1.0 / k, atol=1e-5)
    if case == "absent_class":
        assert float(q[2].max()) < 1e-3


def test_dense_crf_batch_dtypes_and_types() -> None:
    h, w, k = 20, 26, 3
    img = np.stack([_smooth_image(h, w, s) for s in (1, 2)])
    p = np.stack([_probs(k, h, w, s) for s in (3, 4)])
    batch = dense_crf(torch.from_numpy(img), torch.from_numpy(p))
    assert isinstance(batch, torch.Tensor) and batch.shape == (2, k, h, w)
    single = dense_crf(img[1], p[1])
    np.testing.assert_allclose(batch[1].numpy(), single, atol=1e-5)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        q = dense_crf(torch.from_numpy(img), torch.from_numpy(p).to(dtype))
        assert q.dtype == dtype
        _assert_distribution(q, atol=2e-2 if dtype != torch.float64 else 1e-6)
        assert float((q.float().argmax(1) == batch.argmax(1)).float().mean()) > 0.98
    q16 = dense_crf(img, p.astype(np.float16))
    assert isinstance(q16, np.ndarray) and q16.dtype == np.float16


def test_dense_crf_zero_iterations_and_zero_weights() -> None:
    img = _smooth_image(10, 12, 0)
    p = _probs(3, 10, 12, 0)
    np.testing.assert_allclose(dense_crf(img, p, iterations=0), p, atol=1e-6)
    np.testing.assert_allclose(dense_crf(img, p, bilateral_weight=0.0, gaussian_weight=0.0), p, atol=1e-6)
    _assert_distribution(dense_crf(img, p, bilateral_weight=0.0))
    _assert_distribution(dense_crf(img, p, gaussian_weight=0.0))


def test_dense_crf_smooths_noisy_labels() -> None:
    h, w = 40, 40
    img = np.zeros((h, w, 3), np.uint8)
    img[:, 20:] = 200
    truth = np.zeros((h, w), np.int64)
    truth[:, 20:] = 1
    rng = np.random.default_rng(0)
    noisy = np.where(rng.random((h, w)) < 0.25, 1 - truth, truth)
    p = np.where(np.arange(2)[:, None, None] == noisy[None], 0.7, 0.3).astype(np.float32)
    q = dense_crf(img, p, bilateral_sigma_xy=20.0)
    assert float((q.argmax(0) == truth).mean()) > 0.99


@pytest.mark.parametrize(
    "image, probs, kwargs, error, match",
    [
        (np.zeros((8, 9, 3), np.uint8), np.full((2, 8, 8), 0.5, np.float32), {}, ValueError, "expected image of shape"),
        (np.zeros((8, 9, 3), np.uint8), np.full((2, 8, 9), 0.7, np.float32), {}, ValueError, "sum to 1"),
        (np.zeros((8, 9, 3), np.uint8), np.full((2, 8, 9), np.nan, np.float32), {}, ValueError, "NaN"),
        (np.zeros((8, 9, 3), np.uint8), np.stack([np.full((8, 9), 1.5), np.full((8, 9), -0.5)]).astype(np.float32), {}, ValueError, ">= 0"),
        (np.zeros((8, 9, 3), np.float32), np.full((2, 8, 9), 0.5, np.float32), {}, TypeError, "uint8"),
        (np.zeros((8, 9, 3), np.uint8), np.ones((2, 8, 9), np.int64), {}, TypeError, "float"),
        (np.zeros((8, 9, 3), np.uint8), np.full((2, 8, 9), 0.5, np.float32), {"bilateral_sigma_rgb": 0.0}, ValueError, "bilateral_sigma_rgb"),
        (np.zeros((8, 9, 3), np.uint8), np.full((2, 8, 9), 0.5, np.float32), {"gaussian_sigma_xy": -1.0}, ValueError, "gaussian_sigma_xy"),
        (np.zeros((8, 9, 3), np.uint8), np.full((2, 8, 9), 0.5, np.float32), {"iterations": -1}, ValueError, "iterations"),
        (np.zeros((8, 9, 3), np.uint8), np.full((2, 8, 9), 0.5, np.float32), {"iterations": 2.0}, TypeError, "iterations"),
        (np.zeros((8, 9, 3), np.uint8), np.full((8, 9), 0.5, np.float32), {}, ValueError, "expected probs"),
        ([[0]], np.full((2, 8, 9), 0.5, np.float32), {}, TypeError, "numpy array or torch tensor"),
        (np.zeros((2, 8, 9, 3), np.uint8), np.full((3, 2, 8, 9), 0.5, np.float32), {}, ValueError, "expected image of shape"),
    ],
)
def test_dense_crf_rejects_bad_input(image, probs, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        dense_crf(image, probs, **kwargs)


def test_crf_params_from_dict() -> None:
    params = CRFParams.from_dict({"iterations": 5, "bilateral_weight": 4})
    assert params.iterations == 5 and params.bilateral_sigma_xy == 80.0
    assert CRFParams.from_dict(params.as_dict()) == params
    with pytest.raises(ValueError, match="unknown CRF parameter.*bilateral_sigma.*valid names"):
        CRFParams.from_dict({"bilateral_sigma": 3.0})
    with pytest.raises(TypeError, match="mapping"):
        CRFParams.from_dict([("iterations", 3)])
    with pytest.raises(TypeError, match="bilateral_weight"):
        CRFParams(bilateral_weight="4")
    with pytest.raises(ValueError, match="finite"):
        CRFParams(gaussian_weight=float("inf"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_dense_crf_cuda_matches_cpu() -> None:
    img = _smooth_image(30, 40, 0)
    p = _probs(4, 30, 40, 0)
    cpu = dense_crf(img, torch.from_numpy(p))
    for dtype in (torch.float32, torch.float16):
        gpu = dense_crf(img, torch.from_numpy(p).to("cuda", dtype))
        assert gpu.device.type == "cuda" and gpu.dtype == dtype
        assert float((gpu.float().cpu().argmax(0) == cpu.argmax(0)).float().mean()) > 0.99
